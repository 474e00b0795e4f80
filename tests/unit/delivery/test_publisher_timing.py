"""The Publisher driver under trio's MockClock: retries, retryWait and give-up at exact times.

The store is an in-memory stand-in (the real one commits in worker threads, which a mock clock
cannot wait for); the transport is the loopback broker. Nothing touches a socket or the disk.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import attrs
import pytest
import trio

from steward_otp import codec
from steward_otp.delivery.protocol import Ack
from steward_otp.delivery.sender import DEFAULT_WINDOW, Action, Transmit
from steward_otp.loopback import LoopbackBroker, LoopbackTransport
from steward_otp.message import Message, MessageDefaults
from steward_otp.methods import builtin_table
from steward_otp.outbound.ack_inboxes import AckInboxes
from steward_otp.outbound.destination import Destination
from steward_otp.outbound.outbox import Finished, Outbox
from steward_otp.outbound.publisher import IN_FLIGHT_MARK_DELAY, Publisher
from steward_otp.store.records import OutboxEntry
from steward_otp.store.withdrawals import Withdrawals
from steward_otp.supervisors import ChildSpec, Registry, Supervisor
from steward_otp.transport import Subscription
from tests.unit.supervisors.probes import running

SUBJECT = "ship1.REQToFileAppend.EventACK"


@attrs.define
class MemoryStore:
    """The outbox operations a Publisher uses, in memory; records every call with its time."""

    active: set[str] = attrs.field(factory=set)
    delivered: list[str] = attrs.field(factory=list)
    failed: dict[str, str] = attrs.field(factory=dict)
    attempts: dict[str, int] = attrs.field(factory=dict)
    withdrawals: Withdrawals = attrs.field(factory=Withdrawals)

    async def enqueue(self, entries: Sequence[OutboxEntry]) -> list[str]:
        new = [e.msg_id for e in entries if e.msg_id not in self.active]
        self.active.update(new)
        return new

    async def mark_in_flight_many(self, ids: Sequence[str]) -> list[str]:
        return [i for i in ids if i in self.active]

    async def active_among(self, ids: Sequence[str]) -> list[str]:
        return [i for i in ids if i in self.active]

    async def record_attempts(self, ids: Sequence[str]) -> list[str]:
        for i in ids:
            self.attempts[i] = self.attempts.get(i, 0) + 1
        return [i for i in ids if i in self.active]

    async def mark_delivered_many(self, ids: Sequence[str]) -> list[str]:
        done = [i for i in ids if i in self.active]
        self.active.difference_update(done)
        self.delivered += done
        return done

    async def mark_failed(self, msg_id: str, reason: str) -> bool:
        self.active.discard(msg_id)
        self.failed[msg_id] = reason
        return True


def message(msg_id: str, *, retries: int, retry_wait: int, ack_timeout: int = 5) -> Message:
    return Message(
        id=msg_id,
        to_node="ship1",
        from_node="central",
        method="REQToFileAppend",
        data=b"x\n",
        ack_timeout=ack_timeout,
        retries=retries,
        retry_wait=retry_wait,
    )


async def run_publisher(
    broker: LoopbackBroker,
    store: MemoryStore,
    messages: list[Message],
    reports: list[str],
    *,
    jetstream: bool | None = None,
) -> tuple[Outbox, Supervisor]:
    outbox = Outbox(
        store,  # type: ignore[arg-type]
        "central",
        table=builtin_table(),
        defaults=MessageDefaults(),
        compress_threshold=None,
    )
    await store.enqueue(
        [OutboxEntry(m.id, m.to_node, m.method, b"-", created_at=0.0) for m in messages]
    )
    transport = LoopbackTransport(broker, name="central")
    acks = AckInboxes(transport)
    publisher = Publisher(outbox, transport, lambda _l, t: reports.append(t), acks=acks)
    start = functools.partial(publisher.run, "ship1", "REQToFileAppend", jetstream)
    children = [ChildSpec("acks", acks.run), ChildSpec("ship1.REQToFileAppend", start)]
    return outbox, Supervisor("outbound", children)


def hand_over(registry: Registry, messages: Sequence[Message]) -> None:
    """Give ``messages`` to the Publisher of ship1.REQToFileAppend, in one go."""
    inbox = registry.whereis("outbound/ship1.REQToFileAppend")
    assert inbox is not None
    for m in messages:
        inbox.send_nowait(m)


@attrs.frozen
class Scene:
    """A Publisher of ship1.REQToFileAppend with ``msgs`` to send, and ship1's side."""

    receiver: LoopbackTransport
    subscription: Subscription
    msgs: list[Message]
    outbox: Outbox
    supervisor: Supervisor
    reports: list[str]


