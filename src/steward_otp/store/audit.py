"""The audit log: what is kept of a finished message, and reading and pruning the log.

Every outbound message that finishes (delivered, failed, cancelled, purged) and every inbound
message whose handler finished gets one record, written in the same transaction as the change
that finished it (:mod:`.outbox_operations`, :mod:`.inbox_operations`), with its payload
whenever that is at most :data:`AUDIT_PAYLOAD_LIMIT` bytes.
"""

from __future__ import annotations

import sqlite3

import attrs

from steward_otp.store.fields import finite, optional_limit, optional_non_empty_str
from steward_otp.store.records import AuditRecord, Direction
from steward_otp.store.sql import Row

AUDIT_PAYLOAD_LIMIT = 64 * 1024
"""Largest payload (bytes) the audit log keeps. Bigger messages (file-copy chunks, large
outputs) are audited with their metadata only, so the audit log does not grow by the size
of every file copied; everything smaller is kept whole, enough to recreate the message."""

AUDITED_PAYLOAD = f"CASE WHEN length(payload) <= {AUDIT_PAYLOAD_LIMIT} THEN payload END"


_AUDIT_COLUMNS = (
    "seq, direction, msg_id, peer_node, method, outcome, attempts, "
    "payload, created_at, recorded_at, reason"
)


def _audit_record(row: Row) -> AuditRecord:
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


@attrs.frozen
class PruneAudit:
    """Delete audit records written before ``cutoff`` (wall time); returns how many."""

    cutoff: float = attrs.field(converter=float, validator=finite)

    def apply(self, db: sqlite3.Connection, now: float) -> int:
        return db.execute("DELETE FROM audit WHERE recorded_at < ?", (self.cutoff,)).rowcount


@attrs.frozen
class ReadAudit:
    """Audit records in the order written, optionally for one message id; paged by seq."""

    msg_id: str | None = attrs.field(default=None, validator=optional_non_empty_str)
    limit: int | None = attrs.field(default=None, validator=optional_limit)
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
