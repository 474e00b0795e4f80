"""The metrics of a node, and how a scrape builds them from one supervision tree snapshot.

The tables :data:`SCALARS` and :data:`SUBSCRIBER_COUNTERS` name each metric read from a
process's live info (``node/outbound/router``, ``node/errors``, ``node/bridge``,
``node/store``, each ``node/inbound/*`` subscriber); :class:`NodeCollector` adds the tree's
processes and restarts, the last hellos, the connection state and the store's cached
figures. Everything is read at scrape time: nothing on the message path is instrumented,
and a process that is not running has its samples left out of that scrape, never reported
as a counter reset. ``prometheus_client`` is imported when the first family is built.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeGuard

from steward_otp import __version__
from steward_otp.error_kernel import ERROR_CENTRAL_NODE, ERROR_LOG_METHOD
from steward_otp.store import ACTIVE_STATES
from steward_otp.supervisors import ProcessSnapshot
from steward_otp.transport import ConnectionState

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from steward_otp.metrics.registry import MetricsSource, NodeMetrics

INBOUND_PATH = "node/inbound/"
ERROR_LOG_SUBSCRIBER = f"{INBOUND_PATH}{ERROR_CENTRAL_NODE}.{ERROR_LOG_METHOD}"

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
    ("counter", "steward_nats_dropped_frames_total",
     "Messages from the broker dropped unread: a subject or reply subject not UTF-8 or "
     "holding a control character (sent by a client writing the protocol by hand).",
     BRIDGE_PATH, "dropped_frames"),
    ("counter", "steward_nats_unreadable_headers_total",
     "Messages from the broker whose header block could not be read, taken as having none "
     "(and so refused by the node).",
     BRIDGE_PATH, "unreadable_headers"),
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
    ("handler_crashes", "steward_handler_crashes_total",
     "Handler runs that ended in a crash (a bug in the handler): each got an error reply."),
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


def _is_number(value: object) -> TypeGuard[int | float]:
    """True for an int or float figure (not a bool, not missing)."""
    return isinstance(value, int | float) and not isinstance(value, bool)
