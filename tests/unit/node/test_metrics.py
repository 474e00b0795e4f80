"""NodeMetrics, its collector and the metrics HTTP server, without a broker.

The collector reads a tree snapshot whose process entries carry the live info of real
Outbox (through its Router), ErrorKernel, ErrorLogSenders, NatsBridge and Store objects (none
of them running, except the store where its figures are tested), or a hand-made snapshot.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from pathlib import Path

import attrs
import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from steward_otp.bridge import BridgeSettings, ConnectionState, NatsBridge
from steward_otp.error_kernel import ErrorKernel, ErrorLogSenders
from steward_otp.loglines import RepeatLimiter
from steward_otp.message import MessageDefaults
from steward_otp.methods import builtin_table
from steward_otp.metrics import MetricsListenError, MetricsServer, NodeMetrics, StoreFigures
from steward_otp.outbound.outbox import Outbox
from steward_otp.outbound.router import Router
from steward_otp.store import OutboxEntry, Store
from steward_otp.supervisors import ChildSpec, DynamicSupervisor, ProcessSnapshot
from steward_otp.transport import live_info
from tests.conftest import free_loopback_port
from tests.unit.handlers.loopback_nodes import LoopbackNet, message, wait_for

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def entry(path: str, *children: ProcessSnapshot, **fields: object) -> ProcessSnapshot:
    """A snapshot entry for ``path``, running, never restarted unless told otherwise."""
    values: dict[str, object] = {
        "path": path,
        "id": path.rpartition("/")[2],
        "kind": "supervisor" if children else "worker",
        "strategy": "one_for_one" if children else None,
        "restart": "permanent",
        "state": "running",
        "restart_count": 0,
        "uptime": 1.0,
        "last_failure": None,
        "info": {},
        "children": children,
    }
    values.update(fields)
    return ProcessSnapshot(**values)  # type: ignore[arg-type]


def subscriber(
    method: str, node: str = "ship1", handler: Mapping[str, object] | None = None, **info: int
) -> ProcessSnapshot:
    subject = f"{node}.{method}.EventACK"
    counts: dict[str, object] = {
        "received": 0,
        "duplicates": 0,
        "executed": 0,
        "dropped": 0,
        **info,
    }
    if handler is not None:
        counts["handler"] = dict(handler)
    child_id = method if node == "ship1" else f"{node}.{method}"
    return entry(f"node/inbound/{child_id}", info={"subject": subject, **counts})


def small_tree() -> ProcessSnapshot:
    """Five processes: a bridge, a busy REQCliCommand and a restarting REQPing."""
    return entry(
        "node",
        entry("node/bridge"),
        entry(
            "node/inbound",
            subscriber("REQCliCommand", received=4, duplicates=1, executed=3, dropped=2),
            entry("node/inbound/REQPing", restart_count=2, state="restarting"),
        ),
    )


@attrs.define
class FakeNode:
    """Just what NodeMetrics reads from a node, and the objects whose live info its tree
    snapshot carries (as the node's processes publish it), unless ``tree`` is given."""

    store: Store
    tree: ProcessSnapshot | None = None
    node_name: str = "ship1"
    url: str = "nats://127.0.0.1:4222"
    user_messages: int = 0
    hellos: dict[str, float] = attrs.field(factory=dict)
    outbox: Outbox = attrs.field(init=False)
    router: Router = attrs.field(init=False)
    errors: ErrorKernel = attrs.field(init=False)
    error_log_senders: ErrorLogSenders = attrs.field(init=False)
    bridge: NatsBridge = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.outbox = Outbox(
            self.store,
            self.node_name,
            table=builtin_table(),
            defaults=MessageDefaults(),
            compress_threshold=None,
        )
        publishers = DynamicSupervisor("publishers", ChildSpec("publisher", trio.sleep_forever))
        self.router = Router(self.outbox, publishers)
        self.errors = ErrorKernel(self.node_name, self.outbox.submit)
        self.error_log_senders = ErrorLogSenders(lambda node: node == "ship2", lambda _: None)
        self.bridge = NatsBridge(BridgeSettings(url=self.url, name=self.node_name))

    def snapshot(self) -> ProcessSnapshot:
        if self.tree is not None:
            return self.tree
        # The info each process publishes (see steward_otp.node.tree.build_tree and the
        # processes' run).
        return entry(
            "node",
            entry("node/store", info={"commits": self.store.stats().commits}),
            entry("node/bridge", info=live_info(self.bridge)),
            entry("node/errors", info=dict(self.errors.info)),
            entry("node/outbound", entry("node/outbound/router", info=self.router.info())),
            entry(
                "node/inbound",
                subscriber("REQCliCommand", received=4, duplicates=1, executed=3, dropped=2),
                subscriber(
                    "REQErrorLog", node="errorCentral", handler=self.error_log_senders.info()
                ),
            ),
        )

    def last_hellos(self) -> Mapping[str, float]:
        return self.hellos


def fake_node(
    tmp_path: Path, *, name: str = "ship1", tree: ProcessSnapshot | None = None
) -> FakeNode:
    """A node whose tree carries its objects' live info, or the hand-made ``tree``."""
    return FakeNode(tree=tree, store=Store(tmp_path / name / "steward.db"), node_name=name)


def parse(text: bytes) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def test_counters_are_read_from_the_node_at_scrape_time(tmp_path: Path) -> None:
    node = fake_node(tmp_path)
    metrics = NodeMetrics(node)
    assert value(parse(metrics.render()), "steward_nats_delivered_total") == 0

    node.outbox.stats.delivered = 7
    node.outbox.stats.failed = 2
    node.outbox.stats.missed_acks = 5
    node.user_messages = 3
    node.errors.report("info", "max retries reached")
    node.errors.report("error", "something broke")
    node.bridge.reconnects = 1
    node.hellos["ship2"] = 1700000000.0
    samples = parse(metrics.render())

    assert value(samples, "steward_nats_delivered_total") == 7
    assert value(samples, "steward_nats_messages_failed_acks_total") == 2
    assert value(samples, "steward_nats_messages_missed_acks_total") == 5
    assert value(samples, "steward_user_messages_total") == 3
    assert value(samples, "steward_error_messages_sent_total") == 2
    assert value(samples, "steward_info_messages_sent_total") == 1
    assert value(samples, "steward_nats_reconnects_total") == 1
    assert value(samples, "steward_hello_nodes_total") == 1
    assert value(samples, "steward_hello_node_contact_last", nodeName="ship2") == 1700000000.0
    assert value(samples, "steward_node_info", nodeName="ship1", broker=node.url) == 1


def test_dropped_and_suppressed_error_reports_are_counted(tmp_path: Path) -> None:
    node = fake_node(tmp_path)
    # A queue of 2 and at most 3 similar lines per window: 5 alike, 3 pass, 2 are held back.
    node.errors = ErrorKernel(
        "ship1",
        node.outbox.submit,
        capacity=2,
        limiter=RepeatLimiter(burst=3),
        clock=lambda: 100.0,
    )
    for i in range(5):
        node.errors.report("error", f"error: REQCliCommand: exit status {i}")
    for sender in ["ship2", "intruder1", "intruder2"]:
        node.error_log_senders.admit(sender)
    samples = parse(NodeMetrics(node).render())

    assert value(samples, "steward_error_messages_sent_total") == 5
    assert value(samples, "steward_error_messages_suppressed_total") == 2
    assert value(samples, "steward_error_messages_dropped_total") == 1  # 3 passed, 2 fit
    assert value(samples, "steward_error_messages_unknown_sender_dropped_total") == 2


def test_tree_metrics_follow_the_snapshot(tmp_path: Path) -> None:
    samples = parse(NodeMetrics(fake_node(tmp_path, tree=small_tree())).render())

    assert value(samples, "steward_processes_total") == 5
    assert value(samples, "steward_supervisor_restarts_total", path="node/inbound/REQPing") == 2
    assert value(samples, "steward_supervisor_restarts_total", path="node/bridge") == 0
    assert value(samples, "steward_processes_all_running", processName="node/bridge") == 1
    ping = "node/inbound/REQPing"
    assert value(samples, "steward_processes_all_running", processName=ping) == 0
    subject = "ship1.REQCliCommand.EventACK"
    assert value(samples, "steward_inbound_messages_received_total", subject=subject) == 4
    assert value(samples, "steward_inbound_duplicates_total", subject=subject) == 1
    assert value(samples, "steward_handler_runs_total", subject=subject) == 3
    assert value(samples, "steward_inbound_dropped_messages_total", subject=subject) == 2
    assert value(samples, "steward_error_messages_received_total") == 0


def test_error_messages_received_counts_the_central_error_log_runs(tmp_path: Path) -> None:
    tree = entry(
        "node", entry("node/inbound", subscriber("REQErrorLog", node="errorCentral", executed=9))
    )
    samples = parse(NodeMetrics(fake_node(tmp_path, tree=tree)).render())
    assert value(samples, "steward_error_messages_received_total") == 9


def test_connection_state_has_one_series_per_state_with_the_current_one_at_1(
    tmp_path: Path,
) -> None:
    node = fake_node(tmp_path)
    node.bridge.state = ConnectionState.RECONNECTING
    samples = parse(NodeMetrics(node).render())
    for state in ConnectionState:
        expected = 1 if state is ConnectionState.RECONNECTING else 0
        assert value(samples, "steward_nats_connection_state", state=state.value) == expected


def test_two_nodes_in_one_process_have_separate_registries(tmp_path: Path) -> None:
    ship1 = NodeMetrics(fake_node(tmp_path, name="ship1"))
    ship2 = NodeMetrics(fake_node(tmp_path, name="ship2"))
    assert ship1.registry is not ship2.registry
    url = "nats://127.0.0.1:4222"
    on_ship1, on_ship2 = parse(ship1.render()), parse(ship2.render())
    assert value(on_ship1, "steward_node_info", nodeName="ship1", broker=url) == 1
    assert value(on_ship2, "steward_node_info", nodeName="ship2", broker=url) == 1
    assert value(on_ship2, "steward_node_info", nodeName="ship1", broker=url) is None


def outbox_entry(msg_id: str, to_node: str) -> OutboxEntry:
    return OutboxEntry(
        msg_id=msg_id, to_node=to_node, method="REQPing", payload=b"x", created_at=1.0
    )


async def test_store_figures_appear_after_a_refresh_and_drained_nodes_stay_at_zero(
    tmp_path: Path,
) -> None:
    node = fake_node(tmp_path)
    metrics = NodeMetrics(node)
    assert value(parse(metrics.render()), "steward_queue_depth", toNode="ship2") is None
    async with trio.open_nursery() as nursery:
        await nursery.start(node.store.run)
        await node.store.enqueue(
            [outbox_entry("a", "ship2"), outbox_entry("b", "ship2"), outbox_entry("c", "ship3")]
        )
        await metrics.refresh()
        samples = parse(metrics.render())
        assert value(samples, "steward_queue_depth", toNode="ship2") == 2
        assert value(samples, "steward_queue_depth", toNode="ship3") == 1
        assert value(samples, "steward_db_messages_current") == 3
        assert value(samples, "steward_outbox_messages", state="queued") == 3

        await node.store.mark_delivered("c")
        await node.store.mark_failed("b", "max retries reached")
        await metrics.refresh()
        samples = parse(metrics.render())
        assert value(samples, "steward_queue_depth", toNode="ship3") == 0
        assert value(samples, "steward_queue_depth", toNode="ship2") == 1
        assert value(samples, "steward_db_messages_current") == 1
        assert value(samples, "steward_outbox_messages", state="failed") == 1
        nursery.cancel_scope.cancel()


async def test_metrics_server_serves_get_metrics_and_refuses_the_rest(tmp_path: Path) -> None:
    node = fake_node(tmp_path, tree=small_tree())
    metrics = NodeMetrics(node)
    address = f"127.0.0.1:{free_loopback_port()}"
    async with trio.open_nursery() as nursery:
        await nursery.start(node.store.run)
        await nursery.start(MetricsServer(metrics, address, refresh_interval=0.05).run)
        base = f"http://{address}"
        async with httpx.AsyncClient(timeout=10) as client:
            ok = await client.get(base + "/metrics")
            assert ok.status_code == 200
            assert value(parse(ok.content), "steward_processes_total") == 5
            assert (await client.get(base + "/")).status_code == 404
            refused = await client.post(base + "/metrics")
            assert refused.status_code == 405
            assert refused.headers["allow"] == "GET, HEAD"
        assert metrics.scrapes == 1
        with trio.fail_after(10):
            while metrics.figures is None:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()


async def test_an_address_in_use_fails_the_start_naming_the_setting(tmp_path: Path) -> None:
    metrics = NodeMetrics(fake_node(tmp_path))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        refused = pytest.RaisesExc(MetricsListenError, match=f"prom_host_and_port = '{address}'")
        with pytest.RaisesGroup(refused, flatten_subgroups=True):
            async with trio.open_nursery() as nursery:
                await nursery.start(MetricsServer(metrics, address).run)


async def test_the_server_stops_with_its_nursery_and_frees_the_port(tmp_path: Path) -> None:
    metrics = NodeMetrics(fake_node(tmp_path))
    port = free_loopback_port()
    for _ in range(2):  # the second start binds the same port again
        async with trio.open_nursery() as nursery:
            await nursery.start(MetricsServer(metrics, f"127.0.0.1:{port}").run)
            nursery.cancel_scope.cancel()
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))


