"""Check and repair a stopped node's store file (``steward-otp store check|repair``).

* :func:`check_store` runs SQLite's ``integrity_check`` and counts what the store holds.
  A store found healthy loses its damage mark (:func:`~steward_otp.store.schema.mark_damaged`),
  so the node starts again.
* :func:`repair_store` keeps the old file aside (``steward.db.damaged-<time>``, with its
  ``-wal``), builds a new store at the old name, and copies into it every row of every table
  that can still be read -- chunk by chunk, and row by row where a chunk cannot be read. The
  aside file is never written: rows are read from a copy of it.

Both refuse while a node holds the store (:class:`StoreInUse`): stop the node first.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Final

import attrs

from steward_otp.store.schema import (
    SCHEMA_VERSION,
    create_database,
    damage_mark,
    file_problem,
)

__all__ = [
    "CheckReport",
    "RepairReport",
    "StoreInUse",
    "TableCopy",
    "check_store",
    "repair_store",
]

_CHUNK: Final = 500
"""Rows read per statement while copying (by ``seq`` range)."""

_MAX_PROBLEMS: Final = 100
"""Most problems ``integrity_check`` is asked to list."""

_SIDE_FILES: Final = ("-wal", "-shm")


class StoreInUse(Exception):
    """A running node holds the store (SQLite's lock): stop it first."""


@attrs.frozen
class CheckReport:
    """What :func:`check_store` found. ``problems`` empty: the store is healthy."""

    path: Path
    exists: bool
    problems: tuple[str, ...]
    counts: Mapping[str, int]
    """Rows per table, and outbox rows per state (``outbox.queued`` ...), where readable."""
    mark_removed: str | None = None
    """The damage noted earlier, when this check found the store healthy and removed it."""

    @property
    def ok(self) -> bool:
        """True when nothing is wrong (a store not created yet is fine too)."""
        return not self.problems


@attrs.frozen
class TableCopy:
    """How much of one table :func:`repair_store` copied."""

    table: str
    copied: int
    unreadable: int
    """Rows (or whole stretches, when even their range could not be read) left behind."""


@attrs.frozen
class RepairReport:
    """What :func:`repair_store` did."""

    path: Path
    kept_aside: Path
    tables: tuple[TableCopy, ...]
    problem: str | None
    """Why the old file could not be read at all (then the new store is empty), or None."""

    @property
    def complete(self) -> bool:
        """True when every row was copied."""
        return self.problem is None and all(t.unreadable == 0 for t in self.tables)


def _ensure_not_in_use(path: Path) -> None:
    """Raise StoreInUse when a process holds the store's lock (a running node)."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.5)
    except sqlite3.Error:
        return
    try:
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise StoreInUse(
                f"{path} is in use by a running node: stop it first (e.g. systemctl stop "
                "steward-otp), then run this again"
            ) from exc
    except sqlite3.Error:
        pass  # damaged or not a database: not in use by a node, which could not open it
    finally:
        db.close()


@contextlib.contextmanager
def _reading_copy(path: Path, folder: Path) -> Iterator[sqlite3.Connection]:
    """A connection to a copy of the store at ``path`` (and its WAL), so that reading it,
    which may replay and checkpoint the WAL, never changes the original."""
    copy = folder / f".{path.name}.reading"
    for suffix in ("", *_SIDE_FILES):
        Path(f"{copy}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(path, copy)
    wal = Path(f"{path}-wal")
    if wal.exists():
        shutil.copyfile(wal, f"{copy}-wal")
    db = sqlite3.connect(copy, isolation_level=None)
    try:
        yield db
    finally:
        db.close()
        for suffix in ("", *_SIDE_FILES):
            Path(f"{copy}{suffix}").unlink(missing_ok=True)


def _counts(db: sqlite3.Connection) -> dict[str, int]:
    counts: dict[str, int] = {}
    for table in ("outbox", "inbox", "audit"):
        with contextlib.suppress(sqlite3.Error):
            counts[table] = int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    with contextlib.suppress(sqlite3.Error):
        for state, count in db.execute("SELECT state, count(*) FROM outbox GROUP BY state"):
            counts[f"outbox.{state}"] = int(count)
    return counts


def check_store(path: str | Path) -> CheckReport:
    """Check the store at ``path`` without changing it (but for removing a damage mark
    when it is found healthy). Raises :class:`StoreInUse` while a node holds it."""
    path = Path(path)
    if not path.exists():
        return CheckReport(path, exists=False, problems=(), counts={})
    _ensure_not_in_use(path)
    mark = damage_mark(path)
    noted = mark.read_text(encoding="utf-8", errors="replace").strip() if mark.exists() else None
    problem = file_problem(path, marks=False)
    if problem is not None:
        return CheckReport(path, exists=True, problems=(f"the file {problem}",), counts={})
    problems: list[str] = []
    counts: dict[str, int] = {}
    with _reading_copy(path, path.parent) as db:
        try:
            rows = db.execute(f"PRAGMA integrity_check({_MAX_PROBLEMS})").fetchall()
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.Error as exc:
            problems.append(f"SQLite cannot read it: {exc}")
        else:
            problems += [str(row[0]) for row in rows if row[0] != "ok"]
            if version not in (0, SCHEMA_VERSION):
                problems.append(
                    f"it holds store schema version {version}; this steward-otp understands "
                    f"version {SCHEMA_VERSION}"
                )
            counts = _counts(db)
    removed = None
    if not problems and noted is not None:
        mark.unlink(missing_ok=True)
        removed = noted
    return CheckReport(path, True, tuple(problems), counts, mark_removed=removed)


def _aside_name(path: Path) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%S")
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    return aside


def _upper_seq(db: sqlite3.Connection, table: str) -> int | None:
    """The highest ``seq`` the table may hold, from the table or from sqlite_sequence."""
    found: list[int] = []
    for sql, args in (
        (f"SELECT max(seq) FROM {table}", ()),
        ("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)),
    ):
        with contextlib.suppress(sqlite3.Error, TypeError, ValueError):
            row = db.execute(sql, args).fetchone()
            if row is not None and row[0] is not None:
                found.append(int(row[0]))
    return max(found) if found else None


def _salvage(
    db: sqlite3.Connection, table: str, columns: list[str]
) -> Iterator[list[tuple[object, ...]] | int]:
    """The readable rows of ``table`` in chunks; an ``int`` for each count of rows (or
    stretches) that could not be read."""
    names = ", ".join(columns)
    upper = _upper_seq(db, table) if "seq" in columns else None
    if upper is None:
        # No way to walk it by seq: read in order until it fails.
        cursor = db.execute(f"SELECT {names} FROM {table}")
        try:
            while rows := cursor.fetchmany(_CHUNK):
                yield rows
        except sqlite3.Error:
            yield 1
        return
    low = 0
    while low < upper:
        high = low + _CHUNK
        try:
            yield db.execute(
                f"SELECT {names} FROM {table} WHERE seq > ? AND seq <= ? ORDER BY seq",
                (low, high),
            ).fetchall()
        except sqlite3.Error:
            for seq in range(low + 1, high + 1):
                try:
                    yield db.execute(
                        f"SELECT {names} FROM {table} WHERE seq = ?", (seq,)
                    ).fetchall()
                except sqlite3.Error:
                    yield 1
        low = high


def _copy_tables(old: sqlite3.Connection, new: sqlite3.Connection) -> list[TableCopy]:
    copies = []
    tables = [
        str(name)
        for (name,) in new.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            " ORDER BY name"
        )
    ]
    for table in tables:
        columns = [str(row[1]) for row in new.execute(f"PRAGMA table_info({table})")]
        try:
            old_columns = {str(row[1]) for row in old.execute(f"PRAGMA table_info({table})")}
        except sqlite3.Error:
            old_columns = set()
        columns = [c for c in columns if c in old_columns]
        copied = unreadable = 0
        if columns:
            marks = ", ".join("?" * len(columns))
            new.execute("BEGIN IMMEDIATE")
            try:
                for part in _salvage(old, table, columns):
                    if isinstance(part, int):
                        unreadable += part
                        continue
                    new.executemany(
                        f"INSERT OR IGNORE INTO {table} ({', '.join(columns)}) VALUES ({marks})",
                        part,
                    )
                    copied += len(part)
                new.execute("COMMIT")
            except BaseException:
                new.execute("ROLLBACK")
                raise
        else:
            unreadable = 1
        copies.append(TableCopy(table, copied, unreadable))
    return copies


def repair_store(path: str | Path) -> RepairReport:
    """Keep the store at ``path`` aside and build a new one from what can be read of it.

    Raises :class:`StoreInUse` while a node holds it, ``FileNotFoundError`` when there is
    no store. The new store is complete before this returns; the aside files are kept
    as they were for the operator to inspect or delete.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"there is no store at {path}: nothing to repair")
    _ensure_not_in_use(path)
    aside = _aside_name(path)
    path.rename(aside)
    for suffix in _SIDE_FILES:
        side = Path(f"{path}{suffix}")
        if side.exists():
            side.rename(f"{aside}{suffix}")
    create_database(path)
    problem = file_problem(aside, marks=False)
    tables: list[TableCopy] = []
    if problem is None:
        try:
            with _reading_copy(aside, path.parent) as old:
                version = int(old.execute("PRAGMA user_version").fetchone()[0])
                if version not in (0, SCHEMA_VERSION):
                    problem = (
                        f"holds store schema version {version}, which this steward-otp "
                        f"(version {SCHEMA_VERSION}) cannot copy"
                    )
                else:
                    new = sqlite3.connect(path, isolation_level=None)
                    try:
                        tables = _copy_tables(old, new)
                    finally:
                        new.close()
        except sqlite3.Error as exc:
            problem = f"cannot be read at all (SQLite: {exc})"
    damage_mark(path).unlink(missing_ok=True)
    return RepairReport(path, aside, tuple(tables), problem)
