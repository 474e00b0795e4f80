"""Against nats-server: the bridge client's direct subscriptions, which take their messages
straight from nats-py's read loop."""

from __future__ import annotations

import asyncio

import pytest
import trio
import trio_asyncio

from steward_otp.bridge.hardened_client import HardenedClient, RefusedFrames
from tests.conftest import NatsServer

pytestmark = pytest.mark.integration


async def _exercise(
    url: str,
) -> tuple[list[tuple[str, bytes, dict[str, str] | None, str]], int, int]:
    """Subscribe directly, have the deliver function fail on three messages, unsubscribe;
    returns what was delivered, how many takes failed and how many direct subscriptions
    are left."""
    client = HardenedClient(RefusedFrames())
    await client.connect(servers=[url], max_reconnect_attempts=0)
    publisher = HardenedClient(RefusedFrames())
    await publisher.connect(servers=[url], max_reconnect_attempts=0)
    got: list[tuple[str, bytes, dict[str, str] | None, str]] = []
    done = asyncio.Event()

    def deliver(subject: str, payload: bytes, headers: dict[str, str] | None, reply: str) -> None:
        if payload == b"boom":
            raise RuntimeError("a bug in what takes the message")
        got.append((subject, payload, headers, reply))
        if payload == b"last":
            done.set()

    sub = await client.subscribe_direct("ship1.>", deliver, queue="ship1")
    # nats-py's flush() writes its PING ahead of what waits in its buffer (the SUB): push
    # that out first, as the bridge does, so the broker has the subscription on its return.
    await client._flush_pending(force_flush=True)
    await client.flush()
    await publisher.publish("ship1.a", b"first", reply="_INBOX.r1", headers={"sotp": "2"})
    for _ in range(3):
        await publisher.publish("ship1.b", b"boom")
    await publisher.publish("ship1.c", b"last")
    await asyncio.wait_for(done.wait(), 10)
    await sub.unsubscribe()
    left = len(client._direct)
    await publisher.close()
    await client.close()
    return got, client.failed_takes, left


async def test_a_direct_subscription_delivers_keeps_reading_past_a_failing_take_and_is_forgotten(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with trio_asyncio.open_loop():
        with trio.fail_after(20):
            got, failed, left = await trio_asyncio.aio_as_trio(_exercise)(nats_server.url)
    assert got == [
        ("ship1.a", b"first", {"sotp": "2"}, "_INBOX.r1"),
        ("ship1.c", b"last", None, ""),
    ]
    assert left == 0
    # Each failed take is counted; only the first is logged, with its traceback.
    assert failed == 3
    lines = [r for r in caplog.records if "could not take a message" in r.getMessage()]
    assert [r.getMessage() for r in lines] == [
        "bridge: a subscription could not take a message on b'ship1.b' (1 so far)"
    ]
    assert lines[0].exc_info is not None
