"""The store's SQLite file format and the synchronous operations applied to it.

This is the sans-IO core of :mod:`steward_otp.store`: plain functions and frozen operation
records that act on a :class:`sqlite3.Connection`, with no Trio and no threads, so the state
machine can be tested synchronously (and hammered by hypothesis) without the actor around it.
Import the public names from :mod:`steward_otp.store`; this module is its engine room.

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
"""

from __future__ import annotations

import contextlib
import enum
import math
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import attrs

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


class OutboxState(enum.StrEnum):
    """Where an outbound message held in the outbox is in its life."""

    QUEUED = "queued"
    """Waiting for a publisher (possibly not before ``not_before``)."""
    IN_FLIGHT = "in_flight"
    """A publisher is delivering it. Reset to ``queued`` when the store is reopened."""
    FAILED = "failed"
    """Retries ran out. Held for an operator to retry or purge."""
    CANCELLED = "cancelled"
    """Cancelled by an operator. Held for an operator to retry or purge."""


ACTIVE_STATES: frozenset[OutboxState] = frozenset({OutboxState.QUEUED, OutboxState.IN_FLIGHT})
"""States of messages that still need delivering (what :func:`Store.pending` returns)."""

DEFAULT_PURGE_STATES: frozenset[OutboxState] = frozenset(
    {OutboxState.QUEUED, OutboxState.FAILED, OutboxState.CANCELLED}
)
"""States :meth:`Store.purge` removes unless told otherwise: everything no publisher holds."""


class AuditOutcome(enum.StrEnum):
    """How an outbound message left the outbox, as written to the audit log."""

    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PURGED = "purged"


class Direction(enum.StrEnum):
    """Which way an audited message travelled."""

    OUTBOUND = "out"
    INBOUND = "in"


