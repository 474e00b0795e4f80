"""Prometheus metrics of one node: a registry of its own, and the process serving ``/metrics``.

Every node has a :class:`NodeMetrics` with a private ``prometheus_client`` registry (never the
process-wide default one), so several nodes in one process each report their own figures.
Nothing on the message path is instrumented: the figures are read when a scrape arrives,
from one snapshot of the supervision tree, where each process publishes the counters it
keeps in its live info (``node/outbound/router``: the outbox's delivery stats;
``node/errors``: the error kernel's; ``node/bridge``: the connection's; ``node/store``: its
commits; ``node/inbound/*``: each subscriber's). Those figures are also what
``steward-otp tree`` shows. A process that is not running publishes nothing, so its samples
are left out of that scrape. The store's queue figures (messages held per destination and
per state) need a query, so they are refreshed every ``refresh_interval`` seconds by the
metrics process and served from that cache.

:class:`MetricsServer` is the supervised process ``node/metrics``; the node starts it only
when ``prom_host_and_port`` is set. It serves ``GET /metrics`` over HTTP (hypercorn on Trio)
and stops with the tree. An address it cannot listen on fails its start with an error naming
the setting, so a node with a mistyped address stops at start-up instead of running blind.

The metric names and what each means are listed in ``docs/operations.md``.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeGuard

import attrs
import trio

from steward_otp import __version__
from steward_otp.asgi_serve import ServeError, serve_asgi
from steward_otp.error_kernel import ERROR_CENTRAL_NODE, ERROR_LOG_METHOD
from steward_otp.store import ACTIVE_STATES, OutboxState, StoreError
from steward_otp.supervisors import ProcessSnapshot
from steward_otp.supervisors.handle import current_child_or_none
from steward_otp.transport import ConnectionState

# prometheus_client and hypercorn are imported where they are used, so a node without
# prom_host_and_port never loads them.
if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

log = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
DEFAULT_REFRESH_INTERVAL = 2.0
INBOUND_PATH = "node/inbound/"
ERROR_LOG_SUBSCRIBER = f"{INBOUND_PATH}{ERROR_CENTRAL_NODE}.{ERROR_LOG_METHOD}"


class StoreQueries(Protocol):
    """The store queries behind the store's figures (:class:`~steward_otp.store.Store`)."""

    async def queue_depths(self) -> Mapping[str, int]: ...

    async def counts(self) -> Mapping[OutboxState, int]: ...


class MetricsSource(Protocol):
    """What the metrics read from a node (:class:`steward_otp.node.Node` provides it).

    The processes' figures come from the tree snapshot, where each process publishes them
    in its live info (see :data:`SCALARS`). What is read from the node itself belongs to no
    one process: the messages accepted by its input path (``Node.accept_document``, shared by
    the inputs and the web view), the last hello of every node (node state the hello
    handler, the error log's known nodes and the ACLs share; a fleet's worth of it would
    swamp the tree view), and the store's queries (answered asynchronously, so they are
    refreshed by the metrics process, not read at scrape time).
    """

    @property
    def node_name(self) -> str: ...

    @property
    def url(self) -> str: ...

    @property
    def user_messages(self) -> int: ...

    @property
    def store(self) -> StoreQueries: ...

    def snapshot(self) -> ProcessSnapshot: ...

    def last_hellos(self) -> Mapping[str, float]: ...


@attrs.frozen
class StoreFigures:
    """The store's figures as of ``at`` (wall time): messages held per destination and state."""

    queue_depths: Mapping[str, int]
    """Messages still to deliver (queued or in flight) per destination node."""
    states: Mapping[str, int]
    """Messages held per state (queued, in_flight, failed, cancelled)."""
    at: float


ROUTER_PATH = "node/outbound/router"
ERRORS_PATH = "node/errors"
BRIDGE_PATH = "node/bridge"
STORE_PATH = "node/store"

