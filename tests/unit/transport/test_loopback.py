"""The in-memory broker and transport: NATS routing rules, outages and injected faults."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from steward_otp.loopback import (
    FaultKind,
    LoopbackBroker,
    LoopbackClosed,
    LoopbackTransport,
    is_valid_pattern,
    is_valid_subject,
    subject_matches,
)
from steward_otp.transport import (
    ConnectionState,
    InboundMessage,
    RequestTimeout,
    Subscription,
    Transport,
)


def drain(subscription: Subscription) -> list[InboundMessage]:
    """Every message waiting in ``subscription``'s channel, without blocking."""
    items = []
    while True:
        try:
            items.append(subscription.receive.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            return items


def state(transport: Transport) -> ConnectionState:
    """The transport's state now (a call, so that mypy does not narrow it between checks)."""
    return transport.state


def payloads(subscription: Subscription) -> list[bytes]:
    return [m.payload for m in drain(subscription)]


@asynccontextmanager
async def running(broker: LoopbackBroker, *names: str) -> AsyncIterator[list[LoopbackTransport]]:
    """Transports on ``broker``, each running in a nursery cancelled at the end."""
    async with trio.open_nursery() as nursery:
        transports = []
        for name in names:
            transport = LoopbackTransport(broker, name)
            assert await nursery.start(transport.run) is transport
            transports.append(transport)
        yield transports
        nursery.cancel_scope.cancel()


async def responder(transport: LoopbackTransport, subscription: Subscription) -> None:
    """Answer every request on ``subscription`` with ``ack:<payload>``."""
    async for msg in subscription.receive:
        transport.publish_nowait(msg.reply, b"ack:" + msg.payload)


def test_a_loopback_transport_is_a_transport() -> None:
    transport: Transport = LoopbackTransport(LoopbackBroker())
    assert transport.state is ConnectionState.CONNECTING


# --------------------------------------------------------------------- subjects


@pytest.mark.parametrize(
    ("pattern", "subject", "expected"),
    [
        ("a.b.c", "a.b.c", True),
        ("a.b.c", "a.b", False),
        ("a.b", "a.b.c", False),
        ("a.*.c", "a.x.c", True),
        ("a.*.c", "a.x.y.c", False),
        ("a.*", "a", False),
        ("*", "a", True),
        ("a.>", "a.b", True),
        ("a.>", "a.b.c.d", True),
        ("a.>", "a", False),
        (">", "a.b", True),
        ("*.>", "a", False),
        ("a*", "ab", False),
        ("a*", "a*", True),
        ("a.b", "a..b", False),
    ],
)
def test_subject_matching_follows_nats_rules(pattern: str, subject: str, expected: bool) -> None:
    assert subject_matches(pattern, subject) is expected


def test_invalid_subjects_and_patterns() -> None:
    assert not is_valid_subject("a.*")
    assert not is_valid_subject("a.>")
    assert not is_valid_subject("")
    assert not is_valid_subject("a. b")
    assert is_valid_pattern("a.*.>")
    assert not is_valid_pattern("a.>.b")
    assert not is_valid_pattern("a..b")
    with pytest.raises(ValueError, match="invalid subject pattern"):
        subject_matches("a.>.b", "a.x.b")


def reference_match(pattern: str, subject: str) -> bool:
    """NATS matching as a regular expression: ``*`` is one token, a final ``>`` the rest."""
    parts = []
    for token in pattern.split("."):
        parts.append("[^.]+" if token == "*" else ".+" if token == ">" else re.escape(token))
    return re.fullmatch(r"\.".join(parts), subject) is not None


TOKENS = st.sampled_from(["a", "b", "a*", "c1"])


@st.composite
def patterns(draw: st.DrawFn) -> str:
    tokens = draw(st.lists(st.one_of(TOKENS, st.just("*")), max_size=5))
    if draw(st.booleans()) or not tokens:
        tokens.append(">")
    return ".".join(tokens)


@given(patterns(), st.lists(TOKENS, min_size=1, max_size=6).map(".".join))
def test_matcher_agrees_with_a_reference_implementation(pattern: str, subject: str) -> None:
    assert subject_matches(pattern, subject) is reference_match(pattern, subject)


# --------------------------------------------------------------------- routing


async def test_exact_subject_delivers_in_order_with_headers_and_nothing_else() -> None:
    async with running(LoopbackBroker(), "a", "b") as (a, b):
        subscription = b.subscribe("ship1.REQTest.EventNACK")
        headers = {"serial": "cbor"}
        for i in range(100):
            a.publish_nowait("ship1.REQTest.EventNACK", str(i).encode(), headers)
        a.publish_nowait("ship1.REQTest.EventACK", b"other")
        headers["serial"] = "changed after publishing"
        received = drain(subscription)
    assert [int(m.payload) for m in received] == list(range(100))
    assert received[0].headers == {"serial": "cbor"}
    assert received[0].subject == "ship1.REQTest.EventNACK"
    assert a.published == 101


async def test_wildcards_route_by_token() -> None:
    async with running(LoopbackBroker(), "a") as (a,):
        star = a.subscribe("ship.*.EventACK")
        tail = a.subscribe("ship.>")
        for subject in [
            "ship.x.EventACK",
            "ship.x.y.EventACK",
            "ship",
            "ship.y.EventACK",
            "other.x",
        ]:
            a.publish_nowait(subject, subject.encode())
    assert payloads(star) == [b"ship.x.EventACK", b"ship.y.EventACK"]
    assert payloads(tail) == [b"ship.x.EventACK", b"ship.x.y.EventACK", b"ship.y.EventACK"]


async def test_queue_group_gives_each_message_to_exactly_one_member_and_plain_ones_all() -> None:
    broker = LoopbackBroker()
    async with running(broker, "p", "s1", "s2", "s3") as (p, s1, s2, s3):
        subject = "ship.REQCliCommand.EventACK"
        members = [s1.subscribe(subject, queue="q"), s2.subscribe(subject, queue="q")]
        other_group = [s3.subscribe(subject, queue="r"), s3.subscribe(subject, queue="r")]
        wildcard_group = s3.subscribe("ship.>", queue="q")  # other subject: another group
        plain = s3.subscribe(subject)
        assert broker.interest(subject) == 4
        for i in range(100):
            p.publish_nowait(subject, str(i).encode())
        got = [int(x) for s in members for x in payloads(s)]
        got_other = [int(x) for s in other_group for x in payloads(s)]
    assert sorted(got) == list(range(100))
    assert sorted(got_other) == list(range(100))
    assert all(s.delivered > 0 for s in members + other_group)
    assert [int(x) for x in payloads(wildcard_group)] == list(range(100))
    assert [int(x) for x in payloads(plain)] == list(range(100))


async def test_a_group_member_whose_reader_went_away_is_skipped() -> None:
    broker = LoopbackBroker()
    async with running(broker, "a") as (a,):
        gone = a.subscribe("work", queue="workers")
        alive = a.subscribe("work", queue="workers")
        await gone.receive.aclose()
        for i in range(10):
            a.publish_nowait("work", str(i).encode())
    assert [int(x) for x in payloads(alive)] == list(range(10))
    assert gone.closed


async def test_subscriptions_work_before_run_and_on_transports_never_run() -> None:
    broker = LoopbackBroker()
    a, b = LoopbackTransport(broker, "a"), LoopbackTransport(broker, "b")
    subscription = b.subscribe("early")
    a.publish_nowait("early", b"1")
    async with trio.open_nursery() as nursery:
        await nursery.start(b.run)
        a.publish_nowait("early", b"2")
        nursery.cancel_scope.cancel()
    assert payloads(subscription) == [b"1", b"2"]


async def test_full_channel_drops_and_counts() -> None:
    async with running(LoopbackBroker(), "a") as (a,):
        subscription = a.subscribe("flood", capacity=10)
        for i in range(100):
            a.publish_nowait("flood", str(i).encode())
        assert subscription.delivered == 10
        assert subscription.dropped == 90
        assert a.inbound_dropped == 90
        assert [int(x) for x in payloads(subscription)] == list(range(10))


async def test_unsubscribe_ends_the_channel_and_the_interest() -> None:
    broker = LoopbackBroker()
    async with running(broker, "a") as (a,):
        subscription = a.subscribe("x")
        a.publish_nowait("x", b"before")
        a.unsubscribe(subscription)
        a.publish_nowait("x", b"after")
        assert broker.interest("x") == 0
        assert (await subscription.receive.receive()).payload == b"before"
        with pytest.raises(trio.EndOfChannel):
            await subscription.receive.receive()


async def test_invalid_subjects_are_refused() -> None:
    async with running(LoopbackBroker(), "a") as (a,):
        with pytest.raises(ValueError, match="invalid subject pattern"):
            a.subscribe("a.>.b")
        a.publish_nowait("a.*", b"x")
        a.publish_nowait("a", b"x", reply="bad reply")
        assert a.publish_errors == 2
        assert a.published == 0


# --------------------------------------------------------------------- request/reply


async def test_request_reply_matches_concurrent_replies_to_their_requests() -> None:
    async with running(LoopbackBroker(), "a", "b") as (a, b), trio.open_nursery() as nursery:
        nursery.start_soon(responder, b, b.subscribe("b.REQPing.EventACK"))
        results: dict[int, bytes] = {}

        async def one(i: int) -> None:
            reply = await a.request("b.REQPing.EventACK", str(i).encode(), timeout=5)
            results[i] = reply.payload

        async with trio.open_nursery() as requests:
            for i in range(50):
                requests.start_soon(one, i)
        nursery.cancel_scope.cancel()
    assert results == {i: f"ack:{i}".encode() for i in range(50)}


async def test_request_without_subscriber_waits_out_the_timeout_with_no_responders(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with running(LoopbackBroker(), "a") as (a,):
        start = trio.current_time()
        with pytest.raises(RequestTimeout) as info:
            await a.request("nobody.REQPing.EventACK", b"x", timeout=3)
        assert trio.current_time() - start == pytest.approx(3)
    assert info.value.subject == "nobody.REQPing.EventACK"
    assert info.value.no_responders


async def test_request_to_a_silent_or_full_subscriber_times_out_without_no_responders(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with running(LoopbackBroker(), "a") as (a,):
        full = a.subscribe("busy", capacity=1)
        a.publish_nowait("busy", b"fills the channel")
        a.subscribe("silent")
        for subject in ("busy", "silent"):
            with pytest.raises(RequestTimeout) as info:
                await a.request(subject, b"x", timeout=1)
            assert not info.value.no_responders
        assert full.dropped == 1


async def test_new_inbox_is_fresh_and_not_taken_for_a_reply() -> None:
    async with running(LoopbackBroker(), "a", "b") as (a, b):
        first, second = a.new_inbox(), a.new_inbox()
        assert first != second
        assert first.startswith(a.inbox_prefix + ".")
        assert not first.startswith(b.inbox_prefix + ".")
        subscription = a.subscribe(first)
        b.publish_nowait(first, b"to the box")
        assert payloads(subscription) == [b"to the box"]


# --------------------------------------------------------------------- lifecycle


async def test_run_reports_ready_connected_and_info() -> None:
    broker = LoopbackBroker()
    transport = LoopbackTransport(broker, "node1")
    assert transport.state is ConnectionState.CONNECTING
    async with trio.open_nursery() as nursery:
        assert await nursery.start(transport.run) is transport
        assert state(transport) is ConnectionState.CONNECTED
        transport.publish_nowait("x", b"")
        assert transport.info == {
            "state": "connected",
            "url": "loopback://node1",
            "reconnects": 0,
            "published": 1,
            "publish_errors": 0,
            "max_payload": 1024 * 1024,
            "outbound_queued": 0,
        }
        with pytest.raises(RuntimeError, match="already running"):
            await transport.run()
        nursery.cancel_scope.cancel()
    assert state(transport) is ConnectionState.CLOSED


async def test_close_connection_makes_run_raise_and_ends_subscriptions_then_run_again() -> None:
    broker = LoopbackBroker()
    transport = LoopbackTransport(broker, "node1")
    subscription = transport.subscribe("x")
    with pytest.RaisesGroup(pytest.RaisesExc(LoopbackClosed, match="test reason")):
        async with trio.open_nursery() as nursery:
            await nursery.start(transport.run)
            transport.close_connection("test reason")
            await trio.sleep_forever()
    assert transport.state is ConnectionState.CLOSED
    assert broker.interest("x") == 0
    with pytest.raises(trio.EndOfChannel):
        await subscription.receive.receive()
    # A supervisor restarts it: it works as new.
    async with trio.open_nursery() as nursery:
        await nursery.start(transport.run)
        assert state(transport) is ConnectionState.CONNECTED
        again = transport.subscribe("x")
        transport.publish_nowait("x", b"again")
        assert payloads(again) == [b"again"]
        nursery.cancel_scope.cancel()


async def test_close_connection_before_run_ends_the_next_run() -> None:
    transport = LoopbackTransport(LoopbackBroker())
    transport.close_connection("early")
    with pytest.raises(LoopbackClosed, match="early"):
        await transport.run()


async def test_ending_run_fails_pending_requests(autojump_clock: trio.abc.Clock) -> None:
    broker = LoopbackBroker()
    transport = LoopbackTransport(broker)
    transport.subscribe("silent")
    failed = trio.Event()

    async def ask() -> None:
        with pytest.raises(RequestTimeout):
            await transport.request("silent", b"x", timeout=100)
        failed.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask)
        async with trio.open_nursery() as bridge:
            await bridge.start(transport.run)
            await trio.sleep(1)
            bridge.cancel_scope.cancel()
        await failed.wait()
    assert trio.current_time() == pytest.approx(1)


async def test_broker_outage_loses_publishes_and_changes_state(
    autojump_clock: trio.abc.Clock,
) -> None:
    broker = LoopbackBroker()
    idle = LoopbackTransport(broker, "idle")
    async with running(broker, "a", "b") as (a, b), trio.open_nursery() as nursery:
        subscription = b.subscribe("x")
        b.subscribe("y")
        broker.stop()
        assert (a.state, b.state) == (ConnectionState.RECONNECTING,) * 2
        assert idle.state is ConnectionState.CONNECTING
        assert a.info["state"] == "reconnecting"
        a.publish_nowait("x", b"lost")
        assert (a.publish_errors, a.published, broker.lost) == (1, 0, 1)
        with pytest.raises(RequestTimeout) as info:
            await a.request("y", b"x", timeout=1)
        assert not info.value.no_responders
        flushed = trio.Event()

        async def flush() -> None:
            await a.flush()
            flushed.set()

        nursery.start_soon(flush)
        await trio.sleep(10)
        assert not flushed.is_set()
        broker.start()
        await flushed.wait()
        assert (a.state, b.state) == (ConnectionState.CONNECTED,) * 2
        assert (a.reconnects, b.reconnects, idle.reconnects) == (1, 1, 0)
        assert idle.state is ConnectionState.CONNECTING
        a.publish_nowait("x", b"back")
        assert payloads(subscription) == [b"back"]


async def test_run_started_while_the_broker_is_down_connects_when_it_returns() -> None:
    broker = LoopbackBroker()
    broker.stop()
    async with running(broker, "a") as (a,):
        assert a.state is ConnectionState.CONNECTING
        broker.start()
        assert state(a) is ConnectionState.CONNECTED
        assert a.reconnects == 0


async def test_reconnect_buffer_delivers_kept_publishes_in_order_on_return() -> None:
    broker = LoopbackBroker()
    a = LoopbackTransport(broker, "a", reconnect_buffer=2)
    async with running(broker, "b") as (b,):
        subscription = b.subscribe("x")
        broker.stop()
        for i in range(3):
            a.publish_nowait("x", str(i).encode())
        assert (a.published, a.publish_errors, a.info["outbound_queued"]) == (2, 1, 2)
        assert payloads(subscription) == []
        broker.start()
        a.publish_nowait("x", b"3")
        assert payloads(subscription) == [b"0", b"1", b"3"]


# --------------------------------------------------------------------- faults


async def test_drop_loses_the_next_count_matching_messages() -> None:
    broker = LoopbackBroker()
    async with running(broker, "a") as (a,):
        subscription = a.subscribe(">")
        rule = broker.faults.drop("a.>", count=2)
        for subject in ["a.1", "b.1", "a.2", "a.3"]:
            a.publish_nowait(subject, subject.encode())
        assert payloads(subscription) == [b"b.1", b"a.3"]
        assert (broker.faults.dropped, rule.hits, rule.active) == (2, 2, False)
        assert rule.kind is FaultKind.DROP
        assert a.published == 4


async def test_drop_by_predicate() -> None:
    broker = LoopbackBroker()
    async with running(broker, "a") as (a,):
        subscription = a.subscribe("x")
        broker.faults.drop(">", count=None, where=lambda m: m.payload.startswith(b"secret"))
        for payload in [b"1", b"secret 1", b"2", b"secret 2"]:
            a.publish_nowait("x", payload)
        assert payloads(subscription) == [b"1", b"2"]
        assert broker.faults.dropped == 2


async def test_a_dropped_request_times_out_without_no_responders(
    autojump_clock: trio.abc.Clock,
) -> None:
    broker = LoopbackBroker()
    async with running(broker, "a") as (a,):
        broker.faults.drop("nobody")
        with pytest.raises(RequestTimeout) as info:
            await a.request("nobody", b"x", timeout=1)
        assert not info.value.no_responders


async def test_dropping_replies_on_an_inbox(autojump_clock: trio.abc.Clock) -> None:
    broker = LoopbackBroker()
    async with running(broker, "a", "b") as (a, b), trio.open_nursery() as nursery:
        nursery.start_soon(responder, b, b.subscribe("ping"))
        broker.faults.drop(f"{a.inbox_prefix}.>")
        with pytest.raises(RequestTimeout) as info:
            await a.request("ping", b"1", timeout=1)
        assert not info.value.no_responders
        assert (await a.request("ping", b"2", timeout=1)).payload == b"ack:2"
        nursery.cancel_scope.cancel()


def dropped_by(seed: int, faults_seed: int | None = None) -> list[int]:
    """Which of 1000 messages a 30 % drop rate loses with ``seed``."""
    broker = LoopbackBroker(seed=seed)
    if faults_seed is not None:
        broker.faults.seed(faults_seed)
    transport = LoopbackTransport(broker)
    subscription = transport.subscribe("x", capacity=1000)
    broker.faults.drop_rate("x", 0.3)
    for i in range(1000):
        transport.publish_nowait("x", str(i).encode())
        transport.publish_nowait("y", b"not matched: draws no random number")
    kept = {int(x) for x in payloads(subscription)}
    assert broker.faults.dropped == 1000 - len(kept)
    return [i for i in range(1000) if i not in kept]


async def test_drop_rate_is_reproducible_with_a_seed() -> None:
    first = dropped_by(seed=7)
    assert 200 < len(first) < 400
    assert dropped_by(seed=7) == first
    assert dropped_by(seed=1, faults_seed=7) == first
    assert dropped_by(seed=8) != first


async def test_duplicate_delivers_the_copy_right_after_the_original() -> None:
    broker = LoopbackBroker()
    async with running(broker, "a") as (a,):
        subscription = a.subscribe("x")
        broker.faults.duplicate("x", count=2)
        for payload in [b"1", b"2", b"3"]:
            a.publish_nowait("x", payload)
        assert payloads(subscription) == [b"1", b"1", b"2", b"2", b"3"]
        assert broker.faults.duplicated == 2


async def test_delay_delivers_later_on_the_run_clock_in_publish_order(
    autojump_clock: trio.abc.Clock,
) -> None:
    broker = LoopbackBroker()
    async with running(broker, "a") as (a,):
        subscription = a.subscribe(">")
        broker.faults.delay("slow.>", 5)
        start = trio.current_time()
        a.publish_nowait("slow.1", b"s1")
        a.publish_nowait("fast", b"f")
        a.publish_nowait("slow.2", b"s2")
        assert payloads(subscription) == [b"f"]
        first = await subscription.receive.receive()
        assert trio.current_time() - start == pytest.approx(5)
        assert [first.payload, *payloads(subscription)] == [b"s1", b"s2"]
        assert broker.faults.delayed == 2


async def test_a_shorter_delay_published_later_overtakes(autojump_clock: trio.abc.Clock) -> None:
    broker = LoopbackBroker()
    async with running(broker, "a") as (a,):
        subscription = a.subscribe("x")
        broker.faults.delay("x", 10, count=1)
        broker.faults.delay("x", 3, count=1)
        a.publish_nowait("x", b"slow")
        a.publish_nowait("x", b"quick")
        a.publish_nowait("x", b"now")
        received = [(await subscription.receive.receive()).payload for _ in range(3)]
        assert received == [b"now", b"quick", b"slow"]
        assert trio.current_time() == pytest.approx(10)


async def test_a_delayed_message_due_while_the_broker_is_down_is_lost(
    autojump_clock: trio.abc.Clock,
) -> None:
    broker = LoopbackBroker()
    async with running(broker, "a") as (a,):
        subscription = a.subscribe("x")
        broker.faults.delay("x", 5, count=1)
        a.publish_nowait("x", b"in flight")
        broker.stop()
        await trio.sleep(6)
        broker.start()
        a.publish_nowait("x", b"after")
        assert payloads(subscription) == [b"after"]
        assert broker.lost == 1


async def test_reorder_swaps_each_held_message_with_the_next_match() -> None:
    broker = LoopbackBroker()
    async with running(broker, "a") as (a,):
        subscription = a.subscribe(">")
        broker.faults.reorder("x", count=2)
        for payload in [b"1", b"2", b"3"]:
            a.publish_nowait("x", payload)
        a.publish_nowait("y", b"other subject passes")
        a.publish_nowait("x", b"4")
        a.publish_nowait("x", b"5")
        assert payloads(subscription) == [b"2", b"1", b"other subject passes", b"4", b"3", b"5"]
        assert broker.faults.reordered == 2


async def test_clear_removes_the_rules_and_delivers_held_messages() -> None:
    broker = LoopbackBroker()
    async with running(broker, "a") as (a,):
        subscription = a.subscribe("x")
        broker.faults.reorder("x")
        broker.faults.drop("y", count=None)
        a.publish_nowait("x", b"held")
        assert [m.payload for m in broker.faults.held] == [b"held"]
        broker.faults.clear()
        assert payloads(subscription) == [b"held"]
        a.publish_nowait("y", b"through")
        a.publish_nowait("x", b"through")
        assert payloads(subscription) == [b"through"]
        assert broker.interest("y") == 0
        assert broker.faults.rules == []
        assert broker.faults.reordered == 1


async def test_remove_takes_one_rule_away() -> None:
    broker = LoopbackBroker()
    async with running(broker, "a") as (a,):
        subscription = a.subscribe("x")
        drop = broker.faults.drop("x", count=None)
        duplicate = broker.faults.duplicate("x", count=None)
        a.publish_nowait("x", b"1")
        broker.faults.remove(drop)
        a.publish_nowait("x", b"2")
        assert payloads(subscription) == [b"2", b"2"]
        assert broker.faults.rules == [duplicate]


def test_fault_arguments_are_checked() -> None:
    faults = LoopbackBroker().faults
    with pytest.raises(ValueError, match="count"):
        faults.drop("x", count=0)
    with pytest.raises(ValueError, match="probability"):
        faults.drop_rate("x", 1.5)
    with pytest.raises(ValueError, match="negative"):
        faults.delay("x", -1)
    with pytest.raises(ValueError, match="pattern"):
        faults.duplicate("x.>.y")
    assert faults.rules == []


# --------------------------------------------------------------------- limits


async def test_max_payload_is_the_configured_one_until_connected_then_the_brokers() -> None:
    broker = LoopbackBroker(max_payload=64 * 1024)
    transport = LoopbackTransport(broker, "node1", max_payload=2 * 1024 * 1024)
    assert transport.max_payload == 2 * 1024 * 1024
    async with trio.open_nursery() as nursery:
        await nursery.start(transport.run)
        assert transport.max_payload == 64 * 1024
        assert transport.info["max_payload"] == 64 * 1024
        nursery.cancel_scope.cancel()


async def test_the_broker_refuses_a_payload_over_its_max_payload() -> None:
    broker = LoopbackBroker(max_payload=1000)
    transport = LoopbackTransport(broker, "node1")
    sub = transport.subscribe("x")
    async with trio.open_nursery() as nursery:
        await nursery.start(transport.run)
        transport.publish_nowait("x", b"a" * 1001)
        transport.publish_nowait("x", b"a" * 1000)
        assert transport.publish_errors == 1
        assert sub.receive.receive_nowait().payload == b"a" * 1000
        with pytest.raises(trio.WouldBlock):
            sub.receive.receive_nowait()
        nursery.cancel_scope.cancel()
