"""The store: durable outbox, inbound dedupe and audit log, group-committed by one actor."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from steward_otp.store import (
    DB_FILE_NAME,
    AuditOutcome,
    Direction,
    OutboxEntry,
    OutboxState,
    Store,
    StoreError,
    store_path,
)
from steward_otp.store import actor as store_module
from steward_otp.store.audit import AUDIT_PAYLOAD_LIMIT
from steward_otp.store.batches import Operation, OperationFailed, apply_batch
from steward_otp.store.outbox_operations import Enqueue
from steward_otp.store.outbox_queries import ListOutbox
from steward_otp.store.schema import SCHEMA_VERSION, open_database

DAY = 86400.0

MakeStore = Callable[..., Store]


class FakeClock:
    """Wall time that only moves when the test says so."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def entry(
    msg_id: str, to_node: str = "ship1", *, created_at: float = 1_000_000.0, **kw: Any
) -> OutboxEntry:
    return OutboxEntry(
        msg_id=msg_id,
        to_node=to_node,
        method=kw.pop("method", "REQCliCommand"),
        payload=kw.pop("payload", f"payload of {msg_id}".encode()),
        created_at=created_at,
        **kw,
    )


@asynccontextmanager
async def running(store: Store) -> AsyncIterator[Store]:
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        yield store
        nursery.cancel_scope.cancel()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return store_path(tmp_path / "var" / "lib")


@pytest.fixture
def make_store(db_path: Path, clock: FakeClock) -> MakeStore:
    def make(**options: Any) -> Store:
        options.setdefault("clock", clock)
        return Store(db_path, **options)

    return make


# ---------------------------------------------------------------------------------------------
# Outbox
# ---------------------------------------------------------------------------------------------


async def test_store_lives_in_steward_db_inside_the_db_folder(
    db_path: Path, make_store: MakeStore
) -> None:
    assert db_path.name == DB_FILE_NAME == "steward.db"
    async with running(make_store()):
        pass
    assert db_path.exists()  # the folder was created too


async def test_enqueued_messages_are_listed_queued_in_acceptance_order(
    make_store: MakeStore, clock: FakeClock
) -> None:
    async with running(make_store()) as store:
        assert await store.enqueue([entry("m1"), entry("m2", "ship2")]) == ["m1", "m2"]
        assert await store.enqueue([entry("m3", not_before=clock.now + 5)]) == ["m3"]
        rows = await store.list_outbox()
    assert [row.msg_id for row in rows] == ["m1", "m2", "m3"]
    assert all(row.state is OutboxState.QUEUED and row.attempts == 0 for row in rows)
    assert rows[1].to_node == "ship2"
    assert rows[0].payload == b"payload of m1"
    assert rows[2].not_before == clock.now + 5
    assert rows[0].seq < rows[1].seq < rows[2].seq
    assert rows[0].age(clock.now + 30) == 30


async def test_enqueue_is_idempotent_on_msg_id(make_store: MakeStore) -> None:
    async with running(make_store()) as store:
        assert await store.enqueue([entry("m1"), entry("m1"), entry("m2")]) == ["m1", "m2"]
        assert await store.enqueue([entry("m2", "other"), entry("m3")]) == ["m3"]
        assert await store.mark_delivered("m1")
        # Delivered and gone from the outbox, but still remembered through the audit log.
        assert await store.enqueue([entry("m1")]) == []
        rows = await store.list_outbox()
    assert [(row.msg_id, row.to_node) for row in rows] == [("m2", "ship1"), ("m3", "ship1")]


async def test_group_commit_batches_concurrent_writers(make_store: MakeStore) -> None:
    async with running(make_store()) as store:
        before = store.stats().commits
        async with trio.open_nursery() as nursery:
            for i in range(200):
                nursery.start_soon(store.enqueue, [entry(f"m{i}")])
        commits = store.stats().commits - before
        assert len(await store.list_outbox(limit=None)) == 200
    assert commits < 20, f"200 concurrent enqueues took {commits} commits"
    assert store.stats().largest_batch > 10


async def test_batch_max_bounds_one_transaction(make_store: MakeStore) -> None:
    async with running(make_store(batch_max=7)) as store, trio.open_nursery() as nursery:
        for i in range(50):
            nursery.start_soon(store.enqueue, [entry(f"m{i}")])
    assert store.stats().largest_batch == 7
    assert store.stats().commits >= 50 / 7


