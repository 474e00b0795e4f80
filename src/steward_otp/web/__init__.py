"""The web view of a node (``web_listener``): fleet, trees, queue, send, error log.

A node starts :class:`WebServer` as its child ``web`` when ``web_listener`` is set; access
needs the token made by ``steward-otp web token`` (see docs/web.md). Importing this package
loads no web framework: starlette and hypercorn are imported when the server starts.
"""

from steward_otp.web.server import WebServer, central_error_log

__all__ = ["WebServer", "central_error_log"]
