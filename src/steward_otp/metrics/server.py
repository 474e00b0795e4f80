"""The process serving a node's metrics: ``node/metrics``, ``GET /metrics`` over HTTP.

:class:`MetricsServer` is the supervised process ``node/metrics``; the node starts it only
when ``prom_host_and_port`` is set. It serves ``GET /metrics`` over HTTP (hypercorn on Trio)
and stops with the tree; every ``refresh_interval`` seconds it refreshes the store's
figures. An address it cannot listen on fails its start with an error naming the setting,
so a node with a mistyped address stops at start-up instead of running blind.
:func:`metrics_app` is the ASGI application it serves; ``prometheus_client`` and
``hypercorn`` are imported when it starts.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import trio

from steward_otp.asgi_serve import ServeError, serve_asgi
from steward_otp.metrics.registry import NodeMetrics
from steward_otp.store import StoreError
from steward_otp.supervisors.handle import current_child_or_none

# The metrics modules log under one name, ``steward_otp.metrics``.
log = logging.getLogger("steward_otp.metrics")

METRICS_PATH = "/metrics"
DEFAULT_REFRESH_INTERVAL = 2.0


ASGIReceive = Callable[[], Awaitable[Mapping[str, Any]]]


def metrics_app(metrics: NodeMetrics) -> Callable[..., Awaitable[None]]:
    """The ASGI application: ``GET /metrics`` serves ``metrics``; anything else is 404/405.

    Content negotiation (OpenMetrics, gzip) is prometheus-client's.
    """
    from prometheus_client.asgi import make_asgi_app  # noqa: PLC0415

    prometheus = make_asgi_app(metrics.registry)

    async def app(scope: Mapping[str, Any], receive: ASGIReceive, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                event = await receive()
                if event["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif event["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        if scope["path"].rstrip("/") != METRICS_PATH:
            await _plain(send, 404, f"not found: the metrics are at {METRICS_PATH}\n")
        elif scope["method"] not in ("GET", "HEAD"):
            await _plain(send, 405, "method not allowed: use GET\n", [(b"allow", b"GET, HEAD")])
        else:
            metrics.scrapes += 1
            await prometheus(scope, receive, send)

    return app


async def _plain(
    send: Any, status: int, text: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), *(headers or [])],
        }
    )
    await send({"type": "http.response.body", "body": body})


class MetricsListenError(ServeError):
    """The metrics server cannot listen on the configured address."""


class MetricsServer:
    """Supervised process ``node/metrics``: serves ``/metrics`` on ``address`` (HOST:PORT).

    It may also run outside a supervision tree (``nursery.start(server.run)``).

    Ready once it listens; from then on it refreshes the store's figures every
    ``refresh_interval`` seconds. Cancellation closes the listener and ends open scrapes.
    An address it cannot listen on fails the start with :class:`MetricsListenError`, which
    names ``prom_host_and_port`` and the reason.
    """

    def __init__(
        self,
        metrics: NodeMetrics,
        address: str,
        *,
        refresh_interval: float = DEFAULT_REFRESH_INTERVAL,
    ) -> None:
        self.metrics = metrics
        self.address = address
        self.refresh_interval = refresh_interval
        self.urls: list[str] = []

    async def run(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen, report ready, serve and refresh until cancelled."""
        handle = current_child_or_none()
        if handle is not None:
            handle.info_provider = lambda: {
                "address": self.address,
                "urls": self.urls,
                "scrapes": self.metrics.scrapes,
            }
        async with trio.open_nursery() as nursery:
            self.urls = await nursery.start(self._serve)
            log.info("%s: metrics at %s", self.metrics.source.node_name, self.urls)
            nursery.start_soon(self._refresh_periodically)
            task_status.started()

    async def _serve(self, task_status: trio.TaskStatus[list[str]]) -> None:
        await serve_asgi(
            metrics_app(self.metrics),
            self.address,
            setting="prom_host_and_port",
            error_logger=logging.getLogger(f"{log.name}.http"),
            doing="listen for metrics",
            hint="give a free HOST:PORT with --prom-host-and-port, or an empty value to turn "
            "metrics off",
            error_type=MetricsListenError,
            task_status=task_status,
        )

    async def _refresh_periodically(self) -> None:
        while True:
            try:
                await self.metrics.refresh()
            except StoreError as exc:
                # The store is restarting; the previous figures stay until it is back.
                log.debug("metrics: store figures not refreshed: %s", exc)
            await trio.sleep(self.refresh_interval)