async def test_delivery_goes_in_flight_then_leaves_the_outbox_into_the_audit_log(
    make_store: MakeStore, clock: FakeClock
) -> None:
    async with running(make_store()) as store:
        await store.enqueue([entry("m1", created_at=clock.now - 10)])
        assert await store.mark_in_flight("m1")
        assert await store.mark_in_flight("m1")  # a restarted publisher may ask again
        assert await store.record_attempt("m1")
        (row,) = await store.list_outbox()
        assert (row.state, row.attempts) == (OutboxState.IN_FLIGHT, 1)
        clock.now += 3
        assert await store.mark_delivered("m1")
        assert not await store.mark_delivered("m1")
        assert await store.list_outbox() == []
        (record,) = await store.audit_log(msg_id="m1")
    assert record.direction is Direction.OUTBOUND
    assert record.outcome == AuditOutcome.DELIVERED
    assert (record.peer_node, record.method) == ("ship1", "REQCliCommand")
    assert record.payload == b"payload of m1"  # enough to recreate it
    assert (record.attempts, record.created_at, record.recorded_at) == (
        1,
        clock.now - 13,
        clock.now,
    )


async def test_record_attempt_counts_and_reschedules(
    make_store: MakeStore, clock: FakeClock
) -> None:
    async with running(make_store()) as store:
        await store.enqueue([entry("m1")])
        assert await store.record_attempt("m1", not_before=clock.now + 30)
        assert await store.record_attempt("m1")
        (row,) = await store.list_outbox()
        assert not await store.record_attempt("unknown")
    assert (row.attempts, row.not_before) == (2, clock.now + 30)


async def test_failed_message_is_held_for_an_operator_and_audited(make_store: MakeStore) -> None:
    async with running(make_store()) as store:
        await store.enqueue([entry("m1")])
        await store.mark_in_flight("m1")
        assert await store.mark_failed("m1", "max retries reached")
        assert not await store.mark_failed("m1", "again")
        assert not await store.mark_in_flight("m1")
        assert not await store.record_attempt("m1")
        (row,) = await store.list_outbox(states=[OutboxState.FAILED])
        (record,) = await store.audit_log()
        assert await store.pending() == []
    assert row.reason == "max retries reached"
    assert (record.outcome, record.reason) == ("failed", "max retries reached")


async def test_cancel_stops_an_active_message_and_tells_its_publisher(
    make_store: MakeStore,
) -> None:
    async with running(make_store()) as store:
        await store.enqueue([entry("queued"), entry("busy")])
        await store.mark_in_flight("busy")
        assert await store.cancel("queued")
        assert await store.cancel("busy", reason="operator changed their mind")
        assert not await store.cancel("busy")
        assert not await store.cancel("unknown")
        # The publisher holding "busy" learns at its next call.
        assert not await store.record_attempt("busy")
        assert not await store.mark_in_flight("queued")
        assert not await store.mark_failed("busy", "timeout")
        rows = await store.list_outbox()
        audit = await store.audit_log()
    assert [(r.msg_id, r.state, r.reason) for r in rows] == [
        ("queued", OutboxState.CANCELLED, "cancelled by operator"),
        ("busy", OutboxState.CANCELLED, "operator changed their mind"),
    ]
    assert [(a.msg_id, a.outcome) for a in audit] == [
        ("queued", "cancelled"),
        ("busy", "cancelled"),
    ]


async def test_cancel_and_purge_of_active_messages_advance_the_withdrawals_generation(
    make_store: MakeStore,
) -> None:
    """What the publishers read before a first send: every cancel or purge that took an
    active message out has advanced the generation by the time it returns; one that took
    none out has not."""
    async with running(make_store()) as store:
        await store.enqueue([entry(i) for i in ("m1", "m2", "m3", "m4", "m5", "m6")])
        await store.mark_failed("m5", "max retries reached")
        await store.mark_delivered("m6")
        assert store.withdrawals.generation == 0
        assert await store.cancel("m1")
        assert store.withdrawals.generation == 1
        assert not await store.cancel("m6")  # delivered: nothing withdrawn
        assert not await store.cancel("m1")  # cancelled already
        assert await store.purge(states=["failed", "cancelled"]) == 2  # none of them active
        assert store.withdrawals.generation == 1
        await store.mark_in_flight("m3")
        assert await store.purge() == 2  # default states: m2 and m4 queued, m3 stays
        assert store.withdrawals.generation == 2
        assert await store.purge(states=["in_flight"]) == 1
        assert store.withdrawals.generation == 3
        assert await store.purge() == 0
        assert store.withdrawals.generation == 3


