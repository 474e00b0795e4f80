"""steward-otp: command and control over NATS, built as an OTP-style Trio supervision tree.

The embedding API::

    from steward_otp import Node, handler, Message, HandlerContext, load_config

    @handler("REQDiskUsage", kind="ACK")
    async def disk_usage(ctx: HandlerContext, msg: Message) -> bytes: ...

    async with Node(load_config(home, {"node_name": "ship1"}), handlers=[disk_usage]) as node:
        ...

Names are imported on first use, so ``import steward_otp.supervisors`` (a general library)
does not pull in the whole node.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Node": "steward_otp.node",
    "Message": "steward_otp.message",
    "handler": "steward_otp.handlers.base",
    "Handler": "steward_otp.handlers.base",
    "HandlerContext": "steward_otp.handlers.base",
    "HandlerError": "steward_otp.handlers.base",
    "Config": "steward_otp.config",
    "load_config": "steward_otp.config",
}

if TYPE_CHECKING:
    __version__: str
    from steward_otp.config import Config, load_config
    from steward_otp.handlers.base import Handler, HandlerContext, HandlerError, handler
    from steward_otp.message import Message
    from steward_otp.node import Node

__all__ = [
    "Config",
    "Handler",
    "HandlerContext",
    "HandlerError",
    "Message",
    "Node",
    "__version__",
    "handler",
    "load_config",
]


def _version() -> str:
    # importlib.metadata costs tens of milliseconds at start: read only when asked.
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version("steward-otp")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        globals()[name] = value = _version()
        return value
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'steward_otp' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
