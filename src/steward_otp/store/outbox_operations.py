"""Changing the outbox: enqueueing, the delivery transitions, operator actions and retention.

A message is ``queued`` when accepted, ``in_flight`` while a publisher delivers it, and
``failed`` or ``cancelled`` (held for an operator) when it ends undelivered; a delivered or
purged message leaves the table. Every such end is written to the audit log in the same
transaction (:mod:`.audit`). Enqueueing is idempotent on ``msg_id``, and a transition that no
longer applies to a message returns False (or leaves its id out of the result).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

import attrs

from steward_otp.store.audit import AUDITED_PAYLOAD
from steward_otp.store.fields import (
    all_non_empty,
    finite,
    id_tuple,
    non_empty_str,
    non_negative,
    optional_finite,
    optional_float,
    optional_non_empty_str,
)
from steward_otp.store.records import (
    ACTIVE_STATES,
    DEFAULT_PURGE_STATES,
    AuditOutcome,
    OutboxEntry,
    OutboxState,
    all_outbox_entries,
    outbox_entries,
    outbox_states,
)
from steward_otp.store.sql import chunks, placeholders
from steward_otp.store.withdrawals import Withdrawals


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
        where += f" AND state IN ({placeholders(len(allowed))})"
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


@attrs.frozen
class Enqueue:
    """Add entries as ``queued``; returns the ids that were new, in the order given.

    An id already in the outbox, or already in the audit log as an outbound message (within
    the audit retention), is ignored: enqueueing is idempotent on ``msg_id``.
    """

    entries: tuple[OutboxEntry, ...] = attrs.field(
        converter=outbox_entries, validator=all_outbox_entries
    )

    def apply(self, db: sqlite3.Connection, now: float) -> list[str]:
        known: set[str] = set()
        for chunk in chunks(entry.msg_id for entry in self.entries):
            marks = placeholders(len(chunk))
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

    msg_id: str = attrs.field(validator=non_empty_str)

    def apply(self, db: sqlite3.Connection, now: float) -> bool:
        cursor = db.execute(
            "UPDATE outbox SET state = 'in_flight', updated_at = ?"
            " WHERE msg_id = ? AND state IN ('queued', 'in_flight')",
            (now, self.msg_id),
        )
        return cursor.rowcount == 1


def _update_active(
    db: sqlite3.Connection, assignment: str, msg_ids: tuple[str, ...], now: float
) -> list[str]:
    """Apply ``assignment`` to the active ones of ``msg_ids``; returns those, in order."""
    active: set[str] = set()
    for chunk in chunks(msg_ids):
        active.update(
            row[0]
            for row in db.execute(
                f"UPDATE outbox SET {assignment}, updated_at = ?"
                f" WHERE msg_id IN ({placeholders(len(chunk))})"
                " AND +state IN ('queued', 'in_flight') RETURNING msg_id",
                (now, *chunk),
            )
        )
    return [i for i in msg_ids if i in active]


@attrs.frozen
class MarkInFlightMany:
    """:class:`MarkInFlight` for several ids; returns those that are active (in order)."""

    msg_ids: tuple[str, ...] = attrs.field(converter=id_tuple, validator=all_non_empty)

    def apply(self, db: sqlite3.Connection, now: float) -> list[str]:
        return _update_active(db, "state = 'in_flight'", self.msg_ids, now)


@attrs.frozen
class RecordAttempts:
    """:class:`RecordAttempt` for several ids; returns those still active (in order)."""

    msg_ids: tuple[str, ...] = attrs.field(converter=id_tuple, validator=all_non_empty)

    def apply(self, db: sqlite3.Connection, now: float) -> list[str]:
        return _update_active(db, "attempts = attempts + 1", self.msg_ids, now)


@attrs.frozen
class MarkDeliveredMany:
    """:class:`MarkDelivered` for several ids; returns those that were in the outbox."""

    msg_ids: tuple[str, ...] = attrs.field(converter=id_tuple, validator=all_non_empty)

    def apply(self, db: sqlite3.Connection, now: float) -> list[str]:
        finished: set[str] = set()
        for chunk in chunks(dict.fromkeys(self.msg_ids)):
            marks = placeholders(len(chunk))
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

    msg_id: str = attrs.field(validator=non_empty_str)
    not_before: float | None = attrs.field(
        default=None, converter=optional_float, validator=optional_finite
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

    msg_id: str = attrs.field(validator=non_empty_str)

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

    msg_id: str = attrs.field(validator=non_empty_str)
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

    msg_id: str = attrs.field(validator=non_empty_str)
    reason: str = attrs.field(
        default="cancelled by operator", validator=attrs.validators.instance_of(str)
    )
    withdrawals: Withdrawals | None = attrs.field(default=None, eq=False, repr=False, kw_only=True)
    """Told of the cancel before the change commits (see :mod:`.withdrawals`)."""

    def apply(self, db: sqlite3.Connection, now: float) -> bool:
        cancelled = _finish(
            db,
            self.msg_id,
            allowed=ACTIVE_STATES,
            outcome=AuditOutcome.CANCELLED,
            now=now,
            reason=self.reason,
            keep_as=OutboxState.CANCELLED,
        )
        if cancelled and self.withdrawals is not None:
            self.withdrawals.note()
        return cancelled


@attrs.frozen
class Retry:
    """``failed``/``cancelled`` -> ``queued`` with attempts reset; False otherwise.

    The message keeps its ``seq``, so it sorts by its original acceptance among pending ones;
    ``not_before`` defaults to the batch's wall time (deliver at once).
    """

    msg_id: str = attrs.field(validator=non_empty_str)
    not_before: float | None = attrs.field(
        default=None, converter=optional_float, validator=optional_finite
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
    states = outbox_states(values)
    if not states:
        raise ValueError("purge needs at least one state to purge")
    return states


@attrs.frozen
class Purge:
    """Remove held messages matching every given filter, auditing each as purged.

    Filters: destination ``to_node``, age (``created_at`` at least ``older_than_seconds``
    before the batch's wall time) and ``states``. Returns how many were removed.
    """

    to_node: str | None = attrs.field(default=None, validator=optional_non_empty_str)
    older_than_seconds: float | None = attrs.field(
        default=None,
        converter=optional_float,
        validator=attrs.validators.optional(non_negative),
    )
    states: frozenset[OutboxState] = attrs.field(
        default=DEFAULT_PURGE_STATES, converter=_purge_states
    )
    withdrawals: Withdrawals | None = attrs.field(default=None, eq=False, repr=False, kw_only=True)
    """Told when active messages are removed, before the change commits (see
    :mod:`.withdrawals`)."""

    def _where(self, now: float) -> tuple[str, list[object]]:
        clauses = [f"state IN ({placeholders(len(self.states))})"]
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
        active = {str(state) for state in ACTIVE_STATES}
        removed, withdrew = 0, False
        for (state,) in db.execute(f"DELETE FROM outbox WHERE {where} RETURNING state", params):
            removed += 1
            withdrew = withdrew or state in active
        if withdrew and self.withdrawals is not None:
            self.withdrawals.note()
        return removed


@attrs.frozen
class RecoverInFlight:
    """At open: ``in_flight`` -> ``queued`` (a crash interrupted them); returns how many."""

    def apply(self, db: sqlite3.Connection, now: float) -> int:
        return db.execute(
            "UPDATE outbox SET state = 'queued', updated_at = ? WHERE state = 'in_flight'",
            (now,),
        ).rowcount


@attrs.frozen
class PruneHeld:
    """Remove failed and cancelled messages last changed before ``cutoff`` (wall time);
    returns how many. Their audit records (written when they failed or were cancelled)
    stay, so a resubmission of the same id is still recognised while those last."""

    cutoff: float = attrs.field(converter=float, validator=finite)

    def apply(self, db: sqlite3.Connection, now: float) -> int:
        return db.execute(
            "DELETE FROM outbox WHERE state IN ('failed', 'cancelled') AND updated_at < ?",
            (self.cutoff,),
        ).rowcount