async def test_an_ack_after_cancel_is_still_audited_as_delivered(make_store: MakeStore) -> None:
    async with running(make_store()) as store:
        await store.enqueue([entry("m1")])
        await store.mark_in_flight("m1")
        await store.cancel("m1")
        assert await store.mark_delivered("m1")
        assert await store.list_outbox() == []
        audit = await store.audit_log()
    assert [a.outcome for a in audit] == ["cancelled", "delivered"]


async def test_retry_requeues_failed_and_cancelled_in_their_original_order(
    make_store: MakeStore, clock: FakeClock
) -> None:
    async with running(make_store()) as store:
        await store.enqueue([entry("m1"), entry("m2"), entry("m3")])
        await store.record_attempt("m1")
        await store.mark_failed("m1", "max retries reached")
        await store.cancel("m2")
        assert not await store.retry("m3")  # queued: nothing to retry
        assert not await store.retry("unknown")
        clock.now += 100
        assert await store.retry("m2", not_before=clock.now + 5)
        assert await store.retry("m1")
        assert not await store.retry("m1")
        pending = await store.pending()
    assert [r.msg_id for r in pending] == ["m1", "m2", "m3"]
    m1, m2, _ = pending
    assert (m1.state, m1.attempts, m1.reason, m1.not_before) == (
        OutboxState.QUEUED,
        0,
        None,
        clock.now,
    )
    assert m2.not_before == clock.now + 5


async def test_purge_by_destination_and_age_audits_what_it_removes(
    make_store: MakeStore, clock: FakeClock
) -> None:
    now = clock.now
    async with running(make_store()) as store:
        await store.enqueue(
            [
                entry("old-ship1", "ship1", created_at=now - 2 * DAY),
                entry("new-ship1", "ship1", created_at=now - 60),
                entry("old-ship2", "ship2", created_at=now - 2 * DAY),
                entry("failed-ship2", "ship2", created_at=now - 60),
                entry("busy-ship2", "ship2", created_at=now - 3 * DAY),
            ]
        )
        await store.mark_failed("failed-ship2", "max retries reached")
        await store.mark_in_flight("busy-ship2")

        assert await store.purge(to_node="ship1", older_than_seconds=DAY) == 1
        assert [r.msg_id for r in await store.list_outbox(to_node="ship1")] == ["new-ship1"]
        # Without states, in-flight messages are left to their publisher.
        assert await store.purge(to_node="ship2") == 2
        assert [r.msg_id for r in await store.list_outbox(to_node="ship2")] == ["busy-ship2"]
        assert await store.purge(states=["in_flight"], older_than_seconds=DAY) == 1
        assert not await store.mark_delivered("busy-ship2")
        assert await store.purge(to_node="nobody") == 0
        await store.enqueue([entry("a-day-old", "ship3", created_at=now - DAY)])
        assert await store.purge(to_node="ship3", older_than_seconds=DAY + 1) == 0
        assert await store.purge(to_node="ship3", older_than_seconds=DAY) == 1  # "at least"
        purged = await store.audit_log()
    assert [(a.msg_id, a.outcome) for a in purged if a.outcome == "purged"] == [
        ("old-ship1", "purged"),
        ("old-ship2", "purged"),
        ("failed-ship2", "purged"),
        ("busy-ship2", "purged"),
        ("a-day-old", "purged"),
    ]
    assert {a.msg_id: a.reason for a in purged if a.outcome == "purged"}["failed-ship2"] == (
        "max retries reached"
    )


async def test_counts_per_state_and_queue_depth_per_destination(make_store: MakeStore) -> None:
    async with running(make_store()) as store:
        await store.enqueue([entry(f"a{i}", "ship1") for i in range(3)])
        await store.enqueue([entry(f"b{i}", "ship2") for i in range(2)])
        await store.enqueue([entry("c0", "ship3")])
        await store.mark_in_flight("a0")
        await store.mark_failed("a1", "timeout")
        await store.cancel("c0")
        await store.mark_delivered("b0")
        counts = await store.counts()
        ship1 = await store.counts(to_node="ship1")
        depths = await store.queue_depths()
    assert counts == {
        OutboxState.QUEUED: 2,
        OutboxState.IN_FLIGHT: 1,
        OutboxState.FAILED: 1,
        OutboxState.CANCELLED: 1,
    }
    assert ship1 == {
        OutboxState.QUEUED: 1,
        OutboxState.IN_FLIGHT: 1,
        OutboxState.FAILED: 1,
        OutboxState.CANCELLED: 0,
    }
    assert depths == {"ship1": 2, "ship2": 1}


