"""The store actor: the one process that owns the SQLite file and commits requests in groups.

One process owns the file: :meth:`StoreActor.run`, a supervised Trio task. Callers in any task
send requests through a bounded memory channel; the actor drains everything waiting (up to
``batch_max``), applies it in ONE transaction in ONE crossing into a worker thread, commits
once and then wakes every caller. N concurrent writers cost one fsync, not N (group commit).
The SQL itself is the sans-IO core: :func:`~steward_otp.store.batches.apply_batch` and the
operations it applies. The public coroutines are those of :class:`~steward_otp.store.api.Store`.

Trouble with the file:

* **Disk full** -- a batch that fails with SQLITE_FULL fails its callers with
  :class:`StoreFull` ("disk full", nothing written) and the store keeps serving: inputs
  answer "not accepted: disk full" and the node keeps running; writes succeed again once
  there is room.
* **Damage** -- an empty file, one that is not a database, or one SQLite reports damaged
  raises :class:`StoreDamaged` (the file is marked, see
  :func:`~steward_otp.store.schema.mark_damaged`);
  :func:`~steward_otp.store.store_file.check_store_file`, run before a node starts, turns it
  into :class:`~steward_otp.store.store_file.StoreUnusable`, which stops the start with a
  message saying what to do (``steward-otp store check`` / ``store repair``).
"""

from __future__ import annotations

import logging
import math
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar, cast

import attrs
import trio

from steward_otp.store.audit import PruneAudit
from steward_otp.store.batches import Operation, OperationFailed, apply_batch
from steward_otp.store.inbox_operations import PruneDedupe
from steward_otp.store.outbox_operations import PruneHeld, RecoverInFlight
from steward_otp.store.schema import (
    StoreError,
    StoreFull,
    Synchronous,
    damaged_error,
    is_damage,
    is_disk_full,
    mark_damaged,
    open_database,
)
from steward_otp.store.withdrawals import Withdrawals

__all__ = ["StoreActor", "StoreStats"]


# The name the store logged under before it became a package: log configuration and log
# readers keep working.
log = logging.getLogger("steward_otp.store")

_DAY = 24 * 3600.0


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


class StoreActor:
    """The process that owns one store file: it opens and recovers the file, then commits the
    requests of every task in groups, one transaction per batch.

    :class:`~steward_otp.store.api.Store` adds one coroutine per operation; its docstring
    describes the constructor's arguments.
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
        self._connection: tuple[sqlite3.Connection, trio.CapacityLimiter] | None = None
        """The open file and the limiter of its one thread, while the actor serves."""
        self._commits = 0
        self._operations = 0
        self._largest_batch = 0
        self._recovered_in_flight = 0
        self._disk_full = 0
        self.withdrawals = Withdrawals()
        """Advanced by every cancel or purge of active messages: how publishers learn not to
        send them (:mod:`steward_otp.store.withdrawals`)."""

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
        self._connection = (db, limiter)
        try:
            task_status.started()
            await self._serve(db, limiter, receive)
        finally:
            # No checkpoint from here to close(): no caller can slip a request in between.
            # Draining also takes the requests of callers blocked on a full mailbox.
            self._send = None
            self._connection = None
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

    async def _query(self, operation: Operation[T]) -> T:
        """Run ``operation``, a query that writes nothing, ahead of the queued writes.

        It takes the file's one thread as soon as the batch being committed is done, before
        the actor's next batch, so it never waits behind the writes queued in the mailbox (a
        burst of messages does not hold up ``status`` or ``queue ls``). It sees every write
        committed before it starts -- every write whose caller has been answered.
        """
        connection = self._connection
        if connection is None:
            raise StoreError(
                f"the store on {self._path} is not running; start Store.run() in the "
                "supervision tree before using it"
            )
        db, limiter = connection

        def query() -> T:
            if self._connection is not connection:
                raise StoreError(f"the store on {self._path} stopped before this read")
            try:
                return operation.apply(db, self._clock())
            except sqlite3.Error as exc:
                raise StoreError(f"reading {self._path} failed: {exc}") from exc

        return await trio.to_thread.run_sync(query, limiter=limiter)

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
