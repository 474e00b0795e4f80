"""Storage trouble never goes unnoticed and never takes a node down (issue 17).

* an empty or unreadable ``steward.db`` is refused with a message naming the file and what
  to do -- never silently started empty;
* failed and cancelled messages leave the outbox after ``held_retention``;
* a write refused for a full disk is answered as such, and the store keeps running.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import pytest
import trio

from steward_otp.config import ConfigError, load_config, save_config
from steward_otp.store import (
    OutboxEntry,
    Store,
    StoreDamaged,
    StoreFull,
    StoreUnusable,
    check_store_file,
    store_path,
)
from steward_otp.store import actor as store_module
from steward_otp.store.schema import SQLITE_HEADER, damage_mark, open_database
from tests.unit.handlers.loopback_nodes import LoopbackNet

DAY = 24 * 3600.0
T0 = 1_000_000.0


def entry(msg_id: str, payload: bytes = b"x", created_at: float = T0) -> OutboxEntry:
    return OutboxEntry(
        msg_id=msg_id, to_node="ship1", method="REQPing", payload=payload, created_at=created_at
    )


@asynccontextmanager
async def running(store: Store) -> AsyncIterator[Store]:
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        yield store
        nursery.cancel_scope.cancel()


@attrs.frozen
class _Sql:
    """A raw statement run by the store actor (tests only: to stage a full disk)."""

    sql: str

    def apply(self, db: sqlite3.Connection, now: float) -> list[tuple[object, ...]]:
        return db.execute(self.sql).fetchall()


async def _sql(store: Store, sql: str) -> list[tuple[object, ...]]:
    return await store._call(_Sql(sql))


# --- empty and damaged files


def test_a_new_store_is_built_aside_and_renamed_into_place(tmp_path: Path) -> None:
    path = store_path(tmp_path / "db")
    open_database(path).close()
    assert path.read_bytes()[:16] == SQLITE_HEADER
    assert not path.with_name("steward.db.new").exists()


async def test_a_zero_length_store_is_refused_never_started_empty(tmp_path: Path) -> None:
    path = store_path(tmp_path / "db")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    with pytest.raises(StoreDamaged) as caught:
        await Store(path).run()
    text = str(caught.value)
    assert str(path) in text and "is empty (0 bytes)" in text
    assert "steward-otp store repair" in text
    assert path.stat().st_size == 0  # left as found, for the operator
    with pytest.raises(StoreUnusable, match=f"store repair --home {tmp_path}"):
        check_store_file(path, home=tmp_path)
    assert issubclass(StoreUnusable, ConfigError)  # the daemon exits 2: no restart loop


def _damage_schema_page(path: Path) -> None:
    """Overwrite the schema b-tree of page 1 (after the 100-byte file header)."""
    with path.open("r+b") as file:
        file.seek(100)
        file.write(b"\xff" * 400)


async def test_a_store_sqlite_reports_damaged_is_marked_and_refused_until_repaired(
    tmp_path: Path,
) -> None:
    path = store_path(tmp_path / "db")
    async with running(Store(path)) as store:
        await store.enqueue([entry("m1")])
    _damage_schema_page(path)
    with pytest.raises(StoreDamaged, match="is damaged"):
        await Store(path).run()
    assert damage_mark(path).exists()
    with pytest.raises(StoreDamaged, match="was found damaged"):
        await Store(path).run()


def test_check_store_file_leaves_a_store_in_use_to_the_store_process(tmp_path: Path) -> None:
    path = store_path(tmp_path / "db")
    owner = open_database(path)
    try:
        check_store_file(path)  # "in use" is not damage: no refusal here
    finally:
        owner.close()


def test_the_daemon_refuses_a_zero_length_store_with_status_2_and_says_what_to_do(
    tmp_path: Path,
) -> None:
    home = tmp_path / "ship1"
    db = home / "var" / "lib" / "steward.db"
    db.parent.mkdir(parents=True)
    db.write_bytes(b"")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "steward_otp",
            "run",
            "--home",
            str(home),
            "--node-name",
            "ship1",
            "--broker-address",
            "nats://127.0.0.1:1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert f"{db} is empty (0 bytes)" in done.stderr
    assert f"steward-otp store repair --home {home}" in done.stderr


# --- retention


async def test_failed_and_cancelled_messages_leave_the_outbox_after_the_retention(
    tmp_path: Path,
) -> None:
    now = [T0]
    store = Store(store_path(tmp_path / "db"), held_retention=DAY, clock=lambda: now[0])
    async with running(store):
        await store.enqueue([entry("failed"), entry("cancelled"), entry("queued")])
        await store.mark_failed("failed", "max retries reached")
        await store.cancel("cancelled")
        now[0] = T0 + DAY / 2
        assert await store.prune_held() == 0
        now[0] = T0 + DAY + 1
        assert await store.prune_held() == 2
        assert [r.msg_id for r in await store.list_outbox()] == ["queued"]
        outcomes = {r.msg_id: r.outcome for r in await store.audit_log()}
        assert outcomes == {"failed": "failed", "cancelled": "cancelled"}
        # Still recognised as sent: a resubmission of the same id is not stored again.
        assert await store.enqueue([entry("failed")]) == []


async def test_the_periodic_job_prunes_held_messages(tmp_path: Path) -> None:
    now = [T0]
    store = Store(
        store_path(tmp_path / "db"),
        held_retention=DAY,
        maintenance_interval=0.01,
        clock=lambda: now[0],
    )
    async with running(store):
        await store.enqueue([entry("failed")])
        await store.mark_failed("failed", "max retries reached")
        now[0] = T0 + 2 * DAY
        with trio.fail_after(5):
            while await store.list_outbox():
                await trio.sleep(0.02)


def test_retention_settings_reach_the_nodes_store(tmp_path: Path) -> None:
    node = LoopbackNet(tmp_path).node("ship1", outbox_retention_seconds=3600.0)
    assert node.store._held_retention == 3600.0
    assert node.store._audit_retention == node.config.audit_retention_seconds


# --- disk full


async def _fill_up(store: Store) -> None:
    [(pages,)] = await _sql(store, "PRAGMA page_count")
    await _sql(store, f"PRAGMA max_page_count = {pages}")


async def test_a_write_refused_for_a_full_disk_fails_its_caller_and_the_store_goes_on(
    tmp_path: Path,
) -> None:
    store = Store(store_path(tmp_path / "db"))
    async with running(store):
        await store.enqueue([entry("before")])
        await _fill_up(store)
        with pytest.raises(StoreFull, match="disk full"):
            await store.enqueue([entry("big", payload=b"x" * 200_000)])
        assert store.running
        assert store.stats().disk_full == 1
        await _sql(store, "PRAGMA max_page_count = 1073741823")
        assert await store.enqueue([entry("after")]) == ["after"]
        assert [r.msg_id for r in await store.list_outbox()] == ["before", "after"]


async def test_an_input_answers_not_accepted_disk_full_and_the_node_keeps_running(
    tmp_path: Path,
) -> None:
    node = LoopbackNet(tmp_path).node("ship1")
    document = json.dumps({"toNode": "local", "method": "REQPing", "data": "x" * 100_000}).encode()
    async with node:
        await _fill_up(node.store)
        [answer] = await node.accept_document(document)
        assert not answer.accepted
        assert "was not accepted: disk full" in str(answer.error)
        await _sql(node.store, "PRAGMA max_page_count = 1073741823")
        [answer] = await node.accept_document(document)
        assert answer.accepted, answer


def _disk_full_error() -> sqlite3.OperationalError:
    error = sqlite3.OperationalError("database or disk is full")
    error.sqlite_errorcode = 13  # SQLITE_FULL, as SQLite sets it
    return error


async def test_a_full_disk_at_open_does_not_stop_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = store_path(tmp_path / "db")
    async with running(Store(path)) as store:
        await store.enqueue([entry("m1")])
        await store.mark_in_flight("m1")

    def full(*args: object) -> object:
        raise _disk_full_error()

    monkeypatch.setattr(store_module, "apply_batch", full)
    store = Store(path)
    async with running(store):
        assert store.stats().disk_full == 1
        with pytest.raises(StoreFull, match="disk full"):
            await store.enqueue([entry("m2")])
        monkeypatch.undo()
        assert [r.msg_id for r in await store.pending()] == ["m1"]  # still to deliver
        assert await store.enqueue([entry("m2")]) == ["m2"]


def test_an_unchanged_configuration_is_not_rewritten_at_start(tmp_path: Path) -> None:
    config = load_config(tmp_path, {"node_name": "ship1"})
    path = save_config(config)
    before = path.stat()
    assert save_config(load_config(tmp_path)) == path
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
