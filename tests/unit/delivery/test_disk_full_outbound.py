"""A full disk on the sending side: no process crashes, nothing is lost, nothing runs twice,
and no store write is tried in a busy loop.

The Publisher tests run under trio's MockClock with the in-memory store stand-in of
``test_publisher_timing`` (its writes refuse with StoreFull while ``full``) and a loopback
receiver; the node tests run two real nodes on the loopback broker, the sender's store
filled as in ``test_disk_full_inbound`` (``PRAGMA max_page_count``) or its sending-side
writes refused by stand-ins.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from steward_otp import codec
from steward_otp.delivery.protocol import Ack
from steward_otp.loopback import LoopbackBroker, LoopbackTransport
from steward_otp.message import Message, MessageDefaults
from steward_otp.methods import builtin_table
from steward_otp.node import Node
from steward_otp.outbound import disk_full_backoff
from steward_otp.outbound.outbox import FULL_RETRY_MAX, Outbox
from steward_otp.outbound.router import Router
from steward_otp.store.records import OutboxRow, OutboxState
from steward_otp.supervisors import ChildSpec, DynamicSupervisor, Restart, Strategy, Supervisor
from steward_otp.timers import submit_every
from tests.nodes import wait_for
from tests.unit.delivery.test_delivery_over_loopback import loopback_node, out_lines
from tests.unit.delivery.test_disk_full_inbound import (
    FULL,
    big_line,
    recorded_reports,
    refusing_while,
    unlimited,
)
from tests.unit.delivery.test_publisher_timing import (
    MemoryStore,
    hand_over,
    message,
    run_publisher,
)
from tests.unit.delivery.test_router_batches import FakePublishers
from tests.unit.handlers.loopback_nodes import LoopbackNet, subscriber_restarts
from tests.unit.supervisors.probes import running
from tests.unit.test_store_trouble import _fill_up

SUBJECT = "ship1.REQToFileAppend.EventACK"
PUBLISHER = "outbound/ship1.REQToFileAppend"
WRITES = ("mark_in_flight_many", "record_attempts", "mark_delivered_many", "mark_failed")
"""The store writes of the sending side."""


@attrs.define
class FullingStore(MemoryStore):
    """The in-memory outbox, whose writes refuse for a full disk while ``full``; counts
    every write tried."""

    full: bool = False
    tried: int = 0

    def _write(self) -> None:
        self.tried += 1
        if self.full:
            raise FULL

    async def mark_in_flight_many(self, ids: Sequence[str]) -> list[str]:
        self._write()
        return await super().mark_in_flight_many(ids)

    async def record_attempts(self, ids: Sequence[str]) -> list[str]:
        self._write()
        return await super().record_attempts(ids)

    async def mark_delivered_many(self, ids: Sequence[str]) -> list[str]:
        self._write()
        return await super().mark_delivered_many(ids)

    async def mark_failed(self, msg_id: str, reason: str) -> bool:
        self._write()
        return await super().mark_failed(msg_id, reason)


def restarts(supervisor: Supervisor, path: str = PUBLISHER) -> int:
    """How often the child at ``path`` was restarted (-1: it is not running)."""
    entry = supervisor.snapshot().find(path)
    return -1 if entry is None or entry.state != "running" else entry.restart_count


def ship1(broker: LoopbackBroker) -> tuple[LoopbackTransport, Any]:
    """ship1's transport on ``broker`` and its subscription to what the Publisher sends."""
    transport = LoopbackTransport(broker, name="ship1")
    return transport, transport.subscribe(SUBJECT, queue=SUBJECT)


def receive_now(subscription: Any) -> list[Any]:
    """Whatever the receiver's subscription holds right now."""
    got = []
    while True:
        try:
            got.append(subscription.receive.receive_nowait())
        except trio.WouldBlock:
            return got


# --- the Publisher, under the mock clock