SCALARS: tuple[tuple[str, str, str, str, str], ...] = (
    # (type, name, help, process path, key in its live info) -- Steward's names first.
    # A process that is not running (restarting) has no info: its samples are left out
    # until it is back, rather than reported as a counter reset.
    ("counter", "steward_nats_delivered_total",
     "Messages delivered: ACKed by the receiver, or published when no ACK is asked.",
     ROUTER_PATH, "delivered"),
    ("counter", "steward_nats_messages_failed_acks_total",
     "Messages given up on after their last retry went unacknowledged.",
     ROUTER_PATH, "failed"),
    ("counter", "steward_nats_messages_missed_acks_total",
     "Delivery attempts whose ACK did not arrive within ACKTimeout.",
     ROUTER_PATH, "missed_acks"),
    ("counter", "steward_error_messages_sent_total",
     "Events (every level) reported to the error kernel for the central error log.",
     ERRORS_PATH, "reported"),
    ("counter", "steward_info_messages_sent_total",
     "Events at level info reported to the error kernel (e.g. max retries reached).",
     ERRORS_PATH, "reported_info"),
    ("gauge", "steward_in_memory_buffer_messages_current",
     "Durable messages waiting in memory for the router to hand them to a publisher.",
     ROUTER_PATH, "mailbox"),
    ("counter", "steward_messages_accepted_total",
     "Messages accepted into the durable outbox: input, replies, error log, hellos.",
     ROUTER_PATH, "accepted"),
    ("counter", "steward_error_messages_dropped_total",
     "Events not forwarded to the central error log because the kernel's queue was full.",
     ERRORS_PATH, "dropped"),
    ("counter", "steward_error_messages_suppressed_total",
     "Events held back by the error kernel's rate limit (a flood of similar lines), logged "
     "nowhere but counted in one summary line per kind.",
     ERRORS_PATH, "suppressed"),
    ("counter", "steward_nats_reconnects_total",
     "Times the broker connection was re-established after a loss.",
     BRIDGE_PATH, "reconnects"),
    ("counter", "steward_nats_published_total",
     "Messages (requests, replies, ACKs) the bridge handed to the broker.",
     BRIDGE_PATH, "published"),
    ("counter", "steward_nats_publish_errors_total",
     "Commands (publishes, subscriptions) the NATS client refused.",
     BRIDGE_PATH, "publish_errors"),
    ("counter", "steward_store_commits_total",
     "Transactions committed to the node's SQLite store.",
     STORE_PATH, "commits"),
)  # fmt: skip
"""The metrics that are one figure a process publishes in its live info."""

SUBSCRIBER_COUNTERS: tuple[tuple[str, str, str], ...] = (
    # (key in the subscriber's live info, name, help), one series per subject.
    ("received", "steward_inbound_messages_received_total",
     "Messages the subscriber received from the broker."),
    ("duplicates", "steward_inbound_duplicates_total",
     "Retried deliveries the subscriber had seen before: ACKed again, not run again."),
    ("executed", "steward_handler_runs_total",
     "Handler runs started by the subscriber (including runs after an interruption)."),
    ("dropped", "steward_inbound_dropped_messages_total",
     "Messages dropped because the subscriber's inbound channel was full (not ACKed, so an "
     "ACK-mode sender retries); counted from the subscriber's last restart."),
    ("disk_full_refused", "steward_inbound_disk_full_refused_total",
     "Store writes for the subscriber's messages refused because the disk is full: received "
     "ones are not ACKed (their senders retry), finished ones are written again later."),
)  # fmt: skip


def _family(
    kind: str,
    name: str,
    documentation: str,
    labels: list[str] | None = None,
    value: float | None = None,
) -> Any:
    # CounterMetricFamily takes "_total" off the name and puts it back on the samples.
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily  # noqa: PLC0415

    family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
    return family(name, documentation, labels=labels, value=value)


