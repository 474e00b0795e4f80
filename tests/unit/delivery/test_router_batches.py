"""The Router hands what waits in its mailbox over in one go: the Publishers it needs are
started together (DynamicSupervisor.start_children), each once, messages in order."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import trio

from steward_otp.message import Message, MessageDefaults
from steward_otp.methods import builtin_table
from steward_otp.outbound.outbox import Outbox
from steward_otp.outbound.router import Router, publisher_id
from steward_otp.store import Store as RealStore
from steward_otp.store.records import OutboxRow
from steward_otp.supervisors import ChildSpec, DynamicSupervisor, Restart, Strategy, Supervisor
from tests.unit.delivery.test_publisher_timing import MemoryStore
from tests.unit.supervisors.probes import running
from tests.unit.test_store import running as running_store


class Store(MemoryStore):
    async def pending_ids(self) -> list[str]:
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


def central_outbox(store: Any) -> Outbox:
    """node central's outbox on ``store`` (a real one or a stand-in)."""
    return Outbox(
        store, "central", table=builtin_table(), defaults=MessageDefaults(), compress_threshold=None
    )


def outbound_tree(
    outbox: Outbox, fakes: FakePublishers, **router_options: Any
) -> tuple[Supervisor, DynamicSupervisor]:
    """The Router and stand-in Publishers (``fakes``), supervised one for all; and the
    Publishers' supervisor."""
    publishers = DynamicSupervisor(
        "publishers", ChildSpec("publisher", fakes.run, restart=Restart.TRANSIENT)
    )
    router = Router(outbox, publishers, **router_options)
    tree = Supervisor(
        "outbound",
        [publishers.child_spec(), ChildSpec("router", router.run)],
        strategy=Strategy.ONE_FOR_ALL,
    )
    return tree, publishers


async def test_publishers_for_a_batch_start_together_and_get_their_messages_in_order(
    autojump_clock: trio.abc.Clock,
) -> None:
    outbox = central_outbox(Store())
    fakes = FakePublishers()
    outbound, publishers = outbound_tree(outbox, fakes)
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
        outbox = central_outbox(store)
        good = outbox.entries_for([outbox.prepare(message("ship1", "good-1"))])
        damaged = attrs.evolve(good[0], msg_id="damaged-1", payload=b"\xff\x00 not cbor")
        await store.enqueue([damaged, *good])
        fakes = FakePublishers()
        outbound, _ = outbound_tree(
            outbox, fakes, report=lambda level, text: reports.append((level, text))
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


class RowCountingStore(RealStore):
    """The real store, counting the sweeps' reads: of ids, and of rows by how many ids."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.id_reads = 0
        self.rows_asked: list[int] = []

    async def pending_ids(self) -> list[str]:
        self.id_reads += 1
        return await super().pending_ids()

    async def pending_rows(self, msg_ids: Sequence[str]) -> list[OutboxRow]:
        self.rows_asked.append(len(msg_ids))
        return await super().pending_rows(msg_ids)


async def test_a_sweep_reads_the_payloads_only_of_messages_no_publisher_holds(
    tmp_path: Path,
) -> None:
    counting = RowCountingStore(tmp_path / "steward.db")
    async with running_store(counting) as store:
        outbox = central_outbox(store)
        backlog = [outbox.prepare(message("ship1", f"m{i:03}")) for i in range(300)]
        await store.enqueue(outbox.entries_for(backlog))
        fakes = FakePublishers()
        outbound, _ = outbound_tree(outbox, fakes, sweep_interval=0.02)
        async with running(outbound):
            with trio.fail_after(10):
                while len(fakes.received.get("ship1", [])) < 300:
                    await trio.sleep(0.01)
                sweeps = counting.id_reads
                while counting.id_reads < sweeps + 3:
                    await trio.sleep(0.01)
    # The start sweep read the 300 rows; the later ones found every id held.
    assert counting.rows_asked == [300]
    assert fakes.received["ship1"] == [f"m{i:03}" for i in range(300)]
