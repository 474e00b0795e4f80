"""The audit operations: the audit log's position and records, and the replies stream.

``audit.end`` is the newest record's position (remembered per store, so the next search
starts there); ``audit`` finds records by message id, peer, direction and time, reading at
most :data:`AUDIT_SCAN_LIMIT` records per request; ``replies`` streams the replies and
delivery changes of watched messages, following the log from a position
(:func:`steward_otp.replies.follow.follow`).
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from steward_otp import codec
from steward_otp.control.requests import (
    Inspectable,
    RequestError,
    finite_number,
    ids_field,
    seq_field,
    text_field,
)
from steward_otp.replies.follow import DEFAULT_QUIET, checked_seconds, follow
from steward_otp.replies.follow import audit_end as find_audit_end
from steward_otp.replies.send_plan import MAX_QUIET, MAX_WAIT
from steward_otp.store import AuditRecord, Store

_AUDIT_END: weakref.WeakKeyDictionary[Store, int] = weakref.WeakKeyDictionary()
"""Last audit position found per store: the next search starts there."""


async def audit_end(store: Store) -> int:
    """The newest audit record's seq (see :func:`steward_otp.replies.follow.audit_end`)."""
    end = await find_audit_end(store, _AUDIT_END.get(store, 0))
    _AUDIT_END[store] = end
    return end


async def audit_end_op(node: Inspectable, request: Mapping[str, Any]) -> dict[str, Any]:
    """``{"op": "audit.end"}``: the newest audit record's seq."""
    return {"seq": await audit_end(node.store)}


def audit_record_dict(record: AuditRecord) -> dict[str, Any]:
    """JSON form of one audit record; ``replyTo`` is the id a reply answers (from its
    payload, when the audit kept it)."""
    reply_to: str | None = None
    if record.payload is not None:
        try:
            message = codec.decode(record.payload, codec.RAW_CBOR_HEADERS)
        except codec.DecodeError:
            message = None
        if message is not None and message.previous_message is not None:
            reply_to = message.previous_message.id
    return {
        "seq": record.seq,
        "direction": str(record.direction),
        "id": record.msg_id,
        "node": record.peer_node,
        "method": record.method,
        "outcome": record.outcome,
        "attempts": record.attempts,
        "reason": record.reason,
        "created": record.created_at,
        "recorded": record.recorded_at,
        "replyTo": reply_to,
    }


AUDIT_LIMIT = 10_000
AUDIT_SCAN_LIMIT = 200_000
"""Most audit records one ``audit`` request reads to find its matches."""


async def audit_op(node: Inspectable, request: Mapping[str, Any]) -> dict[str, Any]:
    """``{"op": "audit"}``: audit records, oldest first."""
    msg_id = text_field(request, "id", required=False)
    peer = text_field(request, "node", required=False)
    direction = text_field(request, "direction", required=False)
    if direction not in (None, "in", "out"):
        raise RequestError(f'field "direction": value {direction!r}; allowed: "in" or "out"')
    limit = request.get("limit", 100)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= AUDIT_LIMIT:
        raise RequestError(f'field "limit": value {limit!r}; allowed: 1 to {AUDIT_LIMIT}')
    since_value = request.get("since")
    since = None if since_value is None else finite_number(since_value)
    if since_value is not None and since is None:
        raise RequestError(
            f'field "since": value {since_value!r}; allowed: a wall time in seconds '
            "(a finite number)"
        )

    def wanted(record: AuditRecord) -> bool:
        return (
            (peer is None or record.peer_node == peer)
            and (direction is None or str(record.direction) == direction)
            and (since is None or record.recorded_at >= since)
        )

    store = node.store
    if msg_id is not None:
        found = [r for r in await store.audit_log(msg_id=msg_id, limit=None) if wanted(r)]
        return {"records": [audit_record_dict(r) for r in found[-limit:]]}
    end = await audit_end(store)
    start = await _first_at(store, since, end) if since is not None else None
    matches: list[AuditRecord] = []
    if start is not None:  # oldest first from `since` on
        matches = await _scan(store, start, end, wanted, limit, first=True)
    else:  # the newest `limit` matches: windows further and further back
        window, upper = limit, end
        while upper > 0 and len(matches) < limit and end - upper < AUDIT_SCAN_LIMIT:
            lower = max(0, upper - window)
            matches = (await _scan(store, lower, upper, wanted, limit, first=False)) + matches
            upper, window = lower, window * 4
        matches = matches[-limit:]
    return {"records": [audit_record_dict(r) for r in matches]}


async def _scan(
    store: Store,
    after: int,
    upto: int,
    wanted: Callable[[AuditRecord], bool],
    limit: int,
    *,
    first: bool,
) -> list[AuditRecord]:
    """Matching records with ``after < seq <= upto``: the first ``limit`` (``first``) or all."""
    found: list[AuditRecord] = []
    scanned = 0
    while after < upto and scanned < AUDIT_SCAN_LIMIT:
        page = await store.audit_log(after_seq=after, limit=1000)
        if not page:
            break
        for record in page:
            if record.seq > upto:
                return found
            scanned += 1
            if wanted(record):
                found.append(record)
                if first and len(found) >= limit:
                    return found
        after = page[-1].seq
    return found


async def _first_at(store: Store, since: float, end: int) -> int:
    """The seq to read after so that the first record is the first written at or after
    ``since`` (records are written in time order)."""
    low, high = 0, end
    while low < high:
        middle = (low + high) // 2
        page = await store.audit_log(after_seq=middle, limit=1)
        if not page or page[0].recorded_at >= since:
            high = middle
        else:
            low = page[0].seq
    return low


async def replies_stream(
    node: Inspectable, request: Mapping[str, Any]
) -> AsyncIterator[dict[str, Any]]:
    """``{"op": "replies"}``: checks the request, then follows the watched ids."""
    ids = ids_field(request, "ids", required=True)
    delivery_ids = ids_field(request, "deliveryIds", required=False)
    after = seq_field(request, "afterSeq", "a seq from audit.end")
    try:
        timeout = checked_seconds(
            request.get("timeout"), "timeout", default=60.0, maximum=float(MAX_WAIT)
        )
        quiet = checked_seconds(
            request.get("quiet"), "quiet", default=DEFAULT_QUIET, maximum=float(MAX_QUIET)
        )
    except ValueError as exc:
        raise RequestError(str(exc)) from exc
    return follow(
        node.store,
        ids,
        delivery_ids=delivery_ids,
        after_seq=after,
        timeout=timeout,
        quiet=quiet,
        hub=getattr(node, "reply_hub", None),  # a node's ReplyHub: no polling of the audit log
    )
