"""The inbox: de-duplication of inbound messages and the outcomes of their handlers.

An inbound id is accepted once: :class:`AcceptInbound` and :class:`AcceptInboundMany` say
whether it was new, and once that is committed the message may be ACKed. When its handler
finishes the message is audited and its payload dropped; the id stays in the dedupe set until
:class:`PruneDedupe` forgets it. :class:`FinishInbound` makes "done" and "its replies are
queued" one change, never split by a crash.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

import attrs

from steward_otp.store.audit import AUDIT_PAYLOAD_LIMIT, AUDITED_PAYLOAD
from steward_otp.store.fields import finite, non_empty_str, optional_limit
from steward_otp.store.outbox_operations import Enqueue
from steward_otp.store.records import InboundRow, OutboxEntry, all_outbox_entries, outbox_entries
from steward_otp.store.sql import chunks, placeholders


@attrs.frozen
class AcceptInbound:
    """Insert an inbound message id if absent: True when new, False when already seen."""

    msg_id: str = attrs.field(validator=non_empty_str)
    from_node: str = attrs.field(validator=non_empty_str)
    method: str = attrs.field(validator=non_empty_str)
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
        for chunk in chunks(r[0] for r in self.records):
            seen.update(
                row[0]
                for row in db.execute(
                    f"SELECT msg_id FROM inbox WHERE msg_id IN ({placeholders(len(chunk))})",
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

    msg_id: str = attrs.field(validator=non_empty_str)
    outcome: str = attrs.field(validator=non_empty_str)
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
        default=(), converter=outbox_entries, validator=all_outbox_entries
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

    limit: int | None = attrs.field(default=None, validator=optional_limit)

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

    cutoff: float = attrs.field(converter=float, validator=finite)

    def apply(self, db: sqlite3.Connection, now: float) -> int:
        return db.execute("DELETE FROM inbox WHERE received_at < ?", (self.cutoff,)).rowcount
