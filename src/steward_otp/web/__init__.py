"""The web view of a node (``web_listener``): fleet, trees, queue, send, error log.

A node starts :class:`WebServer` as its child ``web`` when ``web_listener`` is set; access
needs the token made by ``steward-otp web token`` (see docs/web.md). Importing this package
loads nothing else: ``WebServer`` (and with it the node's machinery) is imported on first
use, so ``steward-otp web token`` stays quick; starlette and hypercorn are imported when the
server starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from steward_otp.web.server import WebServer, central_error_log

__all__ = ["WebServer", "central_error_log"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from steward_otp.web import server  # noqa: PLC0415

        value = getattr(server, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'steward_otp.web' has no attribute {name!r}")
