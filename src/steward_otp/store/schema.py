"""The store's SQLite file format: its tables, creating and opening the file, and its errors.

Three tables live in one WAL-mode file:

* ``outbox`` -- every accepted outbound message that is not finished yet, or that an operator
  may still act on: states ``queued``, ``in_flight``, ``failed``, ``cancelled``. A delivered or
  purged message leaves the table; its last word is in ``audit``.
* ``inbox`` -- the de-duplication set: ids of inbound messages already accepted, kept for a
  retention window. The payload is kept until the handler is done, then moved to ``audit``.
* ``audit`` -- one record per finished message (delivered, failed, cancelled, purged, or an
  inbound message handled) with the encoded payload, enough to recreate the message.

A store file is never left empty by steward-otp: a new one is built beside its final name
and renamed into place once its schema is written (:func:`open_database`). So an empty or
unreadable ``steward.db`` always means lost content, and opening it raises
:class:`StoreDamaged` -- the node refuses to start rather than silently starting empty.

What reads and changes the tables are operations, applied by :mod:`.batches`. Import the
public names from :mod:`steward_otp.store`.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from pathlib import Path
from typing import Literal

from steward_otp.atomic_file import fsync_folder

SCHEMA_VERSION = 1
"""Stored in ``PRAGMA user_version``; bumped by every incompatible change of the tables."""

Synchronous = Literal["FULL", "NORMAL"]
"""SQLite ``synchronous`` levels the store accepts (see :class:`steward_otp.store.Store`)."""


class StoreError(Exception):
    """The store cannot do what was asked: not running, stopped, locked, or a write failed.

    When raised by a write, the write is not known to be durable; the caller should treat the
    operation as not done (it may retry once the store is running again).
    """


class StoreDamaged(StoreError):
    """The store file is empty, not a database, or damaged; the text names the file and
    what the operator can do (``steward-otp store check`` / ``store repair``)."""


class StoreFull(StoreError):
    """A write failed because the disk (or the database's size limit) is full; nothing of
    it was written. The store keeps running: later writes succeed once there is room."""


SQLITE_HEADER = b"SQLite format 3\x00"
"""The first 16 bytes of every SQLite database file."""

DAMAGE_MARK_SUFFIX = ".damaged"
"""``steward.db.damaged``: written beside the store when SQLite reports it damaged, so that
later starts refuse it until an operator ran ``store check`` or ``store repair``."""

_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_NOTADB = 26

_WHAT_TO_DO = (
    "Stop the node and run `steward-otp store check --home <home>` to see what is damaged, "
    "then `steward-otp store repair --home <home>` to copy what can be read into a new "
    "store (the old file is kept aside), or restore the file from a backup"
)


def sqlite_error_code(exc: BaseException) -> int | None:
    """The primary SQLite result code of ``exc`` (e.g. 13 for SQLITE_FULL), or None."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def is_damage(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite saying the file is corrupt or not a database."""
    return sqlite_error_code(exc) in (_SQLITE_CORRUPT, _SQLITE_NOTADB)


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite saying the disk or the database is full."""
    return sqlite_error_code(exc) == _SQLITE_FULL


def damage_mark(path: str | Path) -> Path:
    """Where the damage mark of the store at ``path`` lives."""
    path = Path(path)
    return path.with_name(path.name + DAMAGE_MARK_SUFFIX)


def mark_damaged(path: str | Path, error: BaseException | str) -> None:
    """Record that the store at ``path`` was found damaged (best effort: never raises)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    with contextlib.suppress(OSError):
        damage_mark(path).write_text(f"{stamp} {error}\n", encoding="utf-8")


def file_problem(path: str | Path, *, marks: bool = True) -> str | None:
    """Why the store file at ``path`` cannot be opened as a store, judged from the file
    alone (no SQLite), or None. A missing file is no problem: it is created. With
    ``marks``, a damage mark beside it (see :func:`mark_damaged`) is a problem too."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    mark = damage_mark(path)
    if marks and mark.exists():
        with contextlib.suppress(OSError):
            noted = mark.read_text(encoding="utf-8", errors="replace").strip()[:500]
            return f"was found damaged ({noted}; noted in {mark.name})"
        return f"was found damaged (noted in {mark.name})"
    if size == 0:
        # Switching to WAL writes the header, so even a store never checkpointed has one.
        return (
            "is empty (0 bytes), which steward-otp never leaves it: its content (queued "
            "messages, ids of received messages, the audit log) is lost -- the file was "
            "truncated or replaced"
        )
    try:
        with path.open("rb") as file:
            header = file.read(len(SQLITE_HEADER))
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    if header != SQLITE_HEADER:
        return f"is not a SQLite database ({size} bytes that do not start as one)"
    return None


def damaged_error(path: str | Path, problem: str) -> StoreDamaged:
    """The :class:`StoreDamaged` for ``problem`` of the store at ``path``."""
    return StoreDamaged(f"the store database {path} {problem}. {_WHAT_TO_DO}")


SCHEMA: tuple[str, ...] = (
    """
    CREATE TABLE outbox (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        msg_id     TEXT    NOT NULL UNIQUE,
        to_node    TEXT    NOT NULL,
        method     TEXT    NOT NULL,
        payload    BLOB    NOT NULL,
        state      TEXT    NOT NULL
                   CHECK (state IN ('queued', 'in_flight', 'failed', 'cancelled')),
        attempts   INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
        created_at REAL    NOT NULL,
        not_before REAL    NOT NULL,
        updated_at REAL    NOT NULL,
        reason     TEXT
    )
    """,
    "CREATE INDEX outbox_by_state ON outbox (state, seq)",
    "CREATE INDEX outbox_by_destination ON outbox (to_node, state)",
    """
    CREATE TABLE inbox (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        msg_id      TEXT NOT NULL UNIQUE,
        from_node   TEXT NOT NULL,
        method      TEXT NOT NULL,
        payload     BLOB,
        received_at REAL NOT NULL,
        done_at     REAL,
        outcome     TEXT
    )
    """,
    "CREATE INDEX inbox_by_received_at ON inbox (received_at)",
    """
    CREATE TABLE audit (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        direction   TEXT    NOT NULL CHECK (direction IN ('out', 'in')),
        msg_id      TEXT    NOT NULL,
        peer_node   TEXT    NOT NULL,
        method      TEXT    NOT NULL,
        outcome     TEXT    NOT NULL,
        attempts    INTEGER,
        payload     BLOB,               -- NULL: larger than AUDIT_PAYLOAD_LIMIT
        created_at  REAL    NOT NULL,
        recorded_at REAL    NOT NULL,
        reason      TEXT
    )
    """,
    "CREATE INDEX audit_by_msg_id ON audit (msg_id, direction)",
    "CREATE INDEX audit_by_recorded_at ON audit (recorded_at)",
)
"""The DDL of schema version :data:`SCHEMA_VERSION`, one statement per item."""


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fsync_folder(folder)


def create_database(path: str | Path) -> None:
    """Create an empty store at ``path`` (which must not exist): built as ``<path>.new``,
    written and synced, then renamed into place, so ``path`` never exists half made."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = path.with_name(path.name + ".new")
    for leftover in (new, *(new.with_name(new.name + s) for s in ("-wal", "-shm", "-journal"))):
        leftover.unlink(missing_ok=True)
    db = sqlite3.connect(new, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("BEGIN IMMEDIATE")
        for statement in SCHEMA:
            db.execute(statement)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()  # the last connection: the WAL goes into the file and is removed
    with new.open("rb+") as file:
        os.fsync(file.fileno())
    os.replace(new, path)
    _fsync_folder(path.parent)


def open_database(
    path: str | Path, *, synchronous: Synchronous = "FULL", lock_timeout: float = 5.0
) -> sqlite3.Connection:
    """Open (creating if needed) the store file at ``path`` and take sole ownership of it.

    The connection is in autocommit mode (transactions are explicit, see :func:`apply_batch`),
    uses WAL journaling with the given ``synchronous`` level, and holds SQLite's exclusive lock
    until closed (``locking_mode=EXCLUSIVE``), so a second process -- or a second connection --
    on the same file fails here after ``lock_timeout`` seconds instead of delivering the same
    messages twice. The connection is created with ``check_same_thread=False`` because the
    store actor runs it from Trio worker threads; callers must still use it from one thread at
    a time. Raises :class:`StoreError` when the file is owned by someone else, was written by
    a newer schema, or cannot be opened, and :class:`StoreDamaged` (a StoreError) when it
    is empty, not a database or damaged (see :func:`file_problem`); a file SQLite finds
    damaged is marked so (:func:`mark_damaged`) until an operator checks or repairs it.
    """
    if synchronous not in ("FULL", "NORMAL"):
        raise ValueError(f"synchronous must be 'FULL' or 'NORMAL', got {synchronous!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    problem = file_problem(path)
    if problem is not None:
        raise damaged_error(path, problem)
    if not path.exists():
        try:
            create_database(path)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot create the store database {path}: {exc}") from exc
    try:
        db = sqlite3.connect(
            path, timeout=lock_timeout, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the store database {path}: {exc}") from exc
    try:
        db.execute("PRAGMA locking_mode=EXCLUSIVE")
        (mode,) = db.execute("PRAGMA journal_mode=WAL").fetchone()
        if str(mode).lower() != "wal":
            raise StoreError(f"{path}: SQLite refused WAL journaling (journal_mode={mode})")
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.execute("PRAGMA journal_size_limit=67108864")
        db.execute("BEGIN IMMEDIATE")  # takes the exclusive lock now, not at the first write
        try:
            (version,) = db.execute("PRAGMA user_version").fetchone()
            if version == 0:
                for statement in SCHEMA:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            elif version != SCHEMA_VERSION:
                raise StoreError(
                    f"{path} holds store schema version {version}, but this steward-otp "
                    f"understands version {SCHEMA_VERSION}; use a matching steward-otp or "
                    "move the file aside"
                )
            db.execute("COMMIT")
        except BaseException:
            rollback_quietly(db)
            raise
    except sqlite3.Error as exc:
        db.close()
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            raise StoreError(
                f"{path} is in use by another process or store (SQLite lock held): only one "
                "steward-otp node may own a database folder"
            ) from exc
        if is_damage(exc):
            mark_damaged(path, exc)
            raise damaged_error(path, f"is damaged (SQLite: {exc})") from exc
        raise StoreError(f"cannot open the store database {path}: {exc}") from exc
    except BaseException:
        db.close()
        raise
    return db


def rollback_quietly(db: sqlite3.Connection) -> None:
    """Roll back the transaction open on ``db``, if any; SQLite errors are ignored."""
    # After some errors (e.g. a failed COMMIT on a full disk) SQLite has already rolled back.
    if db.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