async def test_a_retry_that_cannot_be_recorded_is_not_published_and_goes_out_later(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A first send needs no store write: it goes out on a full disk. Its retry must be
    recorded first: refused, it waits out the backoff unpublished, then goes out."""
    broker = LoopbackBroker()
    transport, receiver = ship1(broker)
    msgs = [message(f"m{i}", retries=1, retry_wait=1) for i in range(5)]
    store = FullingStore(full=True)
    reports: list[str] = []
    outbox, supervisor = await run_publisher(broker, store, msgs, reports)
    async with running(supervisor) as registry:
        hand_over(registry, msgs)
        with trio.fail_after(1):
            first = [await receiver.receive.receive() for _ in msgs]
        assert sorted(f.reply for f in first) == [first[0].reply] * 5
        await trio.sleep(50)
        assert receive_now(receiver) == []  # no retry published without its record
        # One refused in-flight mark, then the retries: a backoff of 0.5 s doubling to
        # 10 s, about 10 tries in 45 s, not thousands.
        assert 6 <= store.tried <= 14
        entry = supervisor.snapshot().find(PUBLISHER)
        assert entry is not None and entry.info["held_for_disk"] == 5
        assert entry.info["in_flight"] == 0
        assert outbox.stats.missed_acks == 5  # the first attempts, and no other

        store.full = False
        with trio.fail_after(FULL_RETRY_MAX + 1):
            sent = [await receiver.receive.receive() for _ in msgs]
        transport.publish_nowait(sent[0].reply, Ack(tuple(m.id for m in msgs)).encode())
        with trio.fail_after(1):
            while len(store.delivered) < len(msgs):
                await trio.sleep(0.01)
        await trio.sleep(30)
        assert receive_now(receiver) == []  # sent twice in all
        assert restarts(supervisor) == 0
    assert sorted(store.delivered) == sorted(m.id for m in msgs)
    assert store.attempts == {m.id: 1 for m in msgs}  # the retry, once it could be recorded
    assert [r for r in reports if "not sent, their attempt could not be recorded" in r] == [
        reports[0]
    ]
    assert "disk full" in reports[0]
    assert "accepts writes for the outbox again" in reports[-1]
    assert len(reports) == 2


async def test_an_ack_that_cannot_be_marked_is_kept_and_written_later_never_resent(
    autojump_clock: trio.abc.Clock,
) -> None:
    broker = LoopbackBroker()
    transport, receiver = ship1(broker)
    msgs = [message(f"m{i}", retries=3, retry_wait=1) for i in range(3)]
    store = FullingStore()
    reports: list[str] = []
    outbox, supervisor = await run_publisher(broker, store, msgs, reports)
    async with running(supervisor) as registry:
        inbox = registry.whereis(PUBLISHER)
        assert inbox is not None
        for m in msgs:
            inbox.send_nowait(m)
        sent = [await receiver.receive.receive() for _ in msgs]
        store.full = True
        transport.publish_nowait(sent[0].reply, Ack(tuple(m.id for m in msgs)).encode())
        await trio.sleep(60)
        assert store.delivered == []
        assert receive_now(receiver) == []  # ACKed: not sent again while the mark waits
        entry = supervisor.snapshot().find(PUBLISHER)
        assert entry is not None and entry.info["held_for_disk"] == 3
        store.full = False
        await trio.sleep(FULL_RETRY_MAX + 1)
        assert sorted(store.delivered) == sorted(m.id for m in msgs)
        assert receive_now(receiver) == []
        assert restarts(supervisor) == 0
    assert outbox.stats.delivered == 3
    assert store.attempts == {}
    assert len(reports) == 2 and "waiting to be marked delivered" in reports[0]


async def test_a_failure_that_cannot_be_marked_is_written_later_and_reported_once(
    autojump_clock: trio.abc.Clock,
) -> None:
    broker = LoopbackBroker()
    _transport, receiver = ship1(broker)
    store = FullingStore()
    reports: list[str] = []
    m = message("m1", retries=0, retry_wait=0, ack_timeout=2)
    outbox, supervisor = await run_publisher(broker, store, [m], reports)
    async with running(supervisor) as registry:
        inbox = registry.whereis(PUBLISHER)
        assert inbox is not None
        inbox.send_nowait(m)
        await receiver.receive.receive()  # published once, never ACKed
        store.full = True
        await trio.sleep(60)  # the attempt ran out at 2 s; its mark is refused
        assert store.failed == {}
        assert not [r for r in reports if "max retries reached" in r]
        store.full = False
        await trio.sleep(FULL_RETRY_MAX + 1)
        assert restarts(supervisor) == 0
        assert receive_now(receiver) == []  # failed, not sent again
    assert list(store.failed) == ["m1"] and outbox.stats.failed == 1
    assert [r for r in reports if "max retries reached" in r] == [store.failed["m1"]]
    assert "waiting to be marked failed" in reports[0]


async def test_an_ack_for_a_message_deferred_by_a_full_disk_settles_it(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A retry whose record is refused leaves the window; the ACK of the earlier send still
    delivers it, once the mark can be written."""
    broker = LoopbackBroker()
    transport, receiver = ship1(broker)
    store = FullingStore()
    reports: list[str] = []
    m = message("m1", retries=3, retry_wait=0, ack_timeout=2)
    _outbox, supervisor = await run_publisher(broker, store, [m], reports)
    async with running(supervisor) as registry:
        inbox = registry.whereis(PUBLISHER)
        assert inbox is not None
        inbox.send_nowait(m)
        first = await receiver.receive.receive()
        store.full = True
        await trio.sleep(3)  # the ACK deadline ran out; the retry's record is refused
        assert receive_now(receiver) == []
        transport.publish_nowait(first.reply, Ack(("m1",)).encode())
        await trio.sleep(1)
        store.full = False
        await trio.sleep(FULL_RETRY_MAX + 1)
        assert receive_now(receiver) == []  # never sent again
        assert restarts(supervisor) == 0
    assert store.delivered == ["m1"]


# --- the Router


class PendingRefusingStore(MemoryStore):
    """Its first ``refusals`` reads of the outbox meet a full disk (a read shares its commit
    with the writes waiting beside it)."""

    def __init__(self, rows: list[Any], refusals: int) -> None:
        super().__init__()
        self.rows = rows
        self.refusals = refusals
        self.reads = 0

    async def pending_ids(self) -> list[str]:
        self.reads += 1
        if self.reads <= self.refusals:
            raise FULL
        return [row.msg_id for row in self.rows]

    async def pending_rows(self, msg_ids: Sequence[str]) -> list[Any]:
        return [row for row in self.rows if row.msg_id in msg_ids]


async def test_a_sweep_refused_for_a_full_disk_is_made_again_soon_and_crashes_nothing(
    autojump_clock: trio.abc.Clock,
) -> None:
    held = Message(id="m1", to_node="ship1", from_node="central", method="REQToFileAppend")
    row = OutboxRow(
        seq=1,
        msg_id="m1",
        to_node="ship1",
        method="REQToFileAppend",
        payload=codec.cbor_payload(held),
        state=OutboxState.QUEUED,
        attempts=0,
        created_at=0.0,
        not_before=0.0,
        updated_at=0.0,
        reason=None,
    )
    store = PendingRefusingStore([row], refusals=3)
    outbox = Outbox(
        store,  # type: ignore[arg-type]
        "central",
        table=builtin_table(),
        defaults=MessageDefaults(),
        compress_threshold=None,
    )
    fakes = FakePublishers()
    publishers = DynamicSupervisor(
        "publishers", ChildSpec("publisher", fakes.run, restart=Restart.TRANSIENT)
    )
    router = Router(outbox, publishers, sweep_interval=5.0)
    tree = Supervisor(
        "outbound",
        [publishers.child_spec(), ChildSpec("router", router.run)],
        strategy=Strategy.ONE_FOR_ALL,
    )
    async with running(tree):
        start = trio.current_time()
        with trio.fail_after(10):
            while not fakes.received:
                await trio.sleep(0.01)
        # Refused at start, after 0.5 s and after 1 s more: read at 3.5 s, not at 15 s.
        assert trio.current_time() - start < 5.0
        assert fakes.received == {"ship1": ["m1"]}
        assert restarts(tree, "outbound/router") == 0
    assert store.reads == 4


# --- the timers


async def test_a_timer_round_refused_for_a_full_disk_is_skipped_with_one_line(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    stored: list[Message] = []
    refusals = [FULL, FULL]

    class Outbox:
        async def submit(self, messages: Sequence[Message]) -> list[str]:
            if refusals:
                raise refusals.pop()
            stored.extend(messages)
            return [m.id for m in messages]

    def make() -> Message:
        return Message(to_node="central", from_node="ship1", method="REQHello")

    caplog.set_level(logging.WARNING, logger="steward_otp.timers")
    async with trio.open_nursery() as nursery:
        await nursery.start(submit_every, Outbox(), 60.0, make)
        await trio.sleep(150)  # rounds at 0, 60 (both refused) and 120
        nursery.cancel_scope.cancel()
    assert len(stored) == 1
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert all("REQHello to central not sent this round, next in 60 s" in x for x in lines)


# --- real nodes on the loopback broker


def held_for_disk(node: Node, path: str) -> int:
    """What the Publisher at ``path`` holds for a full disk (-1: it is not running)."""
    entry = node.snapshot().find(path)
    return -1 if entry is None else int(entry.info["held_for_disk"])


def refuse_sending_writes(node: Node, full: Callable[[], bool]) -> None:
    """Make the sending side's store writes of ``node`` refuse for a full disk while
    ``full()``."""
    for name in WRITES:
        setattr(node.store, name, refusing_while(full, getattr(node.store, name)))


async def delivered_and_ran_once(central: Node, tmp_path: Path, count: int) -> None:
    """Wait until central's outbox is empty and ship1 ran messages 0..count-1; then check
    that nothing still in the air runs anything again."""
    with trio.fail_after(30):
        while await central.store.pending():
            await trio.sleep(0.05)
    await wait_for(lambda: len(out_lines(tmp_path)) >= count, timeout=10)
    await trio.sleep(1.5)
    assert out_lines(tmp_path) == list(range(count))


async def test_the_senders_store_full_with_messages_in_flight_restarts_nothing_and_all_run_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """central's writes are refused while its messages are out and their ACKs on the way
    (the ACKs come late, so retries are due too). Nothing restarts, nothing is marked;
    once there is room every message is delivered and has run exactly once on ship1."""
    monkeypatch.setattr(disk_full_backoff, "FULL_RETRY_MAX", 1.0)
    broker = LoopbackBroker()
    broker.faults.delay("_INBOX.>", 2.5)
    central = loopback_node(tmp_path, broker, "central")
    receiver = loopback_node(tmp_path, broker, "ship1")
    full = False
    refuse_sending_writes(central, lambda: full)
    reports = recorded_reports(central)
    async with central, receiver:
        await central.submit([big_line(i) for i in range(20)])
        await wait_for(lambda: len(out_lines(tmp_path)) == 20, timeout=10)
        full = True  # before any ACK is back
        await trio.sleep(6)
        publisher = central.snapshot().find("node/outbound/publishers/ship1.REQToFileAppend")
        assert publisher is not None and publisher.info["held_for_disk"] == 20
        pending = await central.store.pending()
        assert len([r for r in pending if r.method == "REQToFileAppend"]) == 20
        assert outbound_restarts(central) == [0, 0, 0]

        full = False
        await delivered_and_ran_once(central, tmp_path, 20)
        assert outbound_restarts(central) == [0, 0, 0]
        assert subscriber_restarts(receiver, "REQToFileAppend") == 0
    refused = [r for r in reports if "central.outbound" in r and "disk full" in r]
    assert len(refused) == 1, refused
    assert len([r for r in reports if "accepts writes for the outbox again" in r]) == 1


async def test_a_sender_whose_store_fills_up_restarts_nothing_and_all_run_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same with a store that really is full (``max_page_count``): central's messages
    wait unacknowledged for ship1, the store fills, ship1 comes up; whatever the store
    refuses is written again later, and every message runs exactly once."""
    monkeypatch.setattr(disk_full_backoff, "FULL_RETRY_MAX", 1.0)
    broker = LoopbackBroker()
    central = loopback_node(tmp_path, broker, "central")
    receiver = loopback_node(tmp_path, broker, "ship1")
    async with central:
        await central.submit([big_line(i) for i in range(20)])
        await wait_for(lambda: central.outbox.stats.missed_acks >= 20, timeout=20)
        await _fill_up(central.store)
        async with receiver:
            await wait_for(lambda: len(out_lines(tmp_path)) == 20, timeout=30)
            await wait_for(lambda: central.store.stats().disk_full >= 1, timeout=10)
            await trio.sleep(2)
            assert outbound_restarts(central) == [0, 0, 0]

            await unlimited(central)
            await delivered_and_ran_once(central, tmp_path, 20)
            assert outbound_restarts(central) == [0, 0, 0]
            assert subscriber_restarts(receiver, "REQToFileAppend") == 0


async def test_sends_refused_for_a_full_disk_go_out_once_there_is_room(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every write of central's sending side is refused from the start: the first sends
    go out (they need no write) and run on ship1, their delivered marks wait in memory,
    nothing restarts, and once there is room the outbox empties; every message ran once."""
    monkeypatch.setattr(disk_full_backoff, "FULL_RETRY_MAX", 1.0)
    broker = LoopbackBroker()
    central = loopback_node(tmp_path, broker, "central")
    receiver = loopback_node(tmp_path, broker, "ship1")
    full = True
    refuse_sending_writes(central, lambda: full)
    async with central, receiver:
        await central.submit([big_line(i) for i in range(20)])
        await wait_for(lambda: len(out_lines(tmp_path)) == 20, timeout=10)
        path = "node/outbound/publishers/ship1.REQToFileAppend"
        await wait_for(lambda: held_for_disk(central, path) == 20, timeout=10)
        pending = [r for r in await central.store.pending() if r.to_node == "ship1"]
        assert len(pending) == 20  # acknowledged, not yet marked delivered
        assert outbound_restarts(central) == [0, 0, 0]

        full = False
        await delivered_and_ran_once(central, tmp_path, 20)
        assert outbound_restarts(central) == [0, 0, 0]
        assert central.outbox.stats.missed_acks == 0  # no attempt used up meanwhile


async def test_the_hello_timer_on_a_full_disk_keeps_running(tmp_path: Path) -> None:
    node = LoopbackNet(tmp_path).node("ship1", start_pub_hello=1)
    full = True
    refused: list[float] = []
    enqueue = node.store.enqueue

    async def refusing(entries: Any) -> list[str]:
        if full:
            refused.append(trio.current_time())
            raise FULL
        return await enqueue(entries)

    node.store.enqueue = refusing  # type: ignore[method-assign]
    async with node:
        await wait_for(lambda: len(refused) >= 3, timeout=10)
        hello = node.snapshot().find("node/timers/hello")
        assert hello is not None and hello.state == "running" and hello.restart_count == 0
        assert refused[-1] - refused[-2] > 0.5  # once a round, not a busy loop
        full = False
        with trio.fail_after(10):
            while not [r for r in await node.store.list_outbox() if r.method == "REQHello"]:
                await trio.sleep(0.1)  # the next round is stored (central is not there)
        hello = node.snapshot().find("node/timers/hello")
        assert hello is not None and hello.restart_count == 0


def outbound_restarts(node: Node) -> list[int]:
    """Restart counts of ``node``'s outbound supervisor, its publishers and its Router."""
    counts = []
    for path in ("node/outbound", "node/outbound/publishers", "node/outbound/router"):
        entry = node.snapshot().find(path)
        counts.append(-1 if entry is None or entry.state != "running" else entry.restart_count)
    return counts