async def scene(store: MemoryStore, count: int) -> Scene:
    """``count`` messages m0, m1, ... (5 retries, retryWait 1 s) for a Publisher on
    ``store``, and a subscription of ship1 to their subject."""
    broker = LoopbackBroker()
    receiver = LoopbackTransport(broker, name="ship1")
    subscription = receiver.subscribe(SUBJECT, queue=SUBJECT)
    msgs = [message(f"m{i}", retries=5, retry_wait=1) for i in range(count)]
    reports: list[str] = []
    outbox, supervisor = await run_publisher(broker, store, msgs, reports)
    return Scene(receiver, subscription, msgs, outbox, supervisor, reports)


async def test_each_attempt_waits_ack_timeout_then_retry_wait(autojump_clock: object) -> None:
    broker = LoopbackBroker()
    receiver = LoopbackTransport(broker, name="ship1")
    subscription = receiver.subscribe(SUBJECT, queue=SUBJECT)
    store = MemoryStore()
    reports: list[str] = []
    outbox, supervisor = await run_publisher(
        broker, store, [message("m1", retries=2, retry_wait=3)], reports
    )
    arrivals: list[float] = []
    async with running(supervisor) as registry:
        inbox = registry.whereis("outbound/ship1.REQToFileAppend")
        assert inbox is not None
        start = trio.current_time()
        inbox.send_nowait(message("m1", retries=2, retry_wait=3))
        for _ in range(3):
            inbound = await subscription.receive.receive()
            arrivals.append(trio.current_time() - start)
        with trio.fail_after(60):
            while "m1" not in store.failed:
                await trio.sleep(0.01)
        gave_up_at = trio.current_time() - start
        assert outbox.stats.missed_acks == 3
    # Sent at 0, again after 5 s (ACK timeout) + 3 s (retryWait), and again 8 s later.
    assert arrivals == [0, 8, 16]
    assert 21 <= gave_up_at < 21.05  # the third ACK timeout ran out
    assert "max retries reached" in store.failed["m1"]
    assert reports == [store.failed["m1"]]
    assert store.attempts == {"m1": 2}
    assert inbound.reply  # every attempt carries the Publisher's ACK inbox


async def test_one_ack_settles_a_whole_window_at_once(autojump_clock: object) -> None:
    store = MemoryStore()
    sc = await scene(store, 50)
    async with running(sc.supervisor) as registry:
        hand_over(registry, sc.msgs)
        batch = [await sc.subscription.receive.receive() for _ in sc.msgs]
        sc.receiver.publish_nowait(batch[0].reply, Ack(tuple(m.id for m in sc.msgs)).encode())
        with trio.fail_after(1):
            while len(store.delivered) < len(sc.msgs):
                await trio.sleep(0.01)
        await trio.sleep(30)  # no ACK deadline fires for settled messages
    assert sorted(store.delivered) == sorted(m.id for m in sc.msgs)
    assert sc.outbox.stats.missed_acks == 0 and sc.outbox.stats.delivered == 50
    assert store.attempts == {} and sc.reports == []


@attrs.define
class CountingStore(MemoryStore):
    """Records the ids of every ``mark_in_flight_many``, ``mark_delivered_many`` and
    ``active_among`` call."""

    in_flight_calls: list[list[str]] = attrs.field(factory=list)
    delivered_calls: list[list[str]] = attrs.field(factory=list)
    active_calls: list[list[str]] = attrs.field(factory=list)

    async def active_among(self, ids: Sequence[str]) -> list[str]:
        self.active_calls.append(list(ids))
        return await super().active_among(ids)

    async def mark_in_flight_many(self, ids: Sequence[str]) -> list[str]:
        self.in_flight_calls.append(list(ids))
        return await super().mark_in_flight_many(ids)

    async def mark_delivered_many(self, ids: Sequence[str]) -> list[str]:
        self.delivered_calls.append(list(ids))
        return await super().mark_delivered_many(ids)


