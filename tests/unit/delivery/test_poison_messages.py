"""A message already in the outbox that can never be sent is failed with the reason, not
retried for ever, and takes nothing down (issue 17).

Such messages come from before a limit existed or changed: stored by an older version, or
when the broker allowed more than the one the node is connected to now.
"""

from __future__ import annotations

import time
from pathlib import Path

import trio

from steward_otp import codec
from steward_otp.message import Message, ensure_id
from steward_otp.store import OutboxEntry, Store, store_path
from tests.unit.handlers.loopback_nodes import LoopbackNet, file_text, wait_for


def _entry(message: Message) -> OutboxEntry:
    message = ensure_id(message)
    return OutboxEntry(
        msg_id=message.id,
        to_node=message.to_node,
        method=message.method,
        payload=codec.encode(message, compress_threshold=None).payload,
        created_at=time.time(),
    )


def _append(to_node: str, text: str) -> Message:
    return Message(
        to_node=to_node,
        from_node="central",
        method="REQToFileAppend",
        directory="in",
        file_name="in.log",
        data=text.encode(),
        ack_timeout=1,
        retries=100,
        reply_method="REQNone",
    )


async def _store_directly(path: Path, entries: list[OutboxEntry]) -> None:
    store = Store(path)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        await store.enqueue(entries)
        nursery.cancel_scope.cancel()


async def test_a_message_the_broker_can_never_carry_is_failed_with_the_reason(
    tmp_path: Path,
) -> None:
    net = LoopbackNet(tmp_path)
    net.broker.max_payload = 64 * 1024
    central, ship1 = net.node("central"), net.node("ship1")
    too_big = _entry(_append("ship1", "x" * (100 * 1024)))
    bad_name = _entry(_append("y" * 300, "nobody\n"))
    await _store_directly(store_path(central.config.db_dir), [too_big, bad_name])

    async with central, ship1:
        with trio.fail_after(10):
            while len(await central.store.list_outbox(states=["failed"])) < 2:
                await trio.sleep(0.05)
        reasons = {r.msg_id: r.reason or "" for r in await central.store.list_outbox()}
        assert "max_payload is 65536 bytes" in reasons[too_big.msg_id]
        assert "is not a valid node name" in reasons[bad_name.msg_id]
        await wait_for(lambda: "not sent:" in file_text(net.error_log()))

        # The node is fine: the next message to ship1 goes through.
        await central.submit([_append("ship1", "after\n")])
        out = net.data("ship1") / "in" / "ship1" / "in.log"
        await wait_for(lambda: file_text(out) == "after\n")
    assert net.transports["central"].publish_errors == 0  # never even tried


async def test_a_broadcast_over_core_nats_is_failed_at_once_saying_how_to_send_it(
    tmp_path: Path,
) -> None:
    net = LoopbackNet(tmp_path)
    central = net.node("central")
    async with central:
        (msg_id,) = await central.submit([_append("all", "to everyone\n")])
        with trio.fail_after(10):
            while not await central.store.list_outbox(states=["failed"]):
                await trio.sleep(0.05)
        (row,) = await central.store.list_outbox(states=["failed"])
    assert row.msg_id == msg_id
    assert 'toNode "all" reaches every node only through JetStream' in (row.reason or "")
    assert '"jetstream": true' in (row.reason or "")


async def test_an_input_refuses_a_broadcast_a_core_node_would_send_by_core_nats(
    tmp_path: Path,
) -> None:
    net = LoopbackNet(tmp_path)
    central = net.node("central")
    async with central:
        (answer,) = await central.accept_document(
            b'[{"toNode": "all", "method": "REQPing", "replyMethod": "REQNone"}]'
        )
        assert not answer.accepted and answer.error is not None
        assert (answer.error.field, answer.error.value) == ("toNode", '"all"')
        assert '"jetstream": true' in (answer.error.allowed or "")
        assert await central.store.list_outbox() == []  # nothing stored, nothing to fail


async def test_a_message_accepted_under_a_larger_max_payload_is_failed_when_it_shrinks(
    tmp_path: Path,
) -> None:
    # Its Publisher takes the encoding stored at acceptance; the size is checked again
    # against the limit in effect when it is published.
    net = LoopbackNet(tmp_path)
    net.broker.max_payload = 256 * 1024
    central, ship1 = net.node("central"), net.node("ship1")
    async with central, ship1:
        (big,) = await central.submit([_append("ship1", "x" * (100 * 1024))])
        # No checkpoint since the submit stored it: its Publisher has not published yet.
        net.broker.max_payload = 64 * 1024
        with trio.fail_after(10):
            while not await central.store.list_outbox(states=["failed"]):
                await trio.sleep(0.05)
        (row,) = await central.store.list_outbox(states=["failed"])
        assert row.msg_id == big
        assert "max_payload is 65536 bytes" in (row.reason or "")
        await central.submit([_append("ship1", "small\n")])
        out = net.data("ship1") / "in" / "ship1" / "in.log"
        await wait_for(lambda: file_text(out) == "small\n")
    assert net.transports["central"].publish_errors == 0