async def test_list_outbox_filters_and_pages_by_seq(make_store: MakeStore) -> None:
    async with running(make_store()) as store:
        await store.enqueue([entry(f"m{i}", f"ship{i % 2}") for i in range(7)])
        await store.cancel("m2")
        first = await store.list_outbox(limit=3)
        rest = await store.list_outbox(after_seq=first[-1].seq)
        ship0_active = await store.list_outbox(to_node="ship0", states=["queued", "in_flight"])
        assert await store.list_outbox(states=[]) == []
    assert [r.msg_id for r in first + rest] == [f"m{i}" for i in range(7)]
    assert [r.msg_id for r in ship0_active] == ["m0", "m4", "m6"]


# ---------------------------------------------------------------------------------------------
# Recovery
# ---------------------------------------------------------------------------------------------


async def test_restart_requeues_in_flight_and_lists_pending_oldest_accepted_first(
    make_store: MakeStore, clock: FakeClock
) -> None:
    # Wall clocks jump (NTP, a dead RTC on an edge box): order is by acceptance, not by time.
    async with running(make_store()) as store:
        await store.enqueue([entry("first", created_at=clock.now)])
        await store.enqueue([entry("second", created_at=clock.now - 3600)])
        await store.enqueue([entry("third", created_at=clock.now + 3600)])
        await store.enqueue([entry("done")])
        await store.mark_in_flight("second")
        await store.record_attempt("second")
        await store.mark_delivered("done")

    reopened = make_store()
    async with running(reopened):
        pending = await reopened.pending()
        assert await reopened.counts() == {
            OutboxState.QUEUED: 3,
            OutboxState.IN_FLIGHT: 0,
            OutboxState.FAILED: 0,
            OutboxState.CANCELLED: 0,
        }
    assert [r.msg_id for r in pending] == ["first", "second", "third"]
    assert all(r.state is OutboxState.QUEUED for r in pending)
    assert pending[1].attempts == 1  # attempts survive the restart
    assert reopened.stats().recovered_in_flight == 1


async def test_pending_pages_through_a_long_queue(make_store: MakeStore) -> None:
    async with running(make_store()) as store:
        await store.enqueue([entry(f"m{i:03}") for i in range(250)])
        seen: list[str] = []
        after = 0
        while page := await store.pending(limit=100, after_seq=after):
            seen += [r.msg_id for r in page]
            after = page[-1].seq
    assert seen == [f"m{i:03}" for i in range(250)]


async def test_pending_ids_and_rows_are_the_active_messages_oldest_accepted_first(
    make_store: MakeStore,
) -> None:
    async with running(make_store()) as store:
        await store.enqueue([entry(f"m{i}") for i in range(6)])
        await store.mark_in_flight("m3")  # in flight: still pending, in acceptance order
        await store.mark_delivered("m1")
        await store.mark_failed("m2", "gave up")
        await store.cancel("m4")
        ids = await store.pending_ids()
        assert ids == [r.msg_id for r in await store.pending()] == ["m0", "m3", "m5"]
        # Rows of the ids asked for that are still to deliver, in acceptance order,
        # whatever order they were asked in (more ids than one SQL statement takes).
        asked = ["m5", "m1", "m2", "m4", "unknown", "m3", "m0", *(f"x{i}" for i in range(2000))]
        rows = await store.pending_rows(asked)
        assert [(r.msg_id, r.state) for r in rows] == [
            ("m0", OutboxState.QUEUED),
            ("m3", OutboxState.IN_FLIGHT),
            ("m5", OutboxState.QUEUED),
        ]
        assert rows[0].payload == entry("m0").payload
        assert await store.pending_rows([]) == []


async def test_the_same_store_object_runs_again_after_stopping(make_store: MakeStore) -> None:
    store = make_store()
    async with running(store):
        await store.enqueue([entry("m1")])
    assert not store.running
    async with running(store):
        assert [r.msg_id for r in await store.pending()] == ["m1"]