def _check_non_empty(owner: object, name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(
            f"{name} must be a non-empty string, got {value!r} in {type(owner).__name__}"
        )


def _non_empty_str(instance: object, attribute: attrs.Attribute[str], value: object) -> None:
    _check_non_empty(instance, attribute.name, value)


def _optional_non_empty_str(
    instance: object, attribute: attrs.Attribute[str | None], value: object
) -> None:
    if value is not None:
        _check_non_empty(instance, attribute.name, value)


def _finite(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{attribute.name} must be a finite number, got {value!r}")


def _optional_finite(
    instance: object, attribute: attrs.Attribute[float | None], value: float | None
) -> None:
    if value is not None and not math.isfinite(value):
        raise ValueError(f"{attribute.name} must be a finite number or None, got {value!r}")


def _non_negative(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{attribute.name} must be a finite number >= 0, got {value!r}")


def _optional_float(value: float | None) -> float | None:
    return None if value is None else float(value)


def _optional_limit(
    instance: object, attribute: attrs.Attribute[int | None], value: object
) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ValueError(f"{attribute.name} must be a positive integer or None, got {value!r}")


def _states(values: Iterable[OutboxState | str]) -> frozenset[OutboxState]:
    return frozenset(OutboxState(v) for v in values)


def _optional_states(values: Iterable[OutboxState | str] | None) -> frozenset[OutboxState] | None:
    return None if values is None else _states(values)


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


@attrs.frozen
class OutboxEntry:
    """An accepted outbound message, as handed to :meth:`Store.enqueue`.

    ``payload`` is the message already encoded by the codec; the store never looks inside it.
    ``created_at`` and ``not_before`` are wall-clock seconds (``time.time()``); a publisher
    should not send the message before ``not_before`` (0 means at once).
    """

    msg_id: str = attrs.field(validator=_non_empty_str)
    to_node: str = attrs.field(validator=_non_empty_str)
    method: str = attrs.field(validator=_non_empty_str)
    payload: bytes = attrs.field(validator=attrs.validators.instance_of(bytes))
    created_at: float = attrs.field(converter=float, validator=_finite)
    not_before: float = attrs.field(default=0.0, converter=float, validator=_finite)


@attrs.frozen
class OutboxRow:
    """One message held in the outbox, as the store has it on disk.

    ``seq`` is the acceptance order (an autoincrement that never goes back, unlike wall time);
    ``reason`` says why it failed or was cancelled.
    """

    seq: int
    msg_id: str
    to_node: str
    method: str
    payload: bytes
    state: OutboxState
    attempts: int
    created_at: float
    not_before: float
    updated_at: float
    reason: str | None

    def age(self, now: float) -> float:
        """Seconds since the message was created, as of wall time ``now``."""
        return now - self.created_at


@attrs.frozen
class InboundRow:
    """An inbound message accepted (and ACKed) whose handler has not reported done."""

    seq: int
    msg_id: str
    from_node: str
    method: str
    payload: bytes
    received_at: float


@attrs.frozen
class AuditRecord:
    """One line of the audit log: a message that finished, with what it takes to recreate it.

    ``peer_node`` is the destination of an outbound message or the sender of an inbound one;
    ``attempts`` is ``None`` for inbound messages.
    """

    seq: int
    direction: Direction
    msg_id: str
    peer_node: str
    method: str
    outcome: str
    attempts: int | None
    payload: bytes | None
    """The message as sent; None when it was larger than :data:`AUDIT_PAYLOAD_LIMIT`."""
    created_at: float
    recorded_at: float
    reason: str | None


# --------------------------------------------------------------------------------------------
# Schema, opening, batches
# --------------------------------------------------------------------------------------------

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
            _rollback_quietly(db)
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


T_co = TypeVar("T_co", covariant=True)


class Operation(Protocol[T_co]):
    """One request to the store: reads or changes the tables inside a batch's transaction."""

    def apply(self, db: sqlite3.Connection, now: float) -> T_co:
        """Run against ``db`` inside an open transaction; ``now`` is the batch's wall time."""
        ...


@attrs.frozen
class OperationFailed:
    """The result slot of an operation that raised; its changes were rolled back alone."""

    operation: str
    error: Exception


# Errors that mean "this one operation is bad" (constraint violations, unbindable values),
# not "the database is in trouble"; anything else aborts the whole batch.
_OPERATION_ERRORS = (
    sqlite3.IntegrityError,
    sqlite3.InterfaceError,
    sqlite3.ProgrammingError,
    sqlite3.DataError,
    ValueError,
    TypeError,
    OverflowError,
)


def apply_batch(
    db: sqlite3.Connection, operations: Sequence[Operation[object]], now: float
) -> list[object]:
    """Apply ``operations`` in order in ONE transaction and commit it (one fsync in FULL mode).

    Returns one result per operation; an operation that raises one of the "bad request"
    errors is rolled back alone and its slot holds :class:`OperationFailed`, while the others
    still commit. Any other error -- I/O, disk full, a failing COMMIT -- rolls the whole batch
    back and propagates: nothing of the batch is durable.
    """
    try:
        return _apply_in_transaction(db, operations, now, isolate=False)
    except _OPERATION_ERRORS:
        # Rare (a bug or a constraint the validators missed): replay the whole batch with one
        # savepoint per operation. Operations are deterministic given the file and ``now``,
        # so the replay sees what the first pass saw. Savepoints for every batch would cost
        # about a third of the throughput, for nothing in the common case.
        return _apply_in_transaction(db, operations, now, isolate=True)


def _apply_in_transaction(
    db: sqlite3.Connection, operations: Sequence[Operation[object]], now: float, *, isolate: bool
) -> list[object]:
    results: list[object] = []
    db.execute("BEGIN IMMEDIATE")
    try:
        for operation in operations:
            if not isolate:
                results.append(operation.apply(db, now))
                continue
            db.execute("SAVEPOINT operation")
            try:
                result = operation.apply(db, now)
            except _OPERATION_ERRORS as exc:
                db.execute("ROLLBACK TO operation")
                db.execute("RELEASE operation")
                results.append(OperationFailed(type(operation).__name__, exc))
            else:
                db.execute("RELEASE operation")
                results.append(result)
        db.execute("COMMIT")
    except BaseException:
        _rollback_quietly(db)
        raise
    return results


def _rollback_quietly(db: sqlite3.Connection) -> None:
    # After some errors (e.g. a failed COMMIT on a full disk) SQLite has already rolled back.
    if db.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")


# --------------------------------------------------------------------------------------------
# Row helpers
# --------------------------------------------------------------------------------------------

_OUTBOX_COLUMNS = (
    "seq, msg_id, to_node, method, payload, state, attempts, "
    "created_at, not_before, updated_at, reason"
)
_AUDIT_COLUMNS = (
    "seq, direction, msg_id, peer_node, method, outcome, attempts, "
    "payload, created_at, recorded_at, reason"
)

_Row = tuple[Any, ...]  # what sqlite3 hands back; converted field by field below


def _outbox_row(row: _Row) -> OutboxRow:
    seq, msg_id, to_node, method, payload, state, attempts, created, not_before, updated, why = row
    return OutboxRow(
        seq=int(seq),
        msg_id=str(msg_id),
        to_node=str(to_node),
        method=str(method),
        payload=bytes(payload),
        state=OutboxState(state),
        attempts=int(attempts),
        created_at=float(created),
        not_before=float(not_before),
        updated_at=float(updated),
        reason=None if why is None else str(why),
    )


def _audit_record(row: _Row) -> AuditRecord:
    seq, direction, msg_id, peer, method, outcome, attempts, payload, created, recorded, why = row
    return AuditRecord(
        seq=int(seq),
        direction=Direction(direction),
        msg_id=str(msg_id),
        peer_node=str(peer),
        method=str(method),
        outcome=str(outcome),
        attempts=None if attempts is None else int(attempts),
        payload=None if payload is None else bytes(payload),
        created_at=float(created),
        recorded_at=float(recorded),
        reason=None if why is None else str(why),
    )


AUDIT_PAYLOAD_LIMIT = 64 * 1024
"""Largest payload (bytes) the audit log keeps. Bigger messages (file-copy chunks, large
outputs) are audited with their metadata only, so the audit log does not grow by the size
of every file copied; everything smaller is kept whole, enough to recreate the message."""

AUDITED_PAYLOAD = f"CASE WHEN length(payload) <= {AUDIT_PAYLOAD_LIMIT} THEN payload END"


def _placeholders(count: int) -> str:
    return ", ".join("?" * count)


_CHUNK = 500
"""Ids bound per statement in set-based operations (far below SQLite's variable limit)."""


def _chunks(values: Iterable[str]) -> Iterator[tuple[str, ...]]:
    items = tuple(values)
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _finish(
    db: sqlite3.Connection,
    msg_id: str,
    *,
    allowed: frozenset[OutboxState] | None,
    outcome: AuditOutcome,
    now: float,
    reason: str | None,
    keep_as: OutboxState | None,
) -> bool:
    """Move a message to a final outcome: audit it, then keep it (held) or drop it."""
    where = "msg_id = ?"
    params: list[object] = [msg_id]
    if allowed is not None:
        where += f" AND state IN ({_placeholders(len(allowed))})"
        params += [str(state) for state in sorted(allowed)]
    audited = db.execute(
        "INSERT INTO audit (direction, msg_id, peer_node, method, outcome, attempts, payload,"
        " created_at, recorded_at, reason) SELECT 'out', msg_id, to_node, method, ?, attempts,"
        f" {AUDITED_PAYLOAD}, created_at, ?, ? FROM outbox WHERE {where}",
        [str(outcome), now, reason, *params],
    ).rowcount
    if not audited:
        return False
    if keep_as is None:
        db.execute("DELETE FROM outbox WHERE msg_id = ?", (msg_id,))
    else:
        db.execute(
            "UPDATE outbox SET state = ?, reason = ?, updated_at = ? WHERE msg_id = ?",
            (str(keep_as), reason, now, msg_id),
        )
    return True


# --------------------------------------------------------------------------------------------
# Outbox operations
# --------------------------------------------------------------------------------------------


def _entries(entries: Iterable[OutboxEntry]) -> tuple[OutboxEntry, ...]:
    return tuple(entries)


def _all_entries(
    instance: object, attribute: attrs.Attribute[tuple[OutboxEntry, ...]], value: tuple[object, ...]
) -> None:
    for item in value:
        if not isinstance(item, OutboxEntry):
            raise TypeError(f"enqueue takes OutboxEntry records, got {type(item).__name__}")


@attrs.frozen
class Enqueue:
    """Add entries as ``queued``; returns the ids that were new, in the order given.

    An id already in the outbox, or already in the audit log as an outbound message (within
    the audit retention), is ignored: enqueueing is idempotent on ``msg_id``.
    """

    entries: tuple[OutboxEntry, ...] = attrs.field(converter=_entries, validator=_all_entries)

    def apply(self, db: sqlite3.Connection, now: float) -> list[str]:
        known: set[str] = set()
        for chunk in _chunks(entry.msg_id for entry in self.entries):
            marks = _placeholders(len(chunk))
            known.update(
                row[0]
                for row in db.execute(
                    f"SELECT msg_id FROM outbox WHERE msg_id IN ({marks}) UNION ALL"
                    f" SELECT msg_id FROM audit WHERE direction = 'out' AND msg_id IN ({marks})",
                    (*chunk, *chunk),
                )
            )
        fresh: dict[str, OutboxEntry] = {}
        for entry in self.entries:
            if entry.msg_id not in known:
                fresh.setdefault(entry.msg_id, entry)
        db.executemany(
            "INSERT INTO outbox (msg_id, to_node, method, payload, state, attempts,"
            " created_at, not_before, updated_at) VALUES (?, ?, ?, ?, 'queued', 0, ?, ?, ?)",
            [
                (e.msg_id, e.to_node, e.method, e.payload, e.created_at, e.not_before, now)
                for e in fresh.values()
            ],
        )
        return list(fresh)


@attrs.frozen
class MarkInFlight:
    """``queued``/``in_flight`` -> ``in_flight``; False if the message is not active."""

    msg_id: str = attrs.field(validator=_non_empty_str)

    def apply(self, db: sqlite3.Connection, now: float) -> bool:
        cursor = db.execute(
            "UPDATE outbox SET state = 'in_flight', updated_at = ?"
            " WHERE msg_id = ? AND state IN ('queued', 'in_flight')",
            (now, self.msg_id),
        )
        return cursor.rowcount == 1


def _ids(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


def _all_non_empty(
    instance: object, attribute: attrs.Attribute[tuple[str, ...]], value: tuple[object, ...]
) -> None:
    for item in value:
        _check_non_empty(instance, attribute.name, item)


def _update_active(
    db: sqlite3.Connection, assignment: str, msg_ids: tuple[str, ...], now: float
) -> list[str]:
    """Apply ``assignment`` to the active ones of ``msg_ids``; returns those, in order."""
    active: set[str] = set()
    for chunk in _chunks(msg_ids):
        active.update(
            row[0]
            for row in db.execute(
                f"UPDATE outbox SET {assignment}, updated_at = ?"
                f" WHERE msg_id IN ({_placeholders(len(chunk))})"
                " AND +state IN ('queued', 'in_flight') RETURNING msg_id",
                (now, *chunk),
            )
        )
    return [i for i in msg_ids if i in active]


@attrs.frozen
class MarkInFlightMany:
    """:class:`MarkInFlight` for several ids; returns those that are active (in order)."""

    msg_ids: tuple[str, ...] = attrs.field(converter=_ids, validator=_all_non_empty)

    def apply(self, db: sqlite3.Connection, now: float) -> list[str]:
        return _update_active(db, "state = 'in_flight'", self.msg_ids, now)


@attrs.frozen
class RecordAttempts:
    """:class:`RecordAttempt` for several ids; returns those still active (in order)."""

    msg_ids: tuple[str, ...] = attrs.field(converter=_ids, validator=_all_non_empty)

    def apply(self, db: sqlite3.Connection, now: float) -> list[str]:
        return _update_active(db, "attempts = attempts + 1", self.msg_ids, now)


@attrs.frozen
class MarkDeliveredMany:
    """:class:`MarkDelivered` for several ids; returns those that were in the outbox."""

    msg_ids: tuple[str, ...] = attrs.field(converter=_ids, validator=_all_non_empty)

    def apply(self, db: sqlite3.Connection, now: float) -> list[str]:
        finished: set[str] = set()
        for chunk in _chunks(dict.fromkeys(self.msg_ids)):
            marks = _placeholders(len(chunk))
            finished.update(
                row[0]
                for row in db.execute(
                    "INSERT INTO audit (direction, msg_id, peer_node, method, outcome, attempts,"
                    " payload, created_at, recorded_at, reason) SELECT 'out', msg_id, to_node,"
                    f" method, ?, attempts, {AUDITED_PAYLOAD}, created_at, ?, NULL FROM outbox"
                    f" WHERE msg_id IN ({marks}) RETURNING msg_id",
                    (str(AuditOutcome.DELIVERED), now, *chunk),
                )
            )
            db.execute(f"DELETE FROM outbox WHERE msg_id IN ({marks})", chunk)
        return [i for i in dict.fromkeys(self.msg_ids) if i in finished]


@attrs.frozen
class RecordAttempt:
    """Count one delivery attempt of an active message (and optionally reschedule it).

    False means the message is no longer active (cancelled, failed, purged, delivered): the
    publisher should stop delivering it.
    """

    msg_id: str = attrs.field(validator=_non_empty_str)
    not_before: float | None = attrs.field(
        default=None, converter=_optional_float, validator=_optional_finite
    )

    def apply(self, db: sqlite3.Connection, now: float) -> bool:
        cursor = db.execute(
            "UPDATE outbox SET attempts = attempts + 1,"
            " not_before = coalesce(?, not_before), updated_at = ?"
            " WHERE msg_id = ? AND state IN ('queued', 'in_flight')",
            (self.not_before, now, self.msg_id),
        )
        return cursor.rowcount == 1


@attrs.frozen
class MarkDelivered:
    """Remove a message from the outbox (whatever its state) and audit it as delivered.

    The remote node ACKed it, so that is what the audit log says even if an operator
    cancelled it meanwhile. False if the message is not in the outbox.
    """

    msg_id: str = attrs.field(validator=_non_empty_str)

    def apply(self, db: sqlite3.Connection, now: float) -> bool:
        return _finish(
            db,
            self.msg_id,
            allowed=None,
            outcome=AuditOutcome.DELIVERED,
            now=now,
            reason=None,
            keep_as=None,
        )


@attrs.frozen
class MarkFailed:
    """Active -> ``failed`` (held for an operator) and audit it; False if not active."""

    msg_id: str = attrs.field(validator=_non_empty_str)
    reason: str = attrs.field(validator=attrs.validators.instance_of(str))

    def apply(self, db: sqlite3.Connection, now: float) -> bool:
        return _finish(
            db,
            self.msg_id,
            allowed=ACTIVE_STATES,
            outcome=AuditOutcome.FAILED,
            now=now,
            reason=self.reason,
            keep_as=OutboxState.FAILED,
        )


@attrs.frozen
class Cancel:
    """Active -> ``cancelled`` (held for an operator) and audit it; False if not active."""

    msg_id: str = attrs.field(validator=_non_empty_str)
    reason: str = attrs.field(
        default="cancelled by operator", validator=attrs.validators.instance_of(str)
    )

    def apply(self, db: sqlite3.Connection, now: float) -> bool:
        return _finish(
            db,
            self.msg_id,
            allowed=ACTIVE_STATES,
            outcome=AuditOutcome.CANCELLED,
            now=now,
            reason=self.reason,
            keep_as=OutboxState.CANCELLED,
        )


@attrs.frozen
class Retry:
    """``failed``/``cancelled`` -> ``queued`` with attempts reset; False otherwise.

    The message keeps its ``seq``, so it sorts by its original acceptance among pending ones;
    ``not_before`` defaults to the batch's wall time (deliver at once).
    """

    msg_id: str = attrs.field(validator=_non_empty_str)
    not_before: float | None = attrs.field(
        default=None, converter=_optional_float, validator=_optional_finite
    )

    def apply(self, db: sqlite3.Connection, now: float) -> bool:
        cursor = db.execute(
            "UPDATE outbox SET state = 'queued', attempts = 0, reason = NULL,"
            " not_before = ?, updated_at = ?"
            " WHERE msg_id = ? AND state IN ('failed', 'cancelled')",
            (now if self.not_before is None else self.not_before, now, self.msg_id),
        )
        return cursor.rowcount == 1


def _purge_states(values: Iterable[OutboxState | str]) -> frozenset[OutboxState]:
    states = _states(values)
    if not states:
        raise ValueError("purge needs at least one state to purge")
    return states


@attrs.frozen
class Purge:
    """Remove held messages matching every given filter, auditing each as purged.

    Filters: destination ``to_node``, age (``created_at`` at least ``older_than_seconds``
    before the batch's wall time) and ``states``. Returns how many were removed.
    """

    to_node: str | None = attrs.field(default=None, validator=_optional_non_empty_str)
    older_than_seconds: float | None = attrs.field(
        default=None,
        converter=_optional_float,
        validator=attrs.validators.optional(_non_negative),
    )
    states: frozenset[OutboxState] = attrs.field(
        default=DEFAULT_PURGE_STATES, converter=_purge_states
    )

    def _where(self, now: float) -> tuple[str, list[object]]:
        clauses = [f"state IN ({_placeholders(len(self.states))})"]
        params: list[object] = [str(s) for s in sorted(self.states)]
        if self.to_node is not None:
            clauses.append("to_node = ?")
            params.append(self.to_node)
        if self.older_than_seconds is not None:
            clauses.append("created_at <= ?")
            params.append(now - self.older_than_seconds)
        return " AND ".join(clauses), params

    def apply(self, db: sqlite3.Connection, now: float) -> int:
        where, params = self._where(now)
        db.execute(
            "INSERT INTO audit (direction, msg_id, peer_node, method, outcome, attempts,"
            " payload, created_at, recorded_at, reason)"
            f" SELECT 'out', msg_id, to_node, method, 'purged', attempts, {AUDITED_PAYLOAD},"
            " created_at,"
            f" ?, reason FROM outbox WHERE {where} ORDER BY seq",
            [now, *params],
        )
        return db.execute(f"DELETE FROM outbox WHERE {where}", params).rowcount


@attrs.frozen
class RecoverInFlight:
    """At open: ``in_flight`` -> ``queued`` (a crash interrupted them); returns how many."""

    def apply(self, db: sqlite3.Connection, now: float) -> int:
        return db.execute(
            "UPDATE outbox SET state = 'queued', updated_at = ? WHERE state = 'in_flight'",
            (now,),
        ).rowcount


@attrs.frozen
class ListOutbox:
    """Held messages, oldest accepted first (by ``seq``), optionally filtered; paged by seq."""

    to_node: str | None = attrs.field(default=None, validator=_optional_non_empty_str)
    states: frozenset[OutboxState] | None = attrs.field(default=None, converter=_optional_states)
    limit: int | None = attrs.field(default=None, validator=_optional_limit)
    after_seq: int = attrs.field(default=0, validator=attrs.validators.instance_of(int))

    def apply(self, db: sqlite3.Connection, now: float) -> list[OutboxRow]:
        clauses = ["seq > ?"]
        params: list[object] = [self.after_seq]
        if self.to_node is not None:
            clauses.append("to_node = ?")
            params.append(self.to_node)
        if self.states is not None:
            if not self.states:
                return []
            clauses.append(f"state IN ({_placeholders(len(self.states))})")
            params.extend(sorted(str(s) for s in self.states))
        sql = f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE {' AND '.join(clauses)} ORDER BY seq"
        if self.limit is not None:
            sql += " LIMIT ?"
            params.append(self.limit)
        return [_outbox_row(row) for row in db.execute(sql, params)]


@attrs.frozen
class CountOutbox:
    """Number of held messages per state (every state present, zero if none)."""

    to_node: str | None = attrs.field(default=None, validator=_optional_non_empty_str)

    def apply(self, db: sqlite3.Connection, now: float) -> dict[OutboxState, int]:
        counts = dict.fromkeys(OutboxState, 0)
        if self.to_node is None:
            rows = db.execute("SELECT state, count(*) FROM outbox GROUP BY state")
        else:
            rows = db.execute(
                "SELECT state, count(*) FROM outbox WHERE to_node = ? GROUP BY state",
                (self.to_node,),
            )
        for state, count in rows:
            counts[OutboxState(state)] = int(count)
        return counts


@attrs.frozen
class QueueDepths:
    """Number of active (queued or in flight) messages per destination node."""

    def apply(self, db: sqlite3.Connection, now: float) -> dict[str, int]:
        rows = db.execute(
            "SELECT to_node, count(*) FROM outbox WHERE state IN ('queued', 'in_flight')"
            " GROUP BY to_node ORDER BY to_node"
        )
        return {str(node): int(count) for node, count in rows}


# --------------------------------------------------------------------------------------------
# Inbox (dedupe) and audit operations
# --------------------------------------------------------------------------------------------


@attrs.frozen
class AcceptInbound:
    """Insert an inbound message id if absent: True when new, False when already seen."""

    msg_id: str = attrs.field(validator=_non_empty_str)
    from_node: str = attrs.field(validator=_non_empty_str)
    method: str = attrs.field(validator=_non_empty_str)
    payload: bytes = attrs.field(validator=attrs.validators.instance_of(bytes))

    def apply(self, db: sqlite3.Connection, now: float) -> bool:
        cursor = db.execute(
            "INSERT OR IGNORE INTO inbox (msg_id, from_node, method, payload, received_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (self.msg_id, self.from_node, self.method, self.payload, now),
        )
        return cursor.rowcount == 1


InboundRecord = tuple[str, str, str, bytes]
"""``(msg_id, from_node, method, payload)`` of one inbound message."""


def _records(values: Iterable[InboundRecord]) -> tuple[InboundRecord, ...]:
    return tuple(values)


def _all_records(
    instance: object,
    attribute: attrs.Attribute[tuple[InboundRecord, ...]],
    value: tuple[object, ...],
) -> None:
    for item in value:
        if not (
            isinstance(item, tuple)
            and len(item) == 4
            and all(isinstance(x, str) and x for x in item[:3])
            and isinstance(item[3], bytes)
        ):
            raise TypeError(f"expected (msg_id, from_node, method, payload), got {item!r:.80}")


@attrs.frozen
class AcceptInboundMany:
    """:class:`AcceptInbound` for a whole batch; returns the ids that were new (in order)."""

    records: tuple[InboundRecord, ...] = attrs.field(converter=_records, validator=_all_records)

    def apply(self, db: sqlite3.Connection, now: float) -> list[str]:
        seen: set[str] = set()
        for chunk in _chunks(r[0] for r in self.records):
            seen.update(
                row[0]
                for row in db.execute(
                    f"SELECT msg_id FROM inbox WHERE msg_id IN ({_placeholders(len(chunk))})",
                    chunk,
                )
            )
        fresh: dict[str, InboundRecord] = {}
        for record in self.records:
            if record[0] not in seen:
                fresh.setdefault(record[0], record)
        db.executemany(
            "INSERT INTO inbox (msg_id, from_node, method, payload, received_at)"
            " VALUES (?, ?, ?, ?, ?)",
            [(*record, now) for record in fresh.values()],
        )
        return list(fresh)


@attrs.frozen
class MarkInboundDone:
    """Record a handler's outcome: audit the message, drop its payload from the inbox.

    The id stays in the dedupe set until pruned. False if the id is unknown or already done.
    """

    msg_id: str = attrs.field(validator=_non_empty_str)
    outcome: str = attrs.field(validator=_non_empty_str)
    reason: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(str))
    )

    def apply(self, db: sqlite3.Connection, now: float) -> bool:
        row = db.execute(
            "SELECT seq, from_node, method, payload, received_at FROM inbox"
            " WHERE msg_id = ? AND done_at IS NULL",
            (self.msg_id,),
        ).fetchone()
        if row is None:
            return False
        seq, from_node, method, payload, received_at = row
        db.execute(
            "INSERT INTO audit (direction, msg_id, peer_node, method, outcome, attempts,"
            " payload, created_at, recorded_at, reason)"
            " VALUES ('in', ?, ?, ?, ?, NULL, ?, ?, ?, ?)",
            (
                self.msg_id,
                from_node,
                method,
                self.outcome,
                payload if payload is None or len(payload) <= AUDIT_PAYLOAD_LIMIT else None,
                received_at,
                now,
                self.reason,
            ),
        )
        db.execute(
            "UPDATE inbox SET done_at = ?, outcome = ?, payload = NULL WHERE seq = ?",
            (now, self.outcome, seq),
        )
        return True


InboundOutcome = tuple[str, str, str | None]
"""``(msg_id, outcome, reason)`` of one finished inbound message."""


def _outcomes(values: Iterable[InboundOutcome]) -> tuple[InboundOutcome, ...]:
    return tuple(values)


@attrs.frozen
class FinishInbound:
    """Handlers finished: mark each message done and enqueue the replies they produced.

    One operation, so "done" and "its reply is durable" are never split by a crash. Returns
    the reply ids that were new (see :class:`Enqueue`).
    """

    outcomes: tuple[InboundOutcome, ...] = attrs.field(converter=_outcomes)
    replies: tuple[OutboxEntry, ...] = attrs.field(
        default=(), converter=_entries, validator=_all_entries
    )

    def apply(self, db: sqlite3.Connection, now: float) -> list[str]:
        # Audit first (it reads the rows still unfinished), then mark them done.
        db.executemany(
            "INSERT INTO audit (direction, msg_id, peer_node, method, outcome, attempts,"
            " payload, created_at, recorded_at, reason) SELECT 'in', msg_id, from_node, method,"
            f" ?, NULL, {AUDITED_PAYLOAD}, received_at, ?, ? FROM inbox"
            " WHERE msg_id = ? AND done_at IS NULL",
            [(outcome, now, reason, msg_id) for msg_id, outcome, reason in self.outcomes],
        )
        db.executemany(
            "UPDATE inbox SET done_at = ?, outcome = ?, payload = NULL"
            " WHERE msg_id = ? AND done_at IS NULL",
            [(now, outcome, msg_id) for msg_id, outcome, _ in self.outcomes],
        )
        return Enqueue(self.replies).apply(db, now) if self.replies else []


@attrs.frozen
class ListUnfinishedInbound:
    """Inbound messages accepted but never reported done (a crash cut their handler short)."""

    limit: int | None = attrs.field(default=None, validator=_optional_limit)

    def apply(self, db: sqlite3.Connection, now: float) -> list[InboundRow]:
        sql = (
            "SELECT seq, msg_id, from_node, method, payload, received_at FROM inbox"
            " WHERE done_at IS NULL ORDER BY seq"
        )
        params: list[object] = []
        if self.limit is not None:
            sql += " LIMIT ?"
            params.append(self.limit)
        return [
            InboundRow(
                seq=int(seq),
                msg_id=str(msg_id),
                from_node=str(from_node),
                method=str(method),
                payload=bytes(payload),
                received_at=float(received_at),
            )
            for seq, msg_id, from_node, method, payload, received_at in db.execute(sql, params)
        ]


@attrs.frozen
class PruneDedupe:
    """Forget inbound ids received before ``cutoff`` (wall time); returns how many.

    Unfinished ones go too: past the window a handler that never finished is not coming back.
    """

    cutoff: float = attrs.field(converter=float, validator=_finite)

    def apply(self, db: sqlite3.Connection, now: float) -> int:
        return db.execute("DELETE FROM inbox WHERE received_at < ?", (self.cutoff,)).rowcount


@attrs.frozen
class PruneHeld:
    """Remove failed and cancelled messages last changed before ``cutoff`` (wall time);
    returns how many. Their audit records (written when they failed or were cancelled)
    stay, so a resubmission of the same id is still recognised while those last."""

    cutoff: float = attrs.field(converter=float, validator=_finite)

    def apply(self, db: sqlite3.Connection, now: float) -> int:
        return db.execute(
            "DELETE FROM outbox WHERE state IN ('failed', 'cancelled') AND updated_at < ?",
            (self.cutoff,),
        ).rowcount


@attrs.frozen
class PruneAudit:
    """Delete audit records written before ``cutoff`` (wall time); returns how many."""

    cutoff: float = attrs.field(converter=float, validator=_finite)

    def apply(self, db: sqlite3.Connection, now: float) -> int:
        return db.execute("DELETE FROM audit WHERE recorded_at < ?", (self.cutoff,)).rowcount


@attrs.frozen
class ReadAudit:
    """Audit records in the order written, optionally for one message id; paged by seq."""

    msg_id: str | None = attrs.field(default=None, validator=_optional_non_empty_str)
    limit: int | None = attrs.field(default=None, validator=_optional_limit)
    after_seq: int = attrs.field(default=0, validator=attrs.validators.instance_of(int))

    def apply(self, db: sqlite3.Connection, now: float) -> list[AuditRecord]:
        sql = f"SELECT {_AUDIT_COLUMNS} FROM audit WHERE seq > ?"
        params: list[object] = [self.after_seq]
        if self.msg_id is not None:
            sql += " AND msg_id = ?"
            params.append(self.msg_id)
        sql += " ORDER BY seq"
        if self.limit is not None:
            sql += " LIMIT ?"
            params.append(self.limit)
        return [_audit_record(row) for row in db.execute(sql, params)]
