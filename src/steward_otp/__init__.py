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
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("steward-otp")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'steward_otp' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