# ---------------------------------------------------------------------------------------------
# Inbound dedupe
# ---------------------------------------------------------------------------------------------


async def test_accept_inbound_returns_false_for_a_message_already_seen(
    make_store: MakeStore,
) -> None:
    async with running(make_store()) as store:
        assert await store.accept_inbound("ship1:1", "ship1", "REQCliCommand", b"cmd")
        assert not await store.accept_inbound("ship1:1", "ship1", "REQCliCommand", b"cmd")
        assert await store.mark_inbound_done("ship1:1", "ok")
        assert not await store.mark_inbound_done("ship1:1", "ok")
        assert not await store.accept_inbound("ship1:1", "ship1", "REQCliCommand", b"cmd")
        (record,) = await store.audit_log(msg_id="ship1:1")
    assert record.direction is Direction.INBOUND
    assert (record.peer_node, record.method, record.outcome) == ("ship1", "REQCliCommand", "ok")
    assert record.payload == b"cmd"
    assert record.attempts is None


async def test_concurrent_accepts_of_one_id_let_exactly_one_through(make_store: MakeStore) -> None:
    results: list[bool] = []

    async with running(make_store()) as store:

        async def accept() -> None:
            results.append(await store.accept_inbound("dup", "ship1", "REQPing", b""))

        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(accept)
    assert sorted(results) == [False] * 19 + [True]


async def test_dedupe_forgets_ids_after_the_retention_window(
    make_store: MakeStore, clock: FakeClock
) -> None:
    async with running(make_store(dedupe_window=7 * DAY)) as store:
        assert await store.accept_inbound("old", "ship1", "REQPing", b"")
        await store.mark_inbound_done("old", "ok")
        clock.now += 6 * DAY
        assert await store.accept_inbound("young", "ship1", "REQPing", b"")
        assert await store.prune_dedupe() == 0
        clock.now += 1.5 * DAY
        assert await store.prune_dedupe() == 1
        assert not await store.accept_inbound("young", "ship1", "REQPing", b"")
        assert await store.accept_inbound("old", "ship1", "REQPing", b"")
        assert await store.prune_dedupe(now=clock.now + 30 * DAY) == 2


async def test_unfinished_inbound_messages_survive_a_restart(make_store: MakeStore) -> None:
    async with running(make_store()) as store:
        await store.accept_inbound("a", "ship1", "REQCliCommand", b"A")
        await store.accept_inbound("b", "ship2", "REQToFile", b"B")
        await store.mark_inbound_done("a", "error", reason="exit status 1")
    reopened = make_store()
    async with running(reopened):
        unfinished = await reopened.unfinished_inbound()
        assert not await reopened.accept_inbound("b", "ship2", "REQToFile", b"B")
        (record,) = await reopened.audit_log(msg_id="a")
    assert [(u.msg_id, u.from_node, u.method, u.payload) for u in unfinished] == [
        ("b", "ship2", "REQToFile", b"B")
    ]
    assert (record.outcome, record.reason) == ("error", "exit status 1")


# ---------------------------------------------------------------------------------------------
# Audit retention and maintenance
# ---------------------------------------------------------------------------------------------


async def test_audit_records_older_than_the_retention_are_pruned(
    make_store: MakeStore, clock: FakeClock
) -> None:
    async with running(make_store(audit_retention=30 * DAY)) as store:
        await store.enqueue([entry("m1"), entry("m2")])
        await store.mark_delivered("m1")
        clock.now += 20 * DAY
        await store.mark_delivered("m2")
        clock.now += 15 * DAY
        assert await store.prune_audit() == 1
        assert [a.msg_id for a in await store.audit_log()] == ["m2"]
        # Once forgotten by the audit log, an id may be enqueued again.
        assert await store.enqueue([entry("m1")]) == ["m1"]


async def test_unbounded_audit_retention_keeps_everything(
    make_store: MakeStore, clock: FakeClock
) -> None:
    async with running(make_store(audit_retention=None)) as store:
        await store.enqueue([entry("m1")])
        await store.mark_delivered("m1")
        assert await store.prune_audit(now=clock.now + 3650 * DAY) == 0
        assert len(await store.audit_log()) == 1


