"""Reading the outbox: held messages listed, counted per state and per destination.

These operations change nothing. Like every operation they run inside a batch's transaction,
so they see every change committed before them and those of the batch's earlier operations.
"""

from __future__ import annotations

import sqlite3

import attrs

from steward_otp.store.fields import all_non_empty, id_tuple, optional_limit, optional_non_empty_str
from steward_otp.store.records import OutboxRow, OutboxState, optional_outbox_states
from steward_otp.store.sql import Row, chunks, placeholders

_OUTBOX_COLUMNS = (
    "seq, msg_id, to_node, method, payload, state, attempts, "
    "created_at, not_before, updated_at, reason"
)


def _outbox_row(row: Row) -> OutboxRow:
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


@attrs.frozen
class ListOutbox:
    """Held messages, oldest accepted first (by ``seq``), optionally filtered; paged by seq."""

    to_node: str | None = attrs.field(default=None, validator=optional_non_empty_str)
    states: frozenset[OutboxState] | None = attrs.field(
        default=None, converter=optional_outbox_states
    )
    limit: int | None = attrs.field(default=None, validator=optional_limit)
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
            clauses.append(f"state IN ({placeholders(len(self.states))})")
            params.extend(sorted(str(s) for s in self.states))
        sql = f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE {' AND '.join(clauses)} ORDER BY seq"
        if self.limit is not None:
            sql += " LIMIT ?"
            params.append(self.limit)
        return [_outbox_row(row) for row in db.execute(sql, params)]


@attrs.frozen
class CountOutbox:
    """Number of held messages per state (every state present, zero if none)."""

    to_node: str | None = attrs.field(default=None, validator=optional_non_empty_str)

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
class ActiveIds:
    """The ids of the messages still to deliver (queued or in flight), oldest accepted
    first: what the Router's sweep compares with what its Publishers hold, without reading
    a payload (an index search, then a sort of the ids)."""

    def apply(self, db: sqlite3.Connection, now: float) -> list[str]:
        rows = db.execute(
            "SELECT msg_id FROM outbox WHERE state IN ('queued', 'in_flight') ORDER BY seq"
        )
        return [str(msg_id) for (msg_id,) in rows]


@attrs.frozen
class ActiveRows:
    """The rows of those of ``msg_ids`` still to deliver (queued or in flight), oldest
    accepted first."""

    msg_ids: tuple[str, ...] = attrs.field(converter=id_tuple, validator=all_non_empty)

    def apply(self, db: sqlite3.Connection, now: float) -> list[OutboxRow]:
        rows: list[OutboxRow] = []
        for chunk in chunks(self.msg_ids):
            rows += map(
                _outbox_row,
                db.execute(
                    f"SELECT {_OUTBOX_COLUMNS} FROM outbox"
                    f" WHERE msg_id IN ({placeholders(len(chunk))})"
                    " AND +state IN ('queued', 'in_flight')",
                    chunk,
                ),
            )
        rows.sort(key=lambda row: row.seq)
        return rows


@attrs.frozen
class QueueDepths:
    """Number of active (queued or in flight) messages per destination node."""

    def apply(self, db: sqlite3.Connection, now: float) -> dict[str, int]:
        rows = db.execute(
            "SELECT to_node, count(*) FROM outbox WHERE state IN ('queued', 'in_flight')"
            " GROUP BY to_node ORDER BY to_node"
        )
        return {str(node): int(count) for node, count in rows}


@attrs.frozen
class ActiveAmong:
    """Those of ``msg_ids`` still to deliver (queued or in flight), in order: not delivered,
    failed, cancelled or purged."""

    msg_ids: tuple[str, ...] = attrs.field(converter=id_tuple, validator=all_non_empty)

    def apply(self, db: sqlite3.Connection, now: float) -> list[str]:
        active: set[str] = set()
        for chunk in chunks(self.msg_ids):
            active.update(
                row[0]
                for row in db.execute(
                    f"SELECT msg_id FROM outbox WHERE msg_id IN ({placeholders(len(chunk))})"
                    " AND +state IN ('queued', 'in_flight')",
                    chunk,
                )
            )
        return [i for i in self.msg_ids if i in active]
