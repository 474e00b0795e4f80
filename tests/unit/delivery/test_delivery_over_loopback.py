"""Publisher and Subscriber carrying the delivery protocol over an in-memory broker with faults.

Real nodes (store, tree, handlers) on a LoopbackBroker: no sockets. Every fault the broker can
inject must leave each message run exactly once on its destination and settled on its sender.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import pytest
import trio

from steward_otp import codec
from steward_otp.delivery.protocol import VERSION_HEADER, Ack
from steward_otp.loopback import LoopbackBroker, LoopbackTransport
from steward_otp.message import Message
from steward_otp.node import Node
from steward_otp.store import OutboxState
from tests.nodes import file_text, node_config, wait_for

SUBJECT = "ship1.REQToFileAppend.EventACK"


def line(i: int, *, ack_timeout: int = 1, retries: int = 20) -> Message:
    return Message(
        to_node="ship1",
        method="REQToFileAppend",
        data=f"{i}\n".encode(),
        directory="out",
        file_name="out.log",
        ack_timeout=ack_timeout,
        retries=retries,
        retry_wait=0,
        reply_method="REQNone",
    )


def loopback_node(tmp_path: Path, broker: LoopbackBroker, name: str) -> Node:
    config = node_config(tmp_path, name, "nats://127.0.0.1:1")
    return Node(config, transport=LoopbackTransport(broker, name=name))


@asynccontextmanager
async def two_nodes(tmp_path: Path, broker: LoopbackBroker) -> AsyncIterator[tuple[Node, Node]]:
    central = loopback_node(tmp_path, broker, "central")
    ship1 = loopback_node(tmp_path, broker, "ship1")
    async with central, ship1:
        yield central, ship1


def out_lines(tmp_path: Path) -> list[int]:
    text = file_text(tmp_path / "ship1" / "data" / "out" / "ship1" / "out.log")
    return sorted(int(x) for x in text.split())


async def send_and_wait(central: Node, tmp_path: Path, count: int) -> None:
    await central.submit([line(i) for i in range(count)])
    await wait_for(lambda: central.outbox.stats.delivered >= count, timeout=30)
    await wait_for(lambda: len(out_lines(tmp_path)) >= count, timeout=10)


async def test_lost_acks_are_retried_and_the_message_runs_once(tmp_path: Path) -> None:
    broker = LoopbackBroker()
    broker.faults.drop("_INBOX.>", count=3)
    async with two_nodes(tmp_path, broker) as (central, _ship1):
        await send_and_wait(central, tmp_path, 5)
    assert out_lines(tmp_path) == list(range(5))
    assert central.outbox.stats.missed_acks >= 1
    assert broker.faults.dropped == 3


async def test_duplicated_and_reordered_messages_run_once(tmp_path: Path) -> None:
    broker = LoopbackBroker()
    broker.faults.duplicate(SUBJECT, count=None)
    broker.faults.reorder(SUBJECT, count=20)
    async with two_nodes(tmp_path, broker) as (central, ship1):
        await send_and_wait(central, tmp_path, 100)
        subscriber = ship1.snapshot().find("node/inbound/REQToFileAppend")
    assert out_lines(tmp_path) == list(range(100))
    assert subscriber is not None and subscriber.info["duplicates"] >= 100


async def test_a_lossy_link_both_ways_loses_nothing_and_runs_nothing_twice(
    tmp_path: Path,
) -> None:
    broker = LoopbackBroker(seed=7)
    broker.faults.drop_rate(">", 0.3)
    async with two_nodes(tmp_path, broker) as (central, _ship1):
        await send_and_wait(central, tmp_path, 60)
    assert out_lines(tmp_path) == list(range(60))
    assert broker.faults.dropped > 0


async def test_messages_wait_out_a_broker_outage(tmp_path: Path) -> None:
    broker = LoopbackBroker()
    async with two_nodes(tmp_path, broker) as (central, _ship1):
        broker.stop()
        await central.submit([line(i) for i in range(10)])
        await wait_for(lambda: central.outbox.stats.missed_acks >= 1)
        assert out_lines(tmp_path) == []
        broker.start()
        await wait_for(lambda: central.outbox.stats.delivered == 10, timeout=30)
    assert out_lines(tmp_path) == list(range(10))


async def test_attempts_run_out_and_the_message_fails_with_steward_s_line(
    tmp_path: Path,
) -> None:
    broker = LoopbackBroker()
    central = loopback_node(tmp_path, broker, "central")  # ship1 never starts
    async with central:
        await central.submit([line(0, retries=1)])
        await wait_for(lambda: central.outbox.stats.failed == 1, timeout=10)
        (row,) = await central.store.list_outbox(states=[OutboxState.FAILED])
    assert row.reason is not None and "max retries reached" in row.reason
    assert central.outbox.stats.missed_acks == 2


async def test_a_receiver_s_rejection_fails_the_message_with_its_reason(tmp_path: Path) -> None:
    broker = LoopbackBroker()
    refuser = LoopbackTransport(broker, name="refuser")
    subscription = refuser.subscribe(SUBJECT, queue=SUBJECT)

    async def refuse_everything() -> None:
        async for inbound in subscription.receive:
            message = codec.decode(inbound.payload, inbound.headers)
            refuser.publish_nowait(
                inbound.reply, Ack(rejected=((message.id, "no thanks"),)).encode()
            )

    central = loopback_node(tmp_path, broker, "central")
    async with trio.open_nursery() as nursery, central:
        nursery.start_soon(refuse_everything)
        await central.submit([line(0)])
        await wait_for(lambda: central.outbox.stats.failed == 1)
        (row,) = await central.store.list_outbox(states=[OutboxState.FAILED])
        nursery.cancel_scope.cancel()
    assert row.reason is not None and "refused by ship1: no thanks" in row.reason


async def test_an_unknown_protocol_version_is_rejected_by_id_and_not_run(
    tmp_path: Path,
) -> None:
    broker = LoopbackBroker()
    sender = LoopbackTransport(broker, name="future")
    inbox = sender.new_inbox()
    acks = sender.subscribe(inbox)
    message = attrs.evolve(line(0), id="future:1", from_node="future")
    encoded = codec.encode(message, compress_threshold=None)
    headers = {**encoded.headers, VERSION_HEADER: "9"}
    async with two_nodes(tmp_path, broker) as (central, ship1):
        sender.publish_nowait(SUBJECT, encoded.payload, headers, inbox)
        with trio.fail_after(10):
            ack = Ack.decode((await acks.receive.receive()).payload)
        # The node keeps serving protocol-2 senders.
        await central.submit([line(1)])
        await wait_for(lambda: out_lines(tmp_path) == [1])
        subscriber = ship1.snapshot().find("node/inbound/REQToFileAppend")
    assert subscriber is not None and subscriber.restart_count == 0
    assert ack.accepted == ()
    ((msg_id, reason),) = ack.rejected
    assert msg_id == "future:1"
    assert "protocol version '9' is not supported; allowed: 2" in reason


async def test_steward_request_reply_without_version_gets_an_empty_ack_and_runs(
    tmp_path: Path,
) -> None:
    broker = LoopbackBroker()
    steward = LoopbackTransport(broker, name="steward")
    message = Message(
        id="steward:1",
        to_node="ship1",
        from_node="steward",
        method="REQToFileAppend",
        data=b"7\n",
        directory="out",
        file_name="out.log",
        ack_timeout=5,
        reply_method="REQNone",
    )
    encoded = codec.encode(message, compress_threshold=None)
    async with two_nodes(tmp_path, broker):
        reply = await steward.request(SUBJECT, encoded.payload, encoded.headers, timeout=10)
        await wait_for(lambda: out_lines(tmp_path) == [7])
    assert reply.payload == b""


async def test_no_responders_notices_are_not_mistaken_for_acks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broker = LoopbackBroker()
    central = loopback_node(tmp_path, broker, "central")  # ship1 never starts
    async with central:
        await central.submit([line(i, retries=0) for i in range(5)])
        await wait_for(lambda: central.outbox.stats.failed == 5, timeout=10)
    assert not [r for r in caplog.records if "ACK on" in r.getMessage()]


async def test_a_destination_that_comes_back_gets_its_messages_long_before_their_ack_timeout(
    tmp_path: Path,
) -> None:
    broker = LoopbackBroker()
    central = loopback_node(tmp_path, broker, "central")
    async with central:
        # Long ACK timeouts: without probing, ship1 would wait for them to run out.
        await central.submit([line(i, ack_timeout=30, retries=3) for i in range(20)])
        await trio.sleep(1.0)  # ship1 is away: "no responders"; the probes back off
        assert central.outbox.stats.delivered == 0
        ship1 = loopback_node(tmp_path, broker, "ship1")
        async with ship1:
            back_at = trio.current_time()
            await wait_for(lambda: central.outbox.stats.delivered == 20, timeout=30)
            took = trio.current_time() - back_at
            await wait_for(lambda: len(out_lines(tmp_path)) == 20, timeout=10)
    # Probes had backed off to under a second: that, not the 30 s ACK timeout, decides.
    assert took < 10
    assert central.outbox.stats.missed_acks == 0  # no attempt used up while it was away
    assert out_lines(tmp_path) == list(range(20))


async def test_messages_cancelled_while_their_node_is_away_are_never_sent_again(
    tmp_path: Path,
) -> None:
    """Sent once into the void (ship1 is away), then cancelled by an operator (a purge
    leaves the outbox the same way): when ship1 comes back and the Publisher sends its
    unheard window again, only the messages still in the outbox go."""
    broker = LoopbackBroker()
    central = loopback_node(tmp_path, broker, "central")
    async with central:
        ids = await central.submit([line(i, ack_timeout=30, retries=5) for i in range(6)])

        async def in_flight() -> int:
            return (await central.store.counts())[OutboxState.IN_FLIGHT]

        with trio.fail_after(10):
            while await in_flight() < 6:
                await trio.sleep(0.01)
        for msg_id in ids[:3]:
            assert await central.store.cancel(msg_id)
        async with loopback_node(tmp_path, broker, "ship1"):
            await wait_for(lambda: central.outbox.stats.delivered >= 3, timeout=30)
            await wait_for(lambda: len(out_lines(tmp_path)) >= 3, timeout=10)
            held = await central.store.counts()
    assert out_lines(tmp_path) == [3, 4, 5]
    assert held[OutboxState.CANCELLED] == 3 and held[OutboxState.IN_FLIGHT] == 0