async def test_the_actor_prunes_periodically(make_store: MakeStore, clock: FakeClock) -> None:
    store = make_store(dedupe_window=DAY, audit_retention=DAY, maintenance_interval=0.01)
    async with running(store):
        await store.accept_inbound("in1", "ship1", "REQPing", b"")
        await store.enqueue([entry("out1")])
        await store.mark_delivered("out1")
        clock.now += 2 * DAY
        with trio.fail_after(10):
            while await store.audit_log() or await store.unfinished_inbound():
                await trio.sleep(0.01)
        assert await store.accept_inbound("in1", "ship1", "REQPing", b"")


async def test_retention_prunes_also_run_at_open(make_store: MakeStore, clock: FakeClock) -> None:
    async with running(make_store(dedupe_window=DAY)) as store:
        await store.accept_inbound("in1", "ship1", "REQPing", b"")
    clock.now += 2 * DAY
    async with running(make_store(dedupe_window=DAY)) as store:
        assert await store.unfinished_inbound() == []


# ---------------------------------------------------------------------------------------------
# Errors, ownership, cancellation
# ---------------------------------------------------------------------------------------------


async def test_calls_on_a_store_that_is_not_running_raise_store_error(
    make_store: MakeStore,
) -> None:
    store = make_store()
    with pytest.raises(StoreError, match="not running"):
        await store.enqueue([entry("m1")])
    async with running(store):
        pass
    with pytest.raises(StoreError, match="not running"):
        await store.pending()


async def test_a_second_owner_of_the_file_is_refused(make_store: MakeStore) -> None:
    async with running(make_store()) as store:
        with pytest.raises(StoreError, match="in use by another process"):
            await make_store(lock_timeout=0.05).run()
        with pytest.raises(StoreError, match="already running"):
            await store.run()
        assert await store.enqueue([entry("m1")]) == ["m1"]


async def test_a_newer_schema_is_refused_with_an_explanation(
    db_path: Path, make_store: MakeStore
) -> None:
    db_path.parent.mkdir(parents=True)
    with sqlite3.connect(db_path) as db:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="schema version"):
        await make_store().run()


async def test_a_file_that_is_not_a_store_is_refused(db_path: Path, make_store: MakeStore) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match=r"is not a SQLite database.*store repair"):
        await make_store().run()