async def test_what_waits_in_the_inbox_is_sent_in_one_wake_up(
    autojump_clock: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Messages handed over together go out as one batch (one send action, not one per
    message as one wake-up per message would make), and a first send writes nothing."""
    transmits: list[list[str]] = []
    carry_out = Publisher._carry_out_now

    async def counting(self: Publisher, action: Action, dest: Destination) -> None:
        if isinstance(action, Transmit):
            transmits.append(list(action.first))
        await carry_out(self, action, dest)

    monkeypatch.setattr(Publisher, "_carry_out_now", counting)
    store = CountingStore()
    sc = await scene(store, 200)
    async with running(sc.supervisor) as registry:
        hand_over(registry, sc.msgs)
        arrived = [await sc.subscription.receive.receive() for _ in sc.msgs]
        assert store.in_flight_calls == []
    assert len(arrived) == 200
    assert transmits == [[m.id for m in sc.msgs]]


async def test_a_message_unanswered_for_a_second_is_marked_in_flight(
    autojump_clock: object,
) -> None:
    """The ``in_flight`` mark is written only for messages still unacknowledged
    ``IN_FLIGHT_MARK_DELAY`` after their first send, all of them in one operation; one
    acknowledged sooner goes from ``queued`` to delivered without it."""
    store = CountingStore()
    sc = await scene(store, 10)
    async with running(sc.supervisor) as registry:
        hand_over(registry, sc.msgs)
        arrived = [await sc.subscription.receive.receive() for _ in sc.msgs]
        sc.receiver.publish_nowait(arrived[0].reply, Ack(("m0", "m1")).encode())
        await trio.sleep(IN_FLIGHT_MARK_DELAY - 0.01)
        assert store.in_flight_calls == []
        assert store.delivered == ["m0", "m1"]
        await trio.sleep(0.02)
        assert store.in_flight_calls == [[f"m{i}" for i in range(2, 10)]]
        await trio.sleep(3)  # ACK timeout 5 s: nothing retried yet, nothing marked again
        assert len(store.in_flight_calls) == 1
    assert sc.reports == []


def finished_mail(outbox: Outbox) -> list[Finished]:
    """The Finished mail waiting for the Router (a Publisher's gave-backs)."""
    mail: list[Finished] = []
    while True:
        try:
            item = outbox.mail_receive.receive_nowait()
        except trio.WouldBlock:
            return mail
        if isinstance(item, Finished):
            mail.append(item)


async def test_a_message_this_process_did_not_store_is_checked_before_its_first_send(
    autojump_clock: object,
) -> None:
    """A message the Publisher did not see stored (read back from the store, say) is asked
    about in the store first: one the store no longer holds active (an operator cancelled
    or purged it) is never sent and goes back to the Router; the others go out."""
    store = CountingStore()
    sc = await scene(store, 4)
    store.active.difference_update({"m1", "m3"})
    async with running(sc.supervisor) as registry:
        hand_over(registry, sc.msgs)
        arrived = [await sc.subscription.receive.receive() for _ in range(2)]
        sc.receiver.publish_nowait(arrived[0].reply, Ack(("m0", "m2")).encode())
        await trio.sleep(60)  # never sent later either
        with pytest.raises(trio.WouldBlock):
            sc.subscription.receive.receive_nowait()
    assert sorted(codec.decode(a.payload, a.headers).id for a in arrived) == ["m0", "m2"]
    assert store.active_calls == [["m0", "m1", "m2", "m3"]]
    finished = finished_mail(sc.outbox)
    assert Finished("m1", delivered=False) in finished
    assert Finished("m3", delivered=False) in finished


async def test_first_sends_ask_the_store_only_after_a_withdrawal(autojump_clock: object) -> None:
    """Messages this process stored go out without a store question while no cancel or
    purge happened since they were stored; after one, the store is asked, and a message
    it withdrew is never sent."""
    store = CountingStore()
    sc = await scene(store, 6)
    sc.outbox.entries_for(sc.msgs)  # stored here, at withdrawals generation 0
    async with running(sc.supervisor) as registry:
        hand_over(registry, sc.msgs[:3])
        first = [await sc.subscription.receive.receive() for _ in range(3)]
        assert store.active_calls == []
        store.active.discard("m4")  # an operator cancels m4 ...
        store.withdrawals.note()  # ... which the store notes before it commits
        hand_over(registry, sc.msgs[3:])
        later = [await sc.subscription.receive.receive() for _ in range(2)]
        assert store.active_calls == [["m3", "m4", "m5"]]
        sc.receiver.publish_nowait(first[0].reply, Ack(("m0", "m1", "m2", "m3", "m5")).encode())
        await trio.sleep(60)
        with pytest.raises(trio.WouldBlock):
            sc.subscription.receive.receive_nowait()
    assert [codec.decode(a.payload, a.headers).id for a in later] == ["m3", "m5"]
    assert Finished("m4", delivered=False) in finished_mail(sc.outbox)


async def test_withdrawn_messages_make_room_in_the_window_at_once(
    autojump_clock: object,
) -> None:
    """A whole window of withdrawn messages does not hold up the ones behind it until an
    ACK timeout: the room they leave is used at once."""
    store = CountingStore()
    sc = await scene(store, DEFAULT_WINDOW + 3)
    store.active.difference_update(m.id for m in sc.msgs[:DEFAULT_WINDOW])
    async with running(sc.supervisor) as registry:
        hand_over(registry, sc.msgs)
        with trio.fail_after(0.5):  # the ACK timeout is 5 s
            arrived = [await sc.subscription.receive.receive() for _ in range(3)]
    assert [codec.decode(a.payload, a.headers).id for a in arrived] == [
        m.id for m in sc.msgs[DEFAULT_WINDOW:]
    ]


async def test_the_in_flight_mark_is_written_a_second_after_the_send_without_an_ack(
    autojump_clock: object,
) -> None:
    """Nothing else wakes the Publisher (no ACK, no new message): the mark is written
    ``IN_FLIGHT_MARK_DELAY`` after the first send all the same, once, and not at the ACK
    timeout. The send is at an odd time (0.2 s), where a mark reckoned two ways could never
    fall due."""
    store = CountingStore()
    sc = await scene(store, 3)
    async with running(sc.supervisor) as registry:
        await trio.sleep(0.2)
        hand_over(registry, sc.msgs)
        [await sc.subscription.receive.receive() for _ in range(3)]
        sent_at = trio.current_time()
        while not store.in_flight_calls:
            await trio.sleep(0.01)
        assert trio.current_time() - sent_at < IN_FLIGHT_MARK_DELAY + 0.05
        await trio.sleep(3)
    assert store.in_flight_calls == [["m0", "m1", "m2"]]


async def test_the_stream_answers_of_one_wake_up_are_settled_together(
    autojump_clock: object,
) -> None:
    """Publishes into the JetStream stream are acknowledged by the broker one by one; the
    answers that wait together are retired in one store operation."""
    broker = LoopbackBroker()
    stream = LoopbackTransport(broker, name="broker")
    subscription = stream.subscribe(f"NODES.{SUBJECT}")
    msgs = [message(f"m{i}", retries=5, retry_wait=1) for i in range(100)]
    store = CountingStore()
    reports: list[str] = []
    _outbox, supervisor = await run_publisher(broker, store, msgs, reports, jetstream=True)
    async with running(supervisor) as registry:
        hand_over(registry, msgs)
        published = [await subscription.receive.receive() for _ in msgs]
        for seq, publish in enumerate(published, 1):
            stream.publish_nowait(publish.reply, f'{{"stream": "NODES", "seq": {seq}}}'.encode())
        with trio.fail_after(5):
            while len(store.delivered) < len(msgs):
                await trio.sleep(0.01)
    assert store.delivered_calls == [[m.id for m in msgs]]
    assert reports == []