def test_every_steward_metric_is_documented_in_operations_md(tmp_path: Path) -> None:
    metrics = NodeMetrics(fake_node(tmp_path))
    metrics.figures = StoreFigures(queue_depths={"ship2": 1}, states={"queued": 1}, at=0.0)
    metrics.destinations_seen.add("ship2")
    exposed = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in text_string_to_metric_families(metrics.render().decode())
        if family.name.startswith("steward_")
    }
    assert {"steward_queue_depth", "steward_db_messages_current"} <= exposed
    docs = (Path(__file__).parents[3] / "docs" / "operations.md").read_text()
    assert sorted(name for name in exposed if f"`{name}`" not in docs) == []


def test_a_process_that_is_not_running_leaves_its_samples_out(tmp_path: Path) -> None:
    # The small tree has no router, errors or store entry and a bridge without info: as
    # while those processes restart. Their counters are left out, not reported as resets.
    samples = parse(NodeMetrics(fake_node(tmp_path, tree=small_tree())).render())
    assert value(samples, "steward_nats_delivered_total") is None
    assert value(samples, "steward_error_messages_sent_total") is None
    assert value(samples, "steward_store_commits_total") is None
    assert value(samples, "steward_nats_connection_state", state="connected") is None
    assert value(samples, "steward_user_messages_total") == 0


