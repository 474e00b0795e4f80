"""The store's batch operations: one operation for a whole batch of messages."""

from __future__ import annotations

from pathlib import Path

from steward_otp.store import OutboxState, Store, store_path
from tests.unit.test_store import entry, running


def make(tmp_path: Path) -> Store:
    return Store(store_path(tmp_path / "db"))


async def test_in_flight_and_attempts_return_only_active_ids_in_order(tmp_path: Path) -> None:
    async with running(make(tmp_path)) as store:
        await store.enqueue([entry(f"m{i}") for i in range(4)])
        assert await store.cancel("m2")
        assert await store.mark_in_flight_many(["m3", "m2", "m0", "gone"]) == ["m3", "m0"]
        assert await store.record_attempts(["m0", "m2", "m3"]) == ["m0", "m3"]
        rows = {r.msg_id: r for r in await store.list_outbox()}
    assert rows["m0"].state is OutboxState.IN_FLIGHT and rows["m0"].attempts == 1
    assert rows["m1"].state is OutboxState.QUEUED and rows["m1"].attempts == 0
    assert rows["m2"].state is OutboxState.CANCELLED


async def test_delivered_batch_leaves_the_outbox_and_is_audited(tmp_path: Path) -> None:
    async with running(make(tmp_path)) as store:
        await store.enqueue([entry(f"m{i}") for i in range(600)])  # more than one chunk
        ids = [f"m{i}" for i in range(600)]
        assert await store.mark_delivered_many([*ids, "m1", "gone"]) == ids
        assert await store.list_outbox() == []
        audit = await store.audit_log(msg_id="m599")
        # Delivered ids are remembered: enqueueing one again is ignored.
        assert await store.enqueue([entry("m5"), entry("new")]) == ["new"]
    assert [a.outcome for a in audit] == ["delivered"]


async def test_accept_batch_reports_new_ids_once_even_when_repeated(tmp_path: Path) -> None:
    async with running(make(tmp_path)) as store:
        assert await store.accept_inbound("old", "central", "REQToFileAppend", b"o")
        records = [
            ("a", "central", "REQToFileAppend", b"1"),
            ("old", "central", "REQToFileAppend", b"2"),
            ("a", "central", "REQToFileAppend", b"3"),
            ("b", "central", "REQToFileAppend", b"4"),
        ]
        assert await store.accept_inbound_many(records) == ["a", "b"]
        assert await store.accept_inbound_many(records) == []
        unfinished = await store.unfinished_inbound()
    assert {(r.msg_id, r.payload) for r in unfinished} == {("a", b"1"), ("b", b"4"), ("old", b"o")}


async def test_finish_marks_done_and_enqueues_replies_together(tmp_path: Path) -> None:
    async with running(make(tmp_path)) as store:
        await store.accept_inbound_many(
            [("a", "central", "REQPing", b"1"), ("b", "central", "REQPing", b"2")]
        )
        new = await store.finish_inbound(
            [("a", "ok", None), ("b", "error", "boom"), ("a", "ok", None)],
            [entry("reply-a", "central"), entry("reply-b", "central")],
        )
        assert new == ["reply-a", "reply-b"]
        assert await store.unfinished_inbound() == []
        audit_b = await store.audit_log(msg_id="b")
        assert [r.msg_id for r in await store.pending()] == ["reply-a", "reply-b"]
    assert [(a.outcome, a.reason) for a in audit_b] == [("error", "boom")]