async def test_bad_input_is_refused_before_anything_is_submitted(make_store: MakeStore) -> None:
    with pytest.raises(ValueError, match="msg_id"):
        entry("")
    with pytest.raises(ValueError, match="created_at"):
        entry("m1", created_at=float("nan"))
    with pytest.raises(TypeError):
        OutboxEntry("m1", "ship1", "REQPing", "not bytes", 0.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Store("x.db", synchronous="OFF")  # type: ignore[arg-type]
    async with running(make_store()) as store:
        with pytest.raises(TypeError, match="OutboxEntry"):
            await store.enqueue(["m1"])  # type: ignore[list-item]
        with pytest.raises(ValueError, match="older_than_seconds"):
            await store.purge(older_than_seconds=-1)
        with pytest.raises(ValueError, match="at least one state"):
            await store.purge(states=[])
        with pytest.raises(ValueError):
            await store.purge(states=["delivered"])
        with pytest.raises(ValueError, match="limit"):
            await store.list_outbox(limit=0)
        assert store.stats().operations == 0


async def test_a_failing_write_fails_its_callers_and_crashes_the_actor_loudly(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store()
    crashed: list[BaseException] = []

    async def supervised(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await store.run(task_status=task_status)
        except StoreError as exc:
            crashed.append(exc)

    async with trio.open_nursery() as nursery:
        await nursery.start(supervised)
        await store.enqueue([entry("kept")])

        def broken_disk(
            db: sqlite3.Connection, operations: Sequence[Operation[object]], now: float
        ) -> list[object]:
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(store_module, "apply_batch", broken_disk)
        with pytest.raises(StoreError, match="disk I/O error"):
            await store.enqueue([entry("lost")])
    assert len(crashed) == 1 and "disk I/O error" in str(crashed[0])
    assert isinstance(crashed[0].__cause__, sqlite3.OperationalError)
    assert not store.running

    monkeypatch.undo()
    async with running(store):  # what the supervisor does: run again on the same file
        assert [r.msg_id for r in await store.pending()] == ["kept"]


class Gate:
    """Holds the store's worker thread at the start of each batch until opened."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._open = threading.Event()
        real = apply_batch

        def gated(
            db: sqlite3.Connection, operations: Sequence[Operation[object]], now: float
        ) -> list[object]:
            if not self._open.wait(timeout=10):
                raise RuntimeError("the test never opened the gate")
            return real(db, operations, now)

        monkeypatch.setattr(store_module, "apply_batch", gated)

    def open(self) -> None:
        self._open.set()


async def test_callers_waiting_when_the_store_stops_get_store_error(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store(mailbox_size=1, batch_max=1)
    outcomes: list[str] = []

    async def caller(i: int) -> None:
        try:
            await store.enqueue([entry(f"m{i}")])
            outcomes.append("ok")
        except StoreError:
            outcomes.append("store error")

    async with trio.open_nursery() as outer, trio.open_nursery() as nursery:
        await nursery.start(store.run)
        gate = Gate(monkeypatch)
        for i in range(10):
            outer.start_soon(caller, i)
        # Everyone blocked: one request in the held batch, one in the mailbox, eight callers
        # waiting for room in it.
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
        gate.open()  # the batch already in the thread still commits
    assert sorted(outcomes) == ["ok"] + ["store error"] * 9
    monkeypatch.undo()
    async with running(store):
        assert len(await store.list_outbox()) == 1


async def test_a_query_reads_ahead_of_the_writes_waiting_in_the_mailbox(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``status`` and ``queue ls`` do not wait behind a burst of writes: a query runs as soon
    as the batch being committed is done, and sees what has committed."""
    store = make_store(batch_max=1)
    seen: list[dict[OutboxState, int]] = []

    async def ask() -> None:
        seen.append(await store.counts())

    async with running(store):
        async with trio.open_nursery() as nursery:
            gate = Gate(monkeypatch)
            for i in range(5):
                nursery.start_soon(store.enqueue, [entry(f"m{i}")])
            await trio.testing.wait_all_tasks_blocked()  # m0 committing, m1..m4 in the mailbox
            nursery.start_soon(ask)
            await trio.testing.wait_all_tasks_blocked()
            gate.open()
        assert seen == [{**dict.fromkeys(OutboxState, 0), OutboxState.QUEUED: 1}]
        assert (await store.counts())[OutboxState.QUEUED] == 5


async def test_a_caller_cancelled_before_submitting_writes_nothing(make_store: MakeStore) -> None:
    async with running(make_store()) as store:
        with trio.CancelScope() as scope:
            scope.cancel()
            await store.enqueue([entry("m1")])
        assert await store.list_outbox() == []


async def test_a_caller_cancelled_after_submitting_may_still_commit(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running(make_store()) as store:
        gate = Gate(monkeypatch)
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(store.enqueue, [entry("m1")])
                # Everyone blocked: the request is in the actor's batch, held in the thread.
                await trio.testing.wait_all_tasks_blocked()
                scope.cancel()
        assert scope.cancelled_caught
        gate.open()
        assert [r.msg_id for r in await store.list_outbox()] == ["m1"]


# ---------------------------------------------------------------------------------------------
# The sans-IO core
# ---------------------------------------------------------------------------------------------


class _BadOperation:
    """Violates a NOT NULL constraint after writing a row: must be rolled back alone."""

    def apply(self, db: sqlite3.Connection, now: float) -> None:
        db.execute(
            "INSERT INTO inbox (msg_id, from_node, method, received_at) VALUES ('x', 'n', 'm', 0)"
        )
        db.execute(
            "INSERT INTO inbox (msg_id, from_node, method, received_at) VALUES (NULL, 1, 1, 1)"
        )


class _BrokenDatabase:
    def apply(self, db: sqlite3.Connection, now: float) -> None:
        raise sqlite3.OperationalError("disk I/O error")


def test_a_bad_operation_is_rolled_back_alone_and_the_rest_of_the_batch_commits(
    db_path: Path,
) -> None:
    db = open_database(db_path, synchronous="NORMAL")
    try:
        results = apply_batch(
            db, [Enqueue([entry("m1")]), _BadOperation(), Enqueue([entry("m2")])], 0.0
        )
        assert results[0] == ["m1"] and results[2] == ["m2"]
        assert isinstance(results[1], OperationFailed)
        assert isinstance(results[1].error, sqlite3.IntegrityError)
        assert db.execute("SELECT count(*) FROM inbox").fetchone() == (0,)
        rows = apply_batch(db, [ListOutbox()], 0.0)[0]
        assert [r.msg_id for r in rows] == ["m1", "m2"]  # type: ignore[attr-defined]
    finally:
        db.close()


def test_a_database_error_rolls_back_the_whole_batch(db_path: Path) -> None:
    db = open_database(db_path, synchronous="NORMAL")
    try:
        with pytest.raises(sqlite3.OperationalError):
            apply_batch(db, [Enqueue([entry("m1")]), _BrokenDatabase()], 0.0)
        assert not db.in_transaction
        assert apply_batch(db, [ListOutbox()], 0.0) == [[]]
    finally:
        db.close()


def test_the_store_file_uses_wal_and_the_chosen_synchronous_level(db_path: Path) -> None:
    for level, number in (("FULL", 2), ("NORMAL", 1)):
        db = open_database(db_path, synchronous=level)  # type: ignore[arg-type]
        try:
            assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            assert db.execute("PRAGMA synchronous").fetchone() == (number,)
            assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        finally:
            db.close()


# ---------------------------------------------------------------------------------------------
# Crash safety
# ---------------------------------------------------------------------------------------------

_WRITER = """
import sys, time, trio
from steward_otp.store import OutboxEntry, Store

async def writer(store, w):
    i = 0
    while True:
        msg_id = f"w{w}-{i}"
        entry = OutboxEntry(msg_id, f"ship{w}", "REQCliCommand", b"x" * 200, time.time())
        await store.enqueue([entry])
        print("queued", msg_id, flush=True)
        if i % 3 == 0:
            await store.mark_in_flight(msg_id)
            await store.mark_delivered(msg_id)
            print("delivered", msg_id, flush=True)
        i += 1

async def main(path):
    store = Store(path)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        print("ready", flush=True)
        for w in range(8):
            nursery.start_soon(writer, store, w)

trio.run(main, sys.argv[1])
"""


def _run_writer_and_kill(db_path: Path, acks_before_kill: int) -> tuple[set[str], set[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(db_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    watchdog = threading.Timer(60, proc.kill)  # a hung writer fails the test, not the run
    watchdog.start()
    queued: set[str] = set()
    delivered: set[str] = set()

    def record(line: str) -> None:
        if not line.endswith("\n"):
            return  # cut short by the kill: not an acknowledgement
        kind, _, msg_id = line.strip().partition(" ")
        if kind == "queued":
            queued.add(msg_id)
        elif kind == "delivered":
            delivered.add(msg_id)

    try:
        assert proc.stdout is not None
        while len(queued) < acks_before_kill:
            line = proc.stdout.readline()
            if not line:
                pytest.fail(f"writer exited early: {proc.wait()} {proc.communicate()[1]}")
            record(line)
        proc.send_signal(signal.SIGKILL)
        rest, _ = proc.communicate()
        for line in rest.splitlines(keepends=True):
            record(line)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return queued, delivered


@pytest.mark.parametrize("acks_before_kill", [1, 300, 1500])
def test_kill_9_loses_no_acknowledged_message(db_path: Path, acks_before_kill: int) -> None:
    queued, delivered = _run_writer_and_kill(db_path, acks_before_kill)
    assert len(queued) >= acks_before_kill

    db = open_database(db_path)  # the dead writer's lock went with it
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        outbox = {row[0] for row in db.execute("SELECT msg_id FROM outbox")}
        audited = {
            row[0]
            for row in db.execute(
                "SELECT msg_id FROM audit WHERE direction = 'out' AND outcome = 'delivered'"
            )
        }
    finally:
        db.close()
    assert queued - delivered <= outbox
    assert delivered <= audited
    assert not (delivered & outbox)
    assert queued <= outbox | audited


async def test_audit_keeps_small_payloads_and_only_metadata_of_large_ones(
    make_store: MakeStore,
) -> None:
    big = b"x" * (AUDIT_PAYLOAD_LIMIT + 1)
    async with running(make_store()) as store:
        await store.enqueue([entry("small"), entry("big", payload=big)])
        assert await store.mark_delivered("small")
        assert await store.mark_delivered("big")
        records = {r.msg_id: r for r in await store.audit_log()}
    assert records["small"].payload == b"payload of small"
    assert records["big"].payload is None
    assert records["big"].outcome == "delivered"
