"""The node's one ACK subscription: each Publisher gets what arrives on its own subject."""

from __future__ import annotations

import pytest
import trio

from steward_otp.loopback import LoopbackBroker
from steward_otp.outbound.ack_inboxes import AckInboxes, AckInboxesNotRunning
from steward_otp.transport import InboundMessage
from tests.unit.transport.test_loopback import running


async def test_each_registered_inbox_gets_its_own_messages_and_those_below_it() -> None:
    broker = LoopbackBroker()
    async with running(broker, "central", "ship1") as (central, ship1):
        acks = AckInboxes(central)
        async with trio.open_nursery() as nursery:
            await nursery.start(acks.run)
            got: dict[str, list[bytes]] = {"a": [], "b": []}
            inbox_a = acks.register(lambda m: got["a"].append(m.payload))
            inbox_b = acks.register(lambda m: got["b"].append(m.payload))
            assert inbox_a != inbox_b
            assert inbox_a.startswith(central.new_inbox().rpartition(".box.")[0])
            ship1.publish_nowait(inbox_a, b"1")
            ship1.publish_nowait(inbox_b, b"2")
            ship1.publish_nowait(f"{inbox_a}.7", b"3")  # a JetStream publish's reply
            ship1.publish_nowait(inbox_a, b"4")
            with trio.fail_after(5):
                while acks.handed_over < 4:
                    await trio.sleep(0.01)
            assert got == {"a": [b"1", b"3", b"4"], "b": [b"2"]}
            acks.unregister(inbox_a)
            ship1.publish_nowait(inbox_a, b"late")
            with trio.fail_after(5):
                while acks.unclaimed < 1:
                    await trio.sleep(0.01)
            assert got["a"] == [b"1", b"3", b"4"]
            assert acks.info() == {"registered": 1, "handed_over": 4, "unclaimed": 1}
            nursery.cancel_scope.cancel()
        assert acks.registered == 0  # stopped: nobody is registered any more


async def test_registering_needs_the_subscription_up() -> None:
    broker = LoopbackBroker()
    async with running(broker, "central") as (central,):
        acks = AckInboxes(central)
        with pytest.raises(AckInboxesNotRunning):
            acks.register(lambda m: None)
        async with trio.open_nursery() as nursery:
            await nursery.start(acks.run)
            acks.register(lambda m: None)
            nursery.cancel_scope.cancel()
        with pytest.raises(AckInboxesNotRunning):
            acks.register(lambda m: None)


async def test_one_subscription_serves_many_registrations() -> None:
    broker = LoopbackBroker()
    async with running(broker, "central", "ship1") as (central, ship1):
        acks = AckInboxes(central)
        async with trio.open_nursery() as nursery:
            await nursery.start(acks.run)
            received: list[InboundMessage] = []
            inboxes = [acks.register(received.append) for _ in range(1000)]
            for inbox in inboxes:
                ship1.publish_nowait(inbox, b"ack")
            with trio.fail_after(5):
                while len(received) < 1000:
                    await trio.sleep(0.01)
            assert sorted(m.subject for m in received) == sorted(inboxes)
            nursery.cancel_scope.cancel()
