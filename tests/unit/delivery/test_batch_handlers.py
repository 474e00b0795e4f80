"""A quick handler with ``batch=``: the Subscriber runs a whole batch in one call.

Two real nodes on the in-memory broker; ship1 serves ``REQBatchProbe``, whose batch function
answers per message by its data: ``fail`` -> HandlerError, ``echo`` -> a reply, else no reply.
Each message still gets its own outcome, its own reply or error reply, exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import attrs
import pytest
import trio

from steward_otp.handlers.base import (
    BatchResult,
    Handler,
    HandlerContext,
    HandlerError,
    NodeServices,
    handler,
)
from steward_otp.loopback import LoopbackBroker, LoopbackTransport
from steward_otp.message import Message
from steward_otp.node import Node
from steward_otp.store.records import Direction
from tests.nodes import node_config
from tests.unit.handlers.loopback_nodes import QUIET, UNUSED_URL, file_text, message, wait_for


@attrs.define
class Probe:
    """What the probe's functions saw: the size of each batch, the single calls."""

    batches: list[int] = attrs.field(factory=list)
    singles: list[bytes] = attrs.field(factory=list)
    crash: bool = False
    poison: bytes | None = None
    """Data that crashes both functions (a bug one message triggers)."""


def probe_handler(probe: Probe) -> Handler:
    async def one(ctx: HandlerContext, msg: Message) -> bytes | None:
        probe.singles.append(msg.data)
        if msg.data == probe.poison:
            raise RuntimeError("probe bug on one message")
        return None

    async def many(services: NodeServices, messages: Sequence[Message]) -> list[BatchResult]:
        probe.batches.append(len(messages))
        if probe.crash or any(m.data == probe.poison for m in messages):
            raise RuntimeError("probe bug")
        results: list[BatchResult] = []
        for msg in messages:
            if msg.data == b"fail":
                results.append(HandlerError(f"refused {msg.id}"))
            elif msg.data == b"echo":
                results.append(b"echoed " + msg.id.encode() + b"\n")
            else:
                results.append(None)
        return results

    return handler("REQBatchProbe", quick=True, batch=many)(one)


async def inbound_outcomes(node: Node, count: int) -> dict[str, str]:
    """The outcome the node's store recorded for each message it ran, once there are
    ``count`` of them (a completion commits just after the error replies are sent)."""
    with trio.fail_after(10):
        while True:
            records = await node.store.audit_log()
            found = {r.msg_id: r.outcome for r in records if r.direction == Direction.INBOUND}
            if len(found) >= count:
                return found
            await trio.sleep(0.02)


def pair(base: Path, probe: Probe) -> tuple[Node, Node]:
    broker = LoopbackBroker()
    probe_ = probe_handler(probe)
    nodes = []
    for name in ("central", "ship1"):
        config = node_config(base, name, UNUSED_URL, **QUIET)
        transport = LoopbackTransport(broker, name=name)
        nodes.append(Node(config, handlers=[probe_], transport=transport))
    return nodes[0], nodes[1]


async def test_one_call_handles_the_batch_and_each_message_gets_its_own_outcome(
    tmp_path: Path,
) -> None:
    probe = Probe()
    central, ship1 = pair(tmp_path, probe)
    replies = tmp_path / "central" / "data" / "out" / "ship1" / "out.txt"
    errors = tmp_path / "central" / "data" / "out" / "ship1" / "out.txt.error"
    batch = [
        message("REQBatchProbe", id=f"central:{i}", data=data)
        for i, data in enumerate([b"echo", b"fail", b"quiet", b"echo"])
    ]
    async with central, ship1:
        await central.submit(batch)
        await wait_for(lambda: file_text(replies).count("echoed") == 2, timeout=10)
        await wait_for(lambda: "refused central:1" in file_text(errors), timeout=10)
        assert sorted(file_text(replies).split("\n")) == [
            "",
            "echoed central:0",
            "echoed central:3",
        ]
        assert "error: REQBatchProbe: refused central:1" in file_text(errors)
        outcomes = await inbound_outcomes(ship1, 4)
    assert probe.singles == []
    assert sum(probe.batches) == 4
    assert outcomes == {
        "central:0": "ok",
        "central:1": "error",
        "central:2": "ok",
        "central:3": "ok",
    }


async def test_a_crashing_batch_fails_its_messages_and_restarts_the_subscriber(
    tmp_path: Path,
) -> None:
    probe = Probe(crash=True)
    central, ship1 = pair(tmp_path, probe)
    errors = tmp_path / "central" / "data" / "out" / "ship1" / "out.txt.error"
    async with central, ship1:
        await central.submit([message("REQBatchProbe", id="central:c", data=b"x")])
        await wait_for(lambda: "handler crashed" in file_text(errors), timeout=10)
        assert "RuntimeError('probe bug')" in file_text(errors)
        outcomes = await inbound_outcomes(ship1, 1)
    # Recorded as a crash: it does not run again (exactly once, even for a bug).
    assert outcomes == {"central:c": "crash"}
    assert probe.batches == [1]


async def test_a_message_that_crashes_its_batch_fails_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    probe = Probe(poison=b"boom")
    central, ship1 = pair(tmp_path, probe)
    batch = [
        message("REQBatchProbe", id=f"central:{i}", data=data)
        for i, data in enumerate([b"a", b"boom", b"c", b"d"])
    ]
    async with central, ship1:
        await central.submit(batch)
        outcomes = await inbound_outcomes(ship1, 4)
    assert outcomes == {
        "central:0": "ok",
        "central:1": "crash",
        "central:2": "ok",
        "central:3": "ok",
    }
    if any(size > 1 for size in probe.batches):  # they came as one batch: run one by one
        assert "running its messages one by one" in caplog.text
        assert b"boom" in probe.singles


async def test_a_quick_handler_without_a_batch_function_runs_its_batch_concurrently(
    tmp_path: Path,
) -> None:
    """Each message of a quick batch runs in a task of its own, so what the runs wait on
    (the file writer, the append journal) is grouped across the batch, not done once per
    message in turn."""
    running = 0
    most = 0

    @handler("REQOverlap", quick=True)
    async def overlap(ctx: HandlerContext, msg: Message) -> bytes | None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await trio.sleep(0)  # a checkpoint: the other runs of the batch get their turn
        running -= 1
        return None

    broker = LoopbackBroker()
    central, ship1 = (
        Node(
            node_config(tmp_path, name, UNUSED_URL, **QUIET),
            handlers=[overlap],
            transport=LoopbackTransport(broker, name=name),
        )
        for name in ("central", "ship1")
    )
    count = 50
    async with central, ship1:
        await central.submit([message("REQOverlap", data=str(i).encode()) for i in range(count)])
        outcomes = await inbound_outcomes(ship1, count)
    assert set(outcomes.values()) == {"ok"}
    assert most > 1
