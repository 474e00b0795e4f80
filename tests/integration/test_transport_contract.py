"""One contract, two transports: the in-memory loopback and a NatsBridge on a real nats-server.

Every test runs against both and makes the same assertions, so the loopback broker stays a
faithful stand-in for NATS wherever the delivery path relies on it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import attrs
import pytest
import trio

from steward_otp.bridge import BridgeSettings, NatsBridge
from steward_otp.loopback import LoopbackBroker, LoopbackTransport
from steward_otp.transport import (
    ConnectionState,
    InboundMessage,
    RequestTimeout,
    Subscription,
    Transport,
    TransportError,
)
from tests.conftest import NatsServer

pytestmark = pytest.mark.integration

TIMEOUT = 10.0


async def wait_for(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """Poll ``predicate`` until true, failing the test after ``timeout`` seconds."""
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


@attrs.frozen
class Backend:
    """Makes connected transports of one kind: ``loopback`` or ``nats``."""

    kind: str
    nats_url: str = ""
    broker: LoopbackBroker = attrs.field(factory=LoopbackBroker)

    def make(self, name: str) -> Transport:
        if self.kind == "nats":
            return NatsBridge(
                BridgeSettings(
                    url=self.nats_url,
                    name=name,
                    connect_retry_interval=0.05,
                    reconnect_time_wait=0.05,
                )
            )
        return LoopbackTransport(self.broker, name)

    @asynccontextmanager
    async def transports(self, *names: str) -> AsyncIterator[list[Transport]]:
        """Transports named ``names``, running and connected, stopped at the end."""
        async with trio.open_nursery() as nursery:
            made = [self.make(name) for name in names]
            for transport in made:
                await nursery.start(transport.run)
            await wait_for(lambda: all(t.state is ConnectionState.CONNECTED for t in made))
            yield made
            nursery.cancel_scope.cancel()


@pytest.fixture(params=["loopback", "nats"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "nats":
        server: NatsServer = request.getfixturevalue("nats_server")
        return Backend("nats", nats_url=server.url)
    return Backend("loopback")


async def receive(subscription: Subscription, count: int) -> list[InboundMessage]:
    """The next ``count`` messages of ``subscription``."""
    with trio.fail_after(TIMEOUT):
        return [await subscription.receive.receive() for _ in range(count)]


async def receive_until(subscription: Subscription, last: bytes) -> list[bytes]:
    """Payloads received up to and including the first ``last``."""
    got: list[bytes] = []
    with trio.fail_after(TIMEOUT):
        while not got or got[-1] != last:
            got.append((await subscription.receive.receive()).payload)
    return got


def drain(subscription: Subscription) -> list[InboundMessage]:
    items = []
    while True:
        try:
            items.append(subscription.receive.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            return items


async def test_exact_subject_in_order_with_headers_and_nothing_else(backend: Backend) -> None:
    async with backend.transports("a", "b") as (a, b):
        subscription = b.subscribe("ship1.REQTest.EventNACK")
        await b.flush()
        a.publish_nowait("ship1.REQTest.EventACK", b"other subject")
        a.publish_nowait("ship1.REQTest", b"shorter subject")
        for i in range(50):
            a.publish_nowait("ship1.REQTest.EventNACK", str(i).encode(), {"serial": "cbor"})
        received = await receive(subscription, 50)
        a.publish_nowait("ship1.REQTest.EventNACK", b"end")
        assert await receive_until(subscription, b"end") == [b"end"]
    assert [int(m.payload) for m in received] == list(range(50))
    assert received[0].subject == "ship1.REQTest.EventNACK"
    assert received[0].headers == {"serial": "cbor"}


async def test_wildcards(backend: Backend) -> None:
    async with backend.transports("a", "b") as (a, b):
        star = b.subscribe("ship.*.EventACK")
        tail = b.subscribe("ship.>")
        await b.flush()
        for subject in ["ship.x.EventACK", "ship.x.y.EventACK", "ship", "other.x.EventACK"]:
            a.publish_nowait(subject, subject.encode())
        a.publish_nowait("ship.end.EventACK", b"end")
        assert await receive_until(star, b"end") == [b"ship.x.EventACK", b"end"]
        assert await receive_until(tail, b"end") == [
            b"ship.x.EventACK",
            b"ship.x.y.EventACK",
            b"end",
        ]


async def test_queue_group_delivers_each_message_to_exactly_one_member(backend: Backend) -> None:
    async with backend.transports("p", "s1", "s2", "s3") as (p, s1, s2, s3):
        subject = "ship.REQCliCommand.EventACK"
        members = [s1.subscribe(subject, queue=subject), s2.subscribe(subject, queue=subject)]
        plain = s3.subscribe(subject)
        for transport in (s1, s2, s3):
            await transport.flush()
        for i in range(200):
            p.publish_nowait(subject, str(i).encode())
        await wait_for(lambda: sum(s.delivered for s in members) == 200 and plain.delivered == 200)
        await p.flush()  # anything extra would have been sent by now
        got = [int(m.payload) for s in members for m in drain(s)]
        assert sorted(got) == list(range(200))
        assert all(s.delivered > 0 for s in members)
        assert [int(m.payload) for m in drain(plain)] == list(range(200))


async def test_request_reply(backend: Backend) -> None:
    async with backend.transports("a", "b") as (a, b), trio.open_nursery() as nursery:

        async def respond(subscription: Subscription) -> None:
            async for msg in subscription.receive:
                b.publish_nowait(msg.reply, b"ack:" + msg.payload, {"k": "v"})

        nursery.start_soon(respond, b.subscribe("b.REQPing.EventACK"))
        await b.flush()
        results: dict[int, InboundMessage] = {}

        async def one(i: int) -> None:
            results[i] = await a.request("b.REQPing.EventACK", str(i).encode(), timeout=TIMEOUT)

        async with trio.open_nursery() as requests:
            for i in range(20):
                requests.start_soon(one, i)
        nursery.cancel_scope.cancel()
    assert {i: r.payload for i, r in results.items()} == {i: f"ack:{i}".encode() for i in range(20)}
    assert results[0].headers == {"k": "v"}


async def test_no_responders_waits_out_the_timeout(backend: Backend) -> None:
    async with backend.transports("a") as (a,):
        start = trio.current_time()
        with pytest.raises(RequestTimeout) as info:
            await a.request("nobody.REQPing.EventACK", b"x", timeout=0.3)
        elapsed = trio.current_time() - start
    assert info.value.no_responders
    assert info.value.subject == "nobody.REQPing.EventACK"
    assert elapsed >= 0.29


async def test_a_silent_subscriber_is_not_no_responders(backend: Backend) -> None:
    async with backend.transports("a", "b") as (a, b):
        b.subscribe("silent")
        await b.flush()
        with pytest.raises(RequestTimeout) as info:
            await a.request("silent", b"x", timeout=0.3)
    assert not info.value.no_responders


async def test_flush_ordering(backend: Backend) -> None:
    """A subscription made before ``flush`` gets every later message, in publish order."""
    async with backend.transports("a", "b") as (a, b):
        subscription = b.subscribe("ordered")
        await b.flush()
        for i in range(100):
            a.publish_nowait("ordered", str(i).encode())
        await a.flush()
        for i in range(100, 200):
            await a.publish("ordered", str(i).encode())
        received = await receive(subscription, 200)
    assert [int(m.payload) for m in received] == list(range(200))


async def test_full_subscription_channel_drops_and_counts(backend: Backend) -> None:
    async with backend.transports("a") as (a,):
        subscription = a.subscribe("flood", capacity=10)
        await a.flush()
        for i in range(100):
            a.publish_nowait("flood", str(i).encode())
        await wait_for(lambda: subscription.delivered + subscription.dropped == 100)
        assert (subscription.delivered, subscription.dropped, a.inbound_dropped) == (10, 90, 90)
        assert [int(m.payload) for m in drain(subscription)] == list(range(10))


async def test_unsubscribe_ends_the_channel(backend: Backend) -> None:
    async with backend.transports("a") as (a,):
        subscription = a.subscribe("x")
        await a.flush()
        a.unsubscribe(subscription)
        await a.flush()
        a.publish_nowait("x", b"after")
        with pytest.raises(trio.EndOfChannel):
            await subscription.receive.receive()


async def test_close_connection_makes_run_raise_and_ends_subscriptions(backend: Backend) -> None:
    transport = backend.make("a")
    errors: list[TransportError] = []

    async def run(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await transport.run(task_status=task_status)
        except TransportError as exc:
            errors.append(exc)

    async with trio.open_nursery() as nursery:
        await nursery.start(run)
        await wait_for(lambda: transport.state is ConnectionState.CONNECTED)
        subscription = transport.subscribe("x")
        await transport.flush()
        transport.close_connection("contract test")
        await wait_for(lambda: bool(errors))
    assert transport.state is ConnectionState.CLOSED
    with pytest.raises(trio.EndOfChannel):
        await subscription.receive.receive()
