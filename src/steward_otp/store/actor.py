"""The store actor: durable outbox, inbox de-duplication and audit log in one SQLite file.

"Durable before acknowledged" lives here. Every public coroutine of :class:`Store` returns
only after its change is committed to ``<db_folder>/steward.db`` (WAL journal, ``synchronous``
FULL by default), so an ``enqueue`` that returned survives ``kill -9`` and, in FULL mode, a
power cut.

One process owns the file: :meth:`Store.run`, a supervised Trio task. Callers in any task send
requests through a bounded memory channel; the actor drains everything waiting (up to
``batch_max``), applies it in ONE transaction in ONE crossing into a worker thread, commits
once and then wakes every caller. N concurrent writers cost one fsync, not N (group commit).
The SQL itself is the sans-IO core in :mod:`steward_otp.store.schema`.

Cancellation: a caller cancelled while waiting for its reply may have its change committed
anyway (it was already in the batch). A caller cancelled while still blocked on a full mailbox
has submitted nothing. Repeating an operation whose outcome is unknown is safe: ``enqueue``
is idempotent on ``msg_id`` and transitions return False once applied -- except
``record_attempt``, which counts again (an extra attempt in the count, nothing worse).

Trouble with the file:

* **Disk full** -- a batch that fails with SQLITE_FULL fails its callers with
  :class:`StoreFull` ("disk full", nothing written) and the store keeps serving: inputs
  answer "not accepted: disk full" and the node keeps running; writes succeed again once
  there is room.
* **Damage** -- an empty file, one that is not a database, or one SQLite reports damaged
  raises :class:`StoreDamaged` (the file is marked, see
  :func:`~steward_otp.store.schema.mark_damaged`); :func:`check_store_file`, run before a
  node starts, turns it into :class:`StoreUnusable`, which stops the start with a message
  saying what to do (``steward-otp store check`` / ``store repair``).

Retention: inbound ids are forgotten after ``dedupe_window``, audit records after
``audit_retention``, failed and cancelled messages leave the outbox after
``held_retention``; all pruned at open and every ``maintenance_interval`` seconds.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar, cast

import attrs
import trio

from steward_otp.config import ConfigError
from steward_otp.store.schema import (
    ACTIVE_STATES,
    DEFAULT_PURGE_STATES,
    AcceptInbound,
    AcceptInboundMany,
    AuditOutcome,
    AuditRecord,
    Cancel,
    CountOutbox,
    Direction,
    Enqueue,
    FinishInbound,
    InboundOutcome,
    InboundRecord,
    InboundRow,
    ListOutbox,
    ListUnfinishedInbound,
    MarkDelivered,
    MarkDeliveredMany,
    MarkFailed,
    MarkInboundDone,
    MarkInFlight,
    MarkInFlightMany,
    Operation,
    OperationFailed,
    OutboxEntry,
    OutboxRow,
    OutboxState,
    PruneAudit,
    PruneDedupe,
    PruneHeld,
    Purge,
    QueueDepths,
    ReadAudit,
    RecordAttempt,
    RecordAttempts,
    RecoverInFlight,
    Retry,
    StoreDamaged,
    StoreError,
    StoreFull,
    Synchronous,
    apply_batch,
    damaged_error,
    is_damage,
    is_disk_full,
    mark_damaged,
    open_database,
)

__all__ = [
    "ACTIVE_STATES",
    "DB_FILE_NAME",
    "DEFAULT_PURGE_STATES",
    "AuditOutcome",
    "AuditRecord",
    "Direction",
    "InboundRow",
    "OutboxEntry",
    "OutboxRow",
    "OutboxState",
    "Store",
    "StoreDamaged",
    "StoreError",
    "StoreFull",
    "StoreStats",
    "StoreUnusable",
    "Synchronous",
    "check_store_file",
    "store_path",
]

DB_FILE_NAME = "steward.db"
"""File name of the store inside the configured database folder."""


def store_path(db_folder: str | Path) -> Path:
    """Where a node keeps its store: ``<db_folder>/steward.db``."""
    return Path(db_folder) / DB_FILE_NAME


# The name the store logged under before it became a package: log configuration and log
# readers keep working.
log = logging.getLogger("steward_otp.store")

_DAY = 24 * 3600.0


class StoreUnusable(ConfigError):
    """The node cannot start on its store file (empty, not a database, damaged); the text
    says which file and what to do. A ConfigError: the daemon exits with status 2, which
    service managers do not retry (retrying cannot help until an operator acts)."""


def check_store_file(path: str | Path, *, home: Path | None = None) -> None:
    """Before a node starts: open the store at ``path`` (creating it when missing) and close
    it again. Raises :class:`StoreUnusable` when it is empty, not a database or damaged;
    other trouble (e.g. the file is in use) is left for the store process to report.
    ``home`` is put into the suggested commands."""
    try:
        open_database(path, lock_timeout=0.5).close()
    except StoreDamaged as exc:
        text = str(exc)
        if home is not None:
            text = text.replace("--home <home>", f"--home {home}")
        raise StoreUnusable(text) from None
    except StoreError:
        return


T = TypeVar("T")


@attrs.frozen
class StoreStats:
    """Counters of a store since it was constructed (all runs), for metrics and tests."""

    commits: int
    """Transactions committed: with group commit, far fewer than ``operations``."""
    operations: int
    """Requests answered from committed batches."""
    largest_batch: int
    """Most requests committed together in one transaction."""
    recovered_in_flight: int
    """Messages found ``in_flight`` (and re-queued) at the last open."""
    disk_full: int = 0
    """Batches refused because the disk (or the database's size limit) was full."""


class _Request:
    """A caller's operation waiting in the actor's mailbox, and the slot for its answer."""

    __slots__ = ("done", "error", "operation", "value")

    def __init__(self, operation: Operation[object]) -> None:
        self.operation = operation
        self.done = trio.Event()
        self.value: object = None
        self.error: StoreError | None = None

    def complete(self, result: object) -> None:
        if isinstance(result, OperationFailed):
            error = StoreError(f"{result.operation} was refused by the store: {result.error}")
            error.__cause__ = result.error
            self.fail(error)
        else:
            self.value = result
            self.done.set()

    def fail(self, error: StoreError) -> None:
        self.error = error
        self.done.set()


class Store:
    """The durable outbox, inbound dedupe set and audit log of one node.

    Construct it with the database file path (usually ``<db_folder>/steward.db``, see
    :func:`store_path`), run :meth:`run` as a supervised task, then call the coroutines below
    from any task. Each returns after its change is committed; a store that is not running,
    or that stopped while the call waited, raises :class:`StoreError` (in the latter case the
    change may or may not be committed; see the module docstring on repeating it).

    ``synchronous`` is SQLite's: ``"FULL"`` (default) fsyncs the WAL at every commit, so an
    acknowledged write survives a power cut; ``"NORMAL"`` survives a process crash only.
    ``dedupe_window`` (seconds, default 7 days) is how long inbound ids are remembered;
    ``audit_retention`` (default 30 days, ``None`` = forever) is how long audit records are
    kept; ``held_retention`` (default 7 days, ``None`` = forever) is how long failed and
    cancelled messages stay in the outbox after their last change; all are pruned at open
    and every ``maintenance_interval`` seconds. At most
    ``batch_max`` requests share one transaction; ``mailbox_size`` bounds the requests waiting
    for the actor (callers wait for room: back-pressure). ``lock_timeout`` is how long
    :meth:`run` waits for a previous owner of the file (a daemon still exiting) to let go.
    ``clock`` gives wall time (``time.time``) and is replaceable in tests.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: Synchronous = "FULL",
        dedupe_window: float = 7 * _DAY,
        audit_retention: float | None = 30 * _DAY,
        held_retention: float | None = 7 * _DAY,
        maintenance_interval: float = 60.0,
        batch_max: int = 1000,
        mailbox_size: int = 4096,
        lock_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be 'FULL' or 'NORMAL', got {synchronous!r}")
        for name, value in (
            ("dedupe_window", dedupe_window),
            ("maintenance_interval", maintenance_interval),
        ):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        for name, optional in (
            ("audit_retention", audit_retention),
            ("held_retention", held_retention),
        ):
            if optional is not None and not (math.isfinite(optional) and optional > 0):
                raise ValueError(
                    f"{name} must be a positive number of seconds or None, got {optional!r}"
                )
        if batch_max < 1 or mailbox_size < 1:
            raise ValueError(
                f"batch_max and mailbox_size must be >= 1, got {batch_max!r}, {mailbox_size!r}"
            )
        self._path = Path(path)
        self._synchronous: Synchronous = synchronous
        self._dedupe_window = float(dedupe_window)
        self._audit_retention = None if audit_retention is None else float(audit_retention)
        self._held_retention = None if held_retention is None else float(held_retention)
        self._maintenance_interval = float(maintenance_interval)
        self._batch_max = batch_max
        self._mailbox_size = mailbox_size
        self._lock_timeout = lock_timeout
        self._clock = clock
        self._owner_active = False
        self._send: trio.MemorySendChannel[_Request] | None = None
        self._commits = 0
        self._operations = 0
        self._largest_batch = 0
        self._recovered_in_flight = 0
        self._disk_full = 0

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    @property
    def running(self) -> bool:
        """True between :meth:`run` reporting started and the actor stopping."""
        return self._send is not None

    def stats(self) -> StoreStats:
        """A snapshot of the commit counters (no I/O, works whether running or not)."""
        return StoreStats(
            commits=self._commits,
            operations=self._operations,
            largest_batch=self._largest_batch,
            recovered_in_flight=self._recovered_in_flight,
            disk_full=self._disk_full,
        )

    # ----------------------------------------------------------------------------------------
    # The actor
    # ----------------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The store process: open the file, recover, serve requests until cancelled.

        Reports started once the schema is ready, ``in_flight`` messages are back to
        ``queued`` and the retention prunes ran, so :meth:`pending` is the full recovery
        list. Runs until cancelled. A failing write fails every request of its batch and then
        this coroutine with :class:`StoreError` (let it crash: the supervisor restarts it, and
        the next run reopens the same file). On exit, every request still waiting fails with
        :class:`StoreError` and the file's lock is released. Only one run at a time.
        """
        if self._owner_active:
            raise StoreError(f"the store on {self._path} is already running")
        self._owner_active = True
        try:
            # One token: the connection is used by one worker thread at a time, which is what
            # makes check_same_thread=False (see open_database) safe.
            limiter = trio.CapacityLimiter(1)
            db = await trio.to_thread.run_sync(self._open, limiter=limiter)
            try:
                await self._serve_opened(db, limiter, task_status)
            finally:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(db.close, limiter=limiter)
        finally:
            self._owner_active = False

    def _open(self) -> sqlite3.Connection:
        db = open_database(
            self._path, synchronous=self._synchronous, lock_timeout=self._lock_timeout
        )
        now = self._clock()
        try:
            results = apply_batch(db, [RecoverInFlight(), *self._prunes(now)], now)
        except sqlite3.Error as exc:
            if is_disk_full(exc):
                # In-flight messages are still pending (and sent) as they are; retention
                # waits for the next maintenance. A full disk must not stop the store.
                self._disk_full += 1
                log.warning("%s: disk full at open; recovery and pruning postponed", self._path)
                self._recovered_in_flight = 0
                return db
            db.close()
            if is_damage(exc):
                mark_damaged(self._path, exc)
                raise damaged_error(self._path, f"is damaged (SQLite: {exc})") from exc
            raise StoreError(f"recovery of {self._path} failed: {exc}") from exc
        except BaseException:
            db.close()
            raise
        self._recovered_in_flight = cast(int, results[0])
        return db

    def _prunes(self, now: float) -> list[Operation[object]]:
        prunes: list[Operation[object]] = [PruneDedupe(now - self._dedupe_window)]
        if self._audit_retention is not None:
            prunes.append(PruneAudit(now - self._audit_retention))
        if self._held_retention is not None:
            prunes.append(PruneHeld(now - self._held_retention))
        return prunes

    async def _serve_opened(
        self,
        db: sqlite3.Connection,
        limiter: trio.CapacityLimiter,
        task_status: trio.TaskStatus[None],
    ) -> None:
        send, receive = trio.open_memory_channel[_Request](self._mailbox_size)
        self._send = send
        try:
            task_status.started()
            await self._serve(db, limiter, receive)
        finally:
            # No checkpoint from here to close(): no caller can slip a request in between.
            # Draining also takes the requests of callers blocked on a full mailbox.
            self._send = None
            while True:
                try:
                    request = receive.receive_nowait()
                except trio.WouldBlock:
                    break
                request.fail(StoreError(f"the store on {self._path} stopped; nothing was written"))
            receive.close()
            send.close()

    async def _serve(
        self,
        db: sqlite3.Connection,
        limiter: trio.CapacityLimiter,
        receive: trio.MemoryReceiveChannel[_Request],
    ) -> None:
        next_maintenance = trio.current_time() + self._maintenance_interval
        while True:
            batch: list[_Request] = []
            with trio.move_on_at(next_maintenance):
                batch.append(await receive.receive())
            while len(batch) < self._batch_max:
                try:
                    batch.append(receive.receive_nowait())
                except trio.WouldBlock:
                    break
            now = self._clock()
            operations = [request.operation for request in batch]
            if trio.current_time() >= next_maintenance:
                # Retention prunes ride along with whatever batch is due: no extra commit.
                operations += self._prunes(now)
                next_maintenance = trio.current_time() + self._maintenance_interval
            try:
                # Not abandoned on cancel: once the thread runs, the batch commits or rolls
                # back before we look at cancellation, and its callers hear which.
                results = await trio.to_thread.run_sync(
                    apply_batch, db, operations, now, limiter=limiter
                )
            except BaseException as exc:
                if isinstance(exc, sqlite3.Error) and is_disk_full(exc):
                    # Nothing of the batch was written, and the connection is still good:
                    # refuse these requests and go on serving (deletes may free room).
                    self._disk_full += 1
                    for request in batch:
                        request.fail(
                            StoreFull(
                                f"disk full: the store {self._path} cannot grow (SQLite: "
                                f"{exc}); nothing was written. Free space on its file system"
                            )
                        )
                    continue
                for request in batch:
                    request.fail(
                        StoreError(
                            f"the store on {self._path} stopped or failed before committing "
                            f"this request: {exc!r}"
                        )
                    )
                if isinstance(exc, sqlite3.Error):
                    if is_damage(exc):
                        mark_damaged(self._path, exc)
                        raise damaged_error(self._path, f"is damaged (SQLite: {exc})") from exc
                    raise StoreError(f"write to {self._path} failed: {exc}") from exc
                raise
            self._commits += 1
            self._operations += len(batch)
            self._largest_batch = max(self._largest_batch, len(batch))
            for request, result in zip(batch, results, strict=False):
                request.complete(result)
            for result in results[len(batch) :]:
                if isinstance(result, OperationFailed):
                    raise StoreError(
                        f"retention prune on {self._path} failed: {result.error}"
                    ) from result.error

    async def _call(self, operation: Operation[T]) -> T:
        send = self._send
        if send is None:
            raise StoreError(
                f"the store on {self._path} is not running; start Store.run() in the "
                "supervision tree before using it"
            )
        request = _Request(operation)
        try:
            await send.send(request)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise StoreError(f"the store on {self._path} stopped; nothing was written") from None
        await request.done.wait()
        if request.error is not None:
            raise request.error
        return cast(T, request.value)

    # ----------------------------------------------------------------------------------------
    # Outbox
    # ----------------------------------------------------------------------------------------

    async def enqueue(self, entries: Sequence[OutboxEntry]) -> list[str]:
        """Store ``entries`` as ``queued``; returns the ids that were new, in order.

        When this returns, every entry is on disk. Idempotent on ``msg_id``: an id already
        in the outbox, or audited as an outbound message within ``audit_retention``, is
        ignored (and left out of the result). Raises ``TypeError`` for non-entries before
        anything is submitted.
        """
        return await self._call(Enqueue(tuple(entries)))

    async def mark_in_flight(self, msg_id: str) -> bool:
        """A publisher took the message: ``queued`` -> ``in_flight`` (already in flight: ok).

        False when the message is not active (cancelled, failed, purged, delivered): do not
        send it.
        """
        return await self._call(MarkInFlight(msg_id))

    async def mark_in_flight_many(self, msg_ids: Sequence[str]) -> list[str]:
        """:meth:`mark_in_flight` for several messages in one operation; returns the active ids."""
        return await self._call(MarkInFlightMany(tuple(msg_ids)))

    async def record_attempts(self, msg_ids: Sequence[str]) -> list[str]:
        """:meth:`record_attempt` for several messages in one operation; returns the active ids."""
        return await self._call(RecordAttempts(tuple(msg_ids)))

    async def mark_delivered_many(self, msg_ids: Sequence[str]) -> list[str]:
        """:meth:`mark_delivered` for several messages in one operation.

        Returns the ids that were in the outbox (the others were settled before).
        """
        return await self._call(MarkDeliveredMany(tuple(msg_ids)))

    async def record_attempt(self, msg_id: str, *, not_before: float | None = None) -> bool:
        """Count one delivery attempt; optionally set the next ``not_before`` (retryWait).

        The count survives restarts. False when the message is no longer active (an operator
        cancelled or purged it): the publisher should stop delivering it.
        """
        return await self._call(RecordAttempt(msg_id, not_before))

    async def mark_delivered(self, msg_id: str) -> bool:
        """The destination ACKed: remove the message and audit it as delivered.

        Applies in any state (an ACK is a fact, even for a message cancelled meanwhile).
        False when the message is not in the outbox.
        """
        return await self._call(MarkDelivered(msg_id))

    async def mark_failed(self, msg_id: str, reason: str) -> bool:
        """Retries ran out: active -> ``failed``, held for an operator, audited with ``reason``.

        False when the message is not active.
        """
        return await self._call(MarkFailed(msg_id, reason))

    async def cancel(self, msg_id: str, reason: str = "cancelled by operator") -> bool:
        """Operator cancel: active -> ``cancelled`` (held, audited); False if not active.

        A publisher holding the message learns it at its next :meth:`record_attempt` or
        :meth:`mark_in_flight`, which return False.
        """
        return await self._call(Cancel(msg_id, reason))

    async def retry(self, msg_id: str, *, not_before: float | None = None) -> bool:
        """Re-queue a ``failed`` or ``cancelled`` message with attempts reset to 0.

        It keeps its place in acceptance order (its ``seq``). False in any other state.
        Whoever routes messages must be told to pick it up (e.g. re-read :meth:`pending`).
        """
        return await self._call(Retry(msg_id, not_before))

    async def purge(
        self,
        *,
        to_node: str | None = None,
        older_than_seconds: float | None = None,
        states: Iterable[OutboxState | str] = DEFAULT_PURGE_STATES,
    ) -> int:
        """Remove held messages matching all given filters, auditing each as ``purged``.

        ``to_node``: destination; ``older_than_seconds``: created at least that long ago;
        ``states``: by default queued, failed and cancelled -- ``in_flight`` only when asked,
        since a publisher is working on those (its later calls then return False). With no
        filters, every message in those states goes. Returns how many were removed.
        """
        return await self._call(Purge(to_node, older_than_seconds, frozenset(states)))

    async def list_outbox(
        self,
        *,
        to_node: str | None = None,
        states: Iterable[OutboxState | str] | None = None,
        limit: int | None = 1000,
        after_seq: int = 0,
    ) -> list[OutboxRow]:
        """Held messages, oldest accepted first, filtered by destination and state.

        Pages with ``after_seq`` (pass the last row's ``seq``); ``limit=None`` for all.
        Sees every change committed before it.
        """
        return await self._call(
            ListOutbox(to_node, None if states is None else frozenset(states), limit, after_seq)
        )

    async def pending(self, *, limit: int | None = None, after_seq: int = 0) -> list[OutboxRow]:
        """Messages still to deliver (queued or in flight), oldest accepted first.

        Right after :meth:`run` started this is the recovery list: nothing is in flight, and
        the order is acceptance order (``seq``), not wall time.
        """
        return await self._call(ListOutbox(None, ACTIVE_STATES, limit, after_seq))

    async def counts(self, *, to_node: str | None = None) -> dict[OutboxState, int]:
        """Held messages per state (every state present), for one destination or all."""
        return await self._call(CountOutbox(to_node))

    async def queue_depths(self) -> dict[str, int]:
        """Active (queued + in flight) messages per destination node, for nodes with any."""
        return await self._call(QueueDepths())

    # ----------------------------------------------------------------------------------------
    # Inbox (dedupe) and audit
    # ----------------------------------------------------------------------------------------

    async def accept_inbound(
        self, msg_id: str, from_node: str, method: str, payload: bytes
    ) -> bool:
        """Remember an inbound message: True when new, False when already seen.

        When this returns the decision is durable, so the caller may ACK. True: run the
        handler, then :meth:`mark_inbound_done`. False: a retried delivery -- ACK again but
        do not run it. Ids are remembered for ``dedupe_window``.
        """
        return await self._call(AcceptInbound(msg_id, from_node, method, payload))

    async def accept_inbound_many(self, records: Sequence[InboundRecord]) -> list[str]:
        """:meth:`accept_inbound` for a batch in one operation; returns the new ids in order.

        When this returns every record is durable, so the whole batch may be ACKed.
        """
        return await self._call(AcceptInboundMany(tuple(records)))

    async def finish_inbound(
        self, outcomes: Sequence[InboundOutcome], replies: Sequence[OutboxEntry] = ()
    ) -> list[str]:
        """Mark handlers done and make their replies durable in one operation.

        Returns the reply ids that were new. After a crash either both happened or neither:
        a message is never done without its reply, nor replied to twice.
        """
        return await self._call(FinishInbound(tuple(outcomes), tuple(replies)))

    async def mark_inbound_done(self, msg_id: str, outcome: str, reason: str | None = None) -> bool:
        """The handler finished: audit the message with ``outcome`` (e.g. "ok", "error").

        The id stays in the dedupe set. False if unknown (pruned) or already done.
        """
        return await self._call(MarkInboundDone(msg_id, outcome, reason))

    async def unfinished_inbound(self, *, limit: int | None = None) -> list[InboundRow]:
        """Inbound messages accepted (ACKed) whose handler never reported done, oldest first.

        After a crash these were ACKed but maybe not executed; whether to run them again is
        the inbound side's decision (the store never re-runs anything).
        """
        return await self._call(ListUnfinishedInbound(limit))

    async def prune_dedupe(self, now: float | None = None) -> int:
        """Forget inbound ids older than ``dedupe_window`` as of ``now`` (default: clock).

        The actor runs this every ``maintenance_interval``. Returns how many went.
        """
        now = self._clock() if now is None else now
        return await self._call(PruneDedupe(now - self._dedupe_window))

    async def prune_audit(self, now: float | None = None) -> int:
        """Delete audit records older than ``audit_retention`` as of ``now``; 0 if unbounded.

        The actor runs this every ``maintenance_interval``. Returns how many went.
        """
        if self._audit_retention is None:
            return 0
        now = self._clock() if now is None else now
        return await self._call(PruneAudit(now - self._audit_retention))

    async def prune_held(self, now: float | None = None) -> int:
        """Remove failed and cancelled messages unchanged for ``held_retention`` as of
        ``now`` (default: clock); 0 if kept forever. The actor runs this every
        ``maintenance_interval``. Returns how many went."""
        if self._held_retention is None:
            return 0
        now = self._clock() if now is None else now
        return await self._call(PruneHeld(now - self._held_retention))

    async def audit_log(
        self, *, msg_id: str | None = None, limit: int | None = 1000, after_seq: int = 0
    ) -> list[AuditRecord]:
        """Audit records in the order written, for one message or all; paged by ``seq``."""
        return await self._call(ReadAudit(msg_id, limit, after_seq))
