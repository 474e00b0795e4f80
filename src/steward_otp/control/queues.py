"""The queue operations: the outbox's messages, and what waits in the JetStream stream.

``queue.ls``, ``queue.cancel``, ``queue.retry`` and ``queue.purge`` read and change the
outbox through the store; ``queue.stream.ls`` and ``queue.stream.cancel`` read and change
the NODES stream through the node's broker connection. Each checks its request first and
raises :class:`~steward_otp.control.requests.RequestError` for a bad one.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import trio

from steward_otp.control.requests import (
    MAX_SEQ,
    Inspectable,
    RequestError,
    count_field,
    node_name_field,
    seconds_field,
    text_field,
)
from steward_otp.jetstream import (
    JetStreamUnavailable,
    delete_waiting,
    waiting_message,
    waiting_messages,
)
from steward_otp.store import OUTBOX_STATE_NAMES

STREAM_API_TIMEOUT = 2.0
"""Seconds the broker has to answer each JetStream API request of a control request."""


def _stream_bridge(node: Inspectable) -> Any:
    bridge = getattr(node, "bridge", None)
    if bridge is None:
        raise RequestError("this node has no broker connection to read the stream through")
    return bridge


async def queue_ls_op(node: Inspectable, request: Mapping[str, Any]) -> dict[str, Any]:
    """``{"op": "queue.ls"}``: the outbox's messages, and the drain progress."""
    states = request.get("states")
    allowed = ", ".join(OUTBOX_STATE_NAMES)
    if states is not None and not (
        isinstance(states, list) and all(isinstance(s, str) for s in states)
    ):
        raise RequestError(
            f'field "states": value {states!r}; allowed: a list of state names ({allowed})'
        )
    for index, state in enumerate(states or ()):
        if state not in OUTBOX_STATE_NAMES:
            raise RequestError(
                f'field "states[{index}]": value {state!r} is not an outbox state; '
                f"allowed: {allowed}"
            )
    try:
        rows = await node.store.list_outbox(
            to_node=text_field(request, "toNode", required=False), states=states
        )
    except ValueError as exc:
        raise RequestError(str(exc)) from exc
    now = time.time()
    held: dict[str, int] = {}
    for r in rows:
        if str(r.state) in ("queued", "in_flight"):
            held[r.to_node] = held.get(r.to_node, 0) + 1
    outbox = getattr(node, "outbox", None)
    drain = getattr(outbox, "drain", None)
    return {
        "draining": {} if drain is None else drain.progress(held, trio.current_time()),
        "messages": [
            {
                "id": r.msg_id,
                "toNode": r.to_node,
                "method": r.method,
                "state": str(r.state),
                "attempts": r.attempts,
                "age": round(r.age(now), 3),
                "reason": r.reason,
            }
            for r in rows
        ],
    }


async def queue_cancel_op(node: Inspectable, request: Mapping[str, Any]) -> dict[str, Any]:
    """``{"op": "queue.cancel"}``: cancel one outbox message."""
    msg_id = text_field(request, "id", required=True)
    assert msg_id is not None
    return {"done": await node.store.cancel(msg_id)}


async def queue_retry_op(node: Inspectable, request: Mapping[str, Any]) -> dict[str, Any]:
    """``{"op": "queue.retry"}``: re-queue a failed or cancelled message."""
    msg_id = text_field(request, "id", required=True)
    assert msg_id is not None
    return {"done": await node.store.retry(msg_id)}


async def queue_purge_op(node: Inspectable, request: Mapping[str, Any]) -> dict[str, Any]:
    """``{"op": "queue.purge"}``: remove outbox messages."""
    older = seconds_field(request, "olderThan")
    # Messages being retried are in flight; purging them is safe: their publisher stops at
    # its next attempt (the store says they are gone).
    purged = await node.store.purge(
        states=("queued", "in_flight", "failed", "cancelled"),
        to_node=text_field(request, "toNode", required=False),
        older_than_seconds=older,
    )
    return {"purged": purged}


async def queue_stream_ls_op(node: Inspectable, request: Mapping[str, Any]) -> dict[str, Any]:
    """``{"op": "queue.stream.ls"}``: what waits in the JetStream stream."""
    to_node = node_name_field(request)
    limit = count_field(request, "limit", 1000, 10000)
    try:
        waiting = await waiting_messages(
            _stream_bridge(node), to_node, limit=limit, timeout=STREAM_API_TIMEOUT
        )
    except JetStreamUnavailable as exc:
        raise RequestError(f"the stream cannot be read: {exc}") from exc
    return {
        "messages": [
            {
                "seq": m.seq,
                "id": m.msg_id,
                "toNode": m.for_node,
                "subject": m.subject,
                "method": m.method,
                "fromNode": m.from_node,
                "storedAt": m.stored_at,
                "size": m.size,
                "broadcast": m.broadcast,
            }
            for m in waiting
        ]
    }


async def queue_stream_cancel_op(node: Inspectable, request: Mapping[str, Any]) -> dict[str, Any]:
    """``{"op": "queue.stream.cancel"}``: remove waiting messages -- by ``seq``, or the ones
    with that ``id``; with ``toNode``, only what waits for that node (a ``seq`` that does
    not is left alone)."""
    seq = request.get("seq")
    msg_id = text_field(request, "id", required=False)
    if seq is not None:
        seqs = [count_field(request, "seq", 1, MAX_SEQ)]
    elif msg_id is None:
        raise RequestError('give "seq" (from queue.stream.ls) or "id" of the message to cancel')
    to_node = node_name_field(request)
    bridge = _stream_bridge(node)
    try:
        if seq is None:
            waiting = await waiting_messages(
                bridge, to_node, limit=10000, timeout=STREAM_API_TIMEOUT
            )
            seqs = sorted({m.seq for m in waiting if m.msg_id == msg_id})
        elif to_node is not None:
            found = await waiting_message(bridge, to_node, seqs[0], timeout=STREAM_API_TIMEOUT)
            seqs = seqs if found is not None else []
        done = [s for s in seqs if await delete_waiting(bridge, s, timeout=STREAM_API_TIMEOUT)]
    except JetStreamUnavailable as exc:
        raise RequestError(f"the stream cannot be changed: {exc}") from exc
    return {"done": bool(done), "seqs": done}
