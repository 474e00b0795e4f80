"""The Router hands what waits in its mailbox over in one go: the Publishers it needs are
started together (DynamicSupervisor.start_children), each once, messages in order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import trio

from steward_otp.message import Message, MessageDefaults
from steward_otp.methods import builtin_table
from steward_otp.outbound.outbox import Outbox
from steward_otp.outbound.router import Router, publisher_id
from steward_otp.store import Store as RealStore
from steward_otp.supervisors import ChildSpec, DynamicSupervisor, Restart, Strategy, Supervisor
from tests.unit.delivery.test_publisher_timing import MemoryStore
from tests.unit.supervisors.probes import running
from tests.unit.test_store import running as running_store


class Store(MemoryStore):
    async def pending(self) -> list[Any]:
        return []


class FakePublishers:
    """Publisher stand-ins: take 1 s to start, record what reaches their inbox."""

    def __init__(self) -> None:
        self.starts: list[str] = []
        self.received: dict[str, list[str]] = {}

    async def run(
        self,
        to_node: str,
        method: str,
        jetstream: bool | None = None,
        task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        await trio.sleep(1.0)
        send, receive = trio.open_memory_channel[Message](1000)
        self.starts.append(to_node)
        task_status.started(send)
        async for message in receive:
            self.received.setdefault(to_node, []).append(message.id)


def message(to_node: str, msg_id: str) -> Message:
    return Message(id=msg_id, to_node=to_node, from_node="central", method="REQToFileAppend")


async def test_publishers_for_a_batch_start_together_and_get_their_messages_in_order(
    autojump_clock: trio.abc.Clock,
) -> None:
    store = Store()
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
    router = Router(outbox, publishers)
    outbound = Supervisor(
        "outbound",
        [publishers.child_spec(), ChildSpec("router", router.run)],
        strategy=Strategy.ONE_FOR_ALL,
    )
    nodes = [f"node{i:03d}" for i in range(200)]
    async with running(outbound):
        start = trio.current_time()
        await outbox.submit([message(n, f"{n}-1") for n in nodes] + [message("node000", "x-2")])
        with trio.fail_after(60):
            while sum(map(len, fakes.received.values())) < len(nodes) + 1:
                await trio.sleep(0.1)
        # 200 Publishers that take 1 s each to start: 64 at a time, not one after another
        assert trio.current_time() - start < 5
        assert sorted(fakes.starts) == nodes
        assert fakes.received["node000"] == ["node000-1", "x-2"]
        assert all(fakes.received[n] == [f"{n}-1"] for n in nodes[1:])
        # a later message to a running Publisher goes straight to it
        await outbox.submit([message("node007", "later")])
        await trio.sleep(0.1)
        assert fakes.received["node007"] == ["node007-1", "later"]
        assert len(fakes.starts) == len(nodes)
        assert publishers.whereis(publisher_id("node007", "REQToFileAppend")) is not None


async def test_an_undecodable_outbox_row_is_failed_with_the_reason_and_the_rest_route(
    tmp_path: Path,
) -> None:
    reports: list[tuple[str, str]] = []
    async with running_store(RealStore(tmp_path / "steward.db")) as store:
        outbox = Outbox(
            store,
            "central",
            table=builtin_table(),
            defaults=MessageDefaults(),
            compress_threshold=None,
        )
        good = outbox.entries_for([outbox.prepare(message("ship1", "good-1"))])
        damaged = attrs.evolve(good[0], msg_id="damaged-1", payload=b"\xff\x00 not cbor")
        await store.enqueue([damaged, *good])
        fakes = FakePublishers()
        publishers = DynamicSupervisor(
            "publishers", ChildSpec("publisher", fakes.run, restart=Restart.TRANSIENT)
        )
        router = Router(
            outbox, publishers, report=lambda level, text: reports.append((level, text))
        )
        outbound = Supervisor(
            "outbound",
            [publishers.child_spec(), ChildSpec("router", router.run)],
            strategy=Strategy.ONE_FOR_ALL,
        )
        async with running(outbound):
            with trio.fail_after(10):
                while not fakes.received.get("ship1"):
                    await trio.sleep(0.01)
        assert fakes.received["ship1"] == ["good-1"]
        failed = await store.list_outbox(states=["failed"])
        assert [row.msg_id for row in failed] == ["damaged-1"]
        assert "cannot be decoded" in (failed[0].reason or "")
        assert [row.msg_id for row in await store.pending()] == ["good-1"]
        assert len(reports) == 1
        assert reports[0][0] == "error"
        assert "damaged-1" in reports[0][1]
        assert "ship1.REQToFileAppend" in reports[0][1]