async def test_a_running_node_publishes_the_figures_in_its_tree_and_metrics_read_them(
    tmp_path: Path,
) -> None:
    net = LoopbackNet(tmp_path)
    central, ship1 = net.node("central"), net.node("ship1")
    async with central, ship1:
        await central.submit([message("REQPing", to_node="ship1") for _ in range(3)])
        await wait_for(lambda: central.outbox.stats.delivered >= 3)
        central.report("info", "a line at level info")
        # No checkpoint from here on: the tree, the counters and the scrape agree.
        tree = central.snapshot()
        stats = attrs.evolve(central.outbox.stats)
        published = central.bridge.published
        samples = parse(central.metrics.render())
        router = tree.find("node/outbound/router")
        errors, bridge, store = (tree.find(f"node/{p}") for p in ("errors", "bridge", "store"))
    assert router is not None and errors is not None
    assert bridge is not None and store is not None
    assert router.info["delivered"] == stats.delivered >= 3
    assert router.info["accepted"] == stats.accepted
    assert errors.info["reported_info"] == 1
    assert bridge.info["state"] == "connected"
    assert bridge.info["published"] == published
    assert isinstance(store.info["commits"], int)
    assert value(samples, "steward_nats_delivered_total") == stats.delivered
    assert value(samples, "steward_messages_accepted_total") == stats.accepted
    assert value(samples, "steward_info_messages_sent_total") == 1
    assert value(samples, "steward_nats_connection_state", state="connected") == 1
    assert value(samples, "steward_store_commits_total") == store.info["commits"]
