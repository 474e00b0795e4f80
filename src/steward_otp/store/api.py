"""The store's public face: :class:`Store`, one coroutine per operation on the durable
outbox, inbox de-duplication and audit log, all in one SQLite file.

"Durable before acknowledged" lives here. Every public coroutine of :class:`Store` returns
only after its change is committed to ``<db_folder>/steward.db`` (WAL journal, ``synchronous``
FULL by default), so an ``enqueue`` that returned survives ``kill -9`` and, in FULL mode, a
power cut. The commits are made by the actor under it (:mod:`steward_otp.store.actor`).

Cancellation: a caller cancelled while waiting for its reply may have its change committed
anyway (it was already in the batch). A caller cancelled while still blocked on a full mailbox
has submitted nothing. Repeating an operation whose outcome is unknown is safe: ``enqueue``
is idempotent on ``msg_id`` and transitions return False once applied -- except
``record_attempt``, which counts again (an extra attempt in the count, nothing worse).

Retention: inbound ids are forgotten after ``dedupe_window``, audit records after
``audit_retention``, failed and cancelled messages leave the outbox after
``held_retention``; all pruned at open and every ``maintenance_interval`` seconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from steward_otp.store.actor import StoreActor
from steward_otp.store.audit import PruneAudit, ReadAudit
from steward_otp.store.inbox_operations import (
    AcceptInbound,
    AcceptInboundMany,
    FinishInbound,
    InboundOutcome,
    InboundRecord,
    ListUnfinishedInbound,
    MarkInboundDone,
    PruneDedupe,
)
from steward_otp.store.outbox_operations import (
    Cancel,
    Enqueue,
    MarkDelivered,
    MarkDeliveredMany,
    MarkFailed,
    MarkInFlight,
    MarkInFlightMany,
    PruneHeld,
    Purge,
    RecordAttempt,
    RecordAttempts,
    Retry,
)
from steward_otp.store.outbox_queries import (
    ActiveAmong,
    ActiveIds,
    ActiveRows,
    CountOutbox,
    ListOutbox,
    QueueDepths,
)
from steward_otp.store.records import (
    ACTIVE_STATES,
    DEFAULT_PURGE_STATES,
    AuditRecord,
    InboundRow,
    OutboxEntry,
    OutboxRow,
    OutboxState,
)

__all__ = ["Store"]


class Store(StoreActor):
    """The durable outbox, inbound dedupe set and audit log of one node.

    Construct it with the database file path (usually ``<db_folder>/steward.db``, see
    :func:`~steward_otp.store.store_path`), run :meth:`run` as a supervised task, then call
    the coroutines below from any task. Each returns after its change is committed; a store
    that is not running, or that stopped while the call waited, raises
    :class:`~steward_otp.store.StoreError` (in the latter case the change may or may not be
    committed; see the module docstring on repeating it).

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

        A publisher holding the message unsent learns it through :attr:`withdrawals` and
        never sends it; one that sent it already learns it at its next
        :meth:`record_attempt`, which returns False.
        """
        return await self._call(Cancel(msg_id, reason, withdrawals=self.withdrawals))

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
        since a publisher is working on those (its later calls then return False). A queued
        message a publisher holds unsent is never sent (see :attr:`withdrawals`). With no
        filters, every message in those states goes. Returns how many were removed.
        """
        return await self._call(
            Purge(to_node, older_than_seconds, frozenset(states), withdrawals=self.withdrawals)
        )

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
        Sees every change committed before it; does not wait behind queued writes.
        """
        return await self._query(
            ListOutbox(to_node, None if states is None else frozenset(states), limit, after_seq)
        )

    async def pending(self, *, limit: int | None = None, after_seq: int = 0) -> list[OutboxRow]:
        """Messages still to deliver (queued or in flight), oldest accepted first.

        Right after :meth:`run` started this is the recovery list: nothing is in flight, and
        the order is acceptance order (``seq``), not wall time.
        """
        return await self._call(ListOutbox(None, ACTIVE_STATES, limit, after_seq))

    async def pending_ids(self) -> list[str]:
        """The ids of :meth:`pending`'s messages, in its order, read without their payloads
        (the Router's sweep: most of them are held by a Publisher already)."""
        return await self._call(ActiveIds())

    async def pending_rows(self, msg_ids: Sequence[str]) -> list[OutboxRow]:
        """The :meth:`pending` rows of those of ``msg_ids`` still to deliver, oldest
        accepted first."""
        return await self._call(ActiveRows(tuple(msg_ids)))

    async def active_among(self, msg_ids: Sequence[str]) -> list[str]:
        """Those of ``msg_ids`` still to deliver (queued or in flight), in order; sees every
        change committed before it (a cancel, a purge, a delivery)."""
        return await self._query(ActiveAmong(tuple(msg_ids)))

    async def counts(self, *, to_node: str | None = None) -> dict[OutboxState, int]:
        """Held messages per state (every state present), for one destination or all."""
        return await self._query(CountOutbox(to_node))

    async def queue_depths(self) -> dict[str, int]:
        """Active (queued + in flight) messages per destination node, for nodes with any."""
        return await self._query(QueueDepths())

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
        return await self._query(ReadAudit(msg_id, limit, after_seq))
