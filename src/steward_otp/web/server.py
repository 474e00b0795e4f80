"""The supervised process ``node/web``: serves the web view on ``web_listener``.

The node starts it only when ``web_listener`` is set. It listens with the shared hypercorn
helper (:func:`steward_otp.asgi_serve.serve_asgi`); an address it cannot listen on fails
its start with an error naming ``web_listener``. Cancellation closes the listener and ends
open pages' event streams (the pages open them again). Sessions are kept in memory by
the :class:`WebServer` object, so they outlive a restart of the process, not of the node.

starlette and hypercorn are imported when it starts, so a node without the web view never
loads them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import trio

from steward_otp.asgi_serve import bind_spec, serve_asgi
from steward_otp.error_kernel import ERROR_CENTRAL_NODE, ERROR_LOG_DIRECTORY, ERROR_LOG_FILE
from steward_otp.inputs.tcp import parse_listen_address
from steward_otp.supervisors.handle import current_child_or_none
from steward_otp.web.operations import WebNode
from steward_otp.web.sessions import Sessions
from steward_otp.web.token import TokenCheck

log = logging.getLogger(__name__)


def central_error_log(data_dir: Path) -> Path:
    """The central error log in a data folder: ``errorLog/errorCentral/error.log``."""
    return data_dir / ERROR_LOG_DIRECTORY / ERROR_CENTRAL_NODE / ERROR_LOG_FILE


class WebServer:
    """Supervised process ``node/web`` (see the module docstring).

    ``address`` is ``HOST:PORT`` (checked here: ListenError for anything else); the token's
    hash is read from ``etc_dir``; the errors page tails ``error_log``.
    """

    def __init__(self, node: WebNode, address: str, *, etc_dir: Path, error_log: Path) -> None:
        self.node = node
        self.address = parse_listen_address(address)
        self.tokens = TokenCheck(etc_dir)
        self.sessions = Sessions()
        self.error_log = error_log
        self.urls: list[str] = []

    def info(self) -> dict[str, object]:
        """What ``steward-otp tree`` shows for it."""
        return {"address": self.address.text, "urls": self.urls, "sessions": len(self.sessions)}

    async def run(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen, report ready, serve until cancelled."""
        from steward_otp.web.app import build_app  # noqa: PLC0415 -- starlette on start only

        handle = current_child_or_none()
        if handle is not None:
            handle.info_provider = self.info
        app = build_app(
            self.node, tokens=self.tokens, sessions=self.sessions, error_log=self.error_log
        )
        bind = bind_spec(self.address.host, self.address.port)
        async with trio.open_nursery() as nursery:
            self.urls = await nursery.start(
                lambda task_status: serve_asgi(
                    app,
                    bind,
                    setting="web_listener",
                    error_logger=logging.getLogger(f"{__name__}.http"),
                    task_status=task_status,
                )
            )
            log.info("%s: web view at %s", self.node.node_name, ", ".join(self.urls))
            if not self.tokens.stored():
                log.warning("%s: web view: %s", self.node.node_name, self.tokens.problem)
            task_status.started()


__all__ = ["WebServer", "central_error_log"]