class NodeCollector:
    """Builds the node's metric families at scrape time. See ``docs/operations.md``.

    A ``prometheus_client`` collector (the ``Collector`` protocol: ``collect()``).
    """

    def __init__(self, metrics: NodeMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        """Every metric of the node, read now from one tree snapshot (the store's queue
        figures from the last refresh)."""
        node = self.metrics.source
        snapshot = node.snapshot()
        entries = list(snapshot.walk())
        by_path = {entry.path: entry for entry in entries}
        build = _family("gauge", "steward_build_version", "steward-otp version.", ["version"])
        build.add_metric([__version__], 1)
        info = _family(
            "gauge", "steward_node_info", "Node name and broker URL.", ["nodeName", "broker"]
        )
        info.add_metric([node.node_name, node.url], 1)
        yield from (build, info)
        yield _family(
            "counter",
            "steward_user_messages_total",
            "Messages accepted from the socket, TCP, HTTP and read-folder inputs (after fan-out).",
            value=node.user_messages,
        )
        for kind, name, documentation, path, key in SCALARS:
            family = _family(kind, name, documentation)
            entry = by_path.get(path)
            figure = None if entry is None else entry.info.get(key)
            if _is_number(figure):
                family.add_metric([], figure)
            yield family
        yield from self._processes(entries)
        yield from self._liveness(node)
        yield from self._inbound(entries)
        yield from self._connection(by_path.get(BRIDGE_PATH))
        yield from self._store()

    def _processes(self, entries: list[ProcessSnapshot]) -> Iterator[Metric]:
        yield _family(
            "gauge",
            "steward_processes_total",
            "Processes (supervisors and workers) in the node's supervision tree.",
            value=len(entries),
        )
        running = _family(
            "gauge",
            "steward_processes_all_running",
            "1 while the process at this tree path is running, else 0.",
            ["processName"],
        )
        restarts = _family(
            "counter",
            "steward_supervisor_restarts_total",
            "Restarts of the process at this tree path since its supervisor started.",
            ["path"],
        )
        for entry in entries:
            running.add_metric([entry.path], 1 if entry.state == "running" else 0)
            restarts.add_metric([entry.path], entry.restart_count)
        yield from (running, restarts)

    def _liveness(self, node: MetricsSource) -> Iterator[Metric]:
        hellos = dict(node.last_hellos())
        yield _family(
            "gauge",
            "steward_hello_nodes_total",
            "Nodes this node has received a hello from since it started.",
            value=len(hellos),
        )
        last = _family(
            "gauge",
            "steward_hello_node_contact_last",
            "Unix time of the last hello received from the node.",
            ["nodeName"],
        )
        for name, at in sorted(hellos.items()):
            last.add_metric([name], at)
        yield last

    def _inbound(self, entries: list[ProcessSnapshot]) -> Iterator[Metric]:
        subscribers = [e for e in entries if e.path.startswith(INBOUND_PATH) and e.kind == "worker"]
        for key, name, documentation in SUBSCRIBER_COUNTERS:
            family = _family("counter", name, documentation, ["subject"])
            for entry in subscribers:
                value = entry.info.get(key)
                if isinstance(value, int):
                    family.add_metric([str(entry.info.get("subject", entry.id))], value)
            yield family
        central = next((e for e in subscribers if e.path == ERROR_LOG_SUBSCRIBER), None)
        central_info = central.info if central is not None else {}
        received = central_info.get("executed", 0)
        yield _family(
            "counter",
            "steward_error_messages_received_total",
            "REQErrorLog messages written to the central error log (central error logger only).",
            value=received if isinstance(received, int) else 0,
        )
        handler = central_info.get("handler")
        unknown = handler.get("unknown_senders_dropped", 0) if isinstance(handler, dict) else 0
        yield _family(
            "counter",
            "steward_error_messages_unknown_sender_dropped_total",
            "REQErrorLog messages the central error log dropped because it does not know their "
            "sender node (central error logger only).",
            value=unknown if isinstance(unknown, int) else 0,
        )

    def _connection(self, bridge: ProcessSnapshot | None) -> Iterator[Metric]:
        state = _family(
            "gauge",
            "steward_nats_connection_state",
            "1 for the broker connection's current state, 0 for the others.",
            ["state"],
        )
        # No series while the bridge process is not running (it publishes no state then).
        current = None if bridge is None else bridge.info.get("state")
        if current is not None:
            for candidate in ConnectionState:
                state.add_metric([candidate.value], 1 if candidate.value == current else 0)
        yield state

    def _store(self) -> Iterator[Metric]:
        figures = self.metrics.figures
        if figures is None:
            return
        yield _family(
            "gauge",
            "steward_db_messages_current",
            "Messages in the durable outbox still to deliver (queued or in flight).",
            value=sum(figures.states.get(str(state), 0) for state in ACTIVE_STATES),
        )
        states = _family(
            "gauge", "steward_outbox_messages", "Messages held in the outbox, per state.", ["state"]
        )
        for name, count in sorted(figures.states.items()):
            states.add_metric([name], count)
        depth = _family(
            "gauge",
            "steward_queue_depth",
            "Messages still to deliver (queued or in flight) per destination node.",
            ["toNode"],
        )
        for to_node in sorted(self.metrics.destinations_seen):
            depth.add_metric([to_node], figures.queue_depths.get(to_node, 0))
        yield from (states, depth)
        yield _family(
            "gauge",
            "steward_store_figures_age_seconds",
            "Seconds since the store figures (outbox, queue depth) were read.",
            value=max(0.0, time.time() - figures.at),
        )


class NodeMetrics:
    """The metrics of one node: its own registry, and the cache of the store's figures.

    ``registry`` holds the node's collector plus the standard process, platform and garbage
    collector collectors (those describe the whole Python process, which several embedded
    nodes share). Embedding code may register its own metrics on it; they are served with
    the node's. :meth:`render` gives the exposition text without any HTTP server.
    """

    def __init__(self, source: MetricsSource) -> None:
        self.source = source
        self.figures: StoreFigures | None = None
        self.destinations_seen: set[str] = set()
        self.scrapes = 0

    @functools.cached_property
    def registry(self) -> CollectorRegistry:
        """The node's registry, made (and prometheus_client imported) on first use."""
        from prometheus_client import (  # noqa: PLC0415
            CollectorRegistry,
            GCCollector,
            PlatformCollector,
            ProcessCollector,
        )

        registry = CollectorRegistry(auto_describe=False)
        registry.register(NodeCollector(self))
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        return registry

    async def refresh(self) -> StoreFigures:
        """Read the store's figures now and keep them for the next scrapes.

        Raises :class:`~steward_otp.store.StoreError` when the store is not running.
        Destinations keep being reported (at 0) once they have had messages.
        """
        depths = await self.source.store.queue_depths()
        counts = await self.source.store.counts()
        figures = StoreFigures(
            queue_depths=dict(depths),
            states={str(state): n for state, n in counts.items()},
            at=time.time(),
        )
        self.destinations_seen.update(depths)
        self.figures = figures
        return figures

    def render(self) -> bytes:
        """The node's metrics in the Prometheus text format, as ``/metrics`` serves them."""
        from prometheus_client import generate_latest  # noqa: PLC0415

        return generate_latest(self.registry)


def _is_number(value: object) -> TypeGuard[int | float]:
    """True for an int or float figure (not a bool, not missing)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


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
            error_logger=logging.getLogger(f"{__name__}.http"),
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


__all__ = [
    "METRICS_PATH",
    "MetricsListenError",
    "MetricsServer",
    "MetricsSource",
    "NodeCollector",
    "NodeMetrics",
    "StoreFigures",
    "StoreQueries",
    "metrics_app",
]
