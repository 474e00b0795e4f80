"""What one watch of the replies stream knows about the messages it follows, fed audit
records and replies: the events they mean, and each message's final state.

A watched id is *settled* once it has a reply, or (for an id whose message asks no reply)
was delivered, or it failed, was cancelled or purged. Guarantees: each reply (by its id) and
each outcome (by its audit record) gives one event at most, however often it is fed; an id
that was not asked for gives none; a reply counts as an error reply when its ``fileName``
ends in ``.error``, as every error reply's does.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import attrs

from steward_otp import codec
from steward_otp.message import ERROR_FILE_SUFFIX, Message
from steward_otp.store import AuditRecord, Direction, OutboxRow

SETTLED_STATES: Final = frozenset({"failed", "cancelled", "purged"})
"""Final outcomes after which no reply can come."""


@attrs.define
class _Watched:
    node: str = ""
    state: str = "unknown"
    replies: int = 0
    errors: int = 0
    attempts: int | None = None
    reason: str | None = None
    delivery_only: bool = False

    @property
    def settled(self) -> bool:
        if self.replies or self.state in SETTLED_STATES:
            return True
        return self.delivery_only and self.state == "delivered"


class Watch:
    """The state of one watch: which ids, what is known about each. Fed audit records."""

    def __init__(self, reply_ids: Iterable[str], delivery_ids: Iterable[str] = ()) -> None:
        self.ids: dict[str, _Watched] = {i: _Watched() for i in reply_ids}
        for msg_id in delivery_ids:
            self.ids.setdefault(msg_id, _Watched()).delivery_only = True
        self._seen_replies: set[str] = set()
        self._seen_outcomes: set[int] = set()

    @property
    def settled(self) -> bool:
        """Whether every watched id is settled (see the module docstring)."""
        return all(w.settled for w in self.ids.values())

    def feed(self, record: AuditRecord) -> dict[str, Any] | None:
        """The event ``record`` means for this watch, or None when it concerns no watched id
        or was seen already (each reply and each outcome is reported once)."""
        if record.direction == Direction.OUTBOUND:
            return self._outcome(record)
        if record.payload is None:
            return None  # larger than the audit keeps; see the module docstring
        try:
            reply = codec.decode(record.payload, codec.RAW_CBOR_HEADERS)
        except codec.DecodeError:
            return None
        return self.reply(reply, record.recorded_at)

    def reply(self, reply: Message, time: float) -> dict[str, Any] | None:
        """The event of ``reply`` (a message that came in at wall time ``time``), or None when
        it answers no watched id or was reported already."""
        request = reply.previous_message
        if request is None or request.id not in self.ids or reply.id in self._seen_replies:
            return None
        self._seen_replies.add(reply.id)
        watched = self.ids[request.id]
        error = reply.file_name.endswith(ERROR_FILE_SUFFIX)
        watched.node = watched.node or request.to_node
        watched.replies += 1
        watched.errors += error
        if watched.state in ("unknown", "queued", "in_flight"):
            watched.state = "delivered"  # a reply came, so the request got there
        return {
            "event": "reply",
            "id": request.id,
            "node": request.to_node,
            "replyId": reply.id,
            "method": reply.method,
            "error": error,
            "output": reply.data.decode("utf-8", errors="replace"),
            "size": len(reply.data),
            "time": time,
        }

    def _outcome(self, record: AuditRecord) -> dict[str, Any] | None:
        watched = self.ids.get(record.msg_id)
        if watched is None or record.seq in self._seen_outcomes:
            return None
        self._seen_outcomes.add(record.seq)
        watched.node = record.peer_node
        watched.attempts = record.attempts
        watched.reason = record.reason
        watched.state = record.outcome
        return {
            "event": "state",
            "id": record.msg_id,
            "node": record.peer_node,
            "state": record.outcome,
            "attempts": record.attempts,
            "reason": record.reason,
        }

    def note_held(self, row: OutboxRow) -> None:
        """What the outbox says about a watched message still held there."""
        watched = self.ids.get(row.msg_id)
        if watched is None:
            return
        watched.node = row.to_node
        watched.attempts = row.attempts
        watched.reason = row.reason
        if not watched.replies:
            watched.state = str(row.state)

    def summary(self) -> list[dict[str, Any]]:
        """One entry per watched id, in the order given: its node, final state and counts."""
        return [
            {
                "id": msg_id,
                "node": w.node,
                "state": "replied" if w.replies else w.state,
                "replies": w.replies,
                "errors": w.errors,
                "attempts": w.attempts,
                "reason": w.reason,
                "expectsReply": not w.delivery_only,
            }
            for msg_id, w in self.ids.items()
        ]
