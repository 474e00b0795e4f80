"""The control socket ``<home>/tmp/control.sock``: how the CLI inspects a running node.

Protocol (JSON lines): the client sends one request object per line and reads one response
line per request, in order; it may send several on one connection. Only the node's own user
can connect (socket mode 0600).

Requests (``op``) and their responses (always ``{"ok": true, ...}`` or
``{"ok": false, "error": "..."}``):

* ``{"op": "tree"}`` → ``"tree"``: the live supervision tree (``ProcessSnapshot.to_dict``).
* ``{"op": "status"}`` → ``"status"``: node, broker URL, connection state, outbox counts per
  state and per destination, last hello per node (on the central node); with JetStream
  delivery, ``delivery.waiting_per_node``: messages waiting in the stream per node (or
  ``delivery.waiting_problem`` when the broker could not say).
* ``{"op": "queue.ls", "toNode"?: str, "states"?: [str]}`` → ``"messages"``.
* ``{"op": "queue.cancel", "id": str}`` / ``{"op": "queue.retry", "id": str}`` → ``"done"``.
* ``{"op": "queue.purge", "toNode"?: str, "olderThan"?: seconds}`` → ``"purged"``
  (``olderThan``: a finite number >= 0).
* ``{"op": "queue.stream.ls", "toNode"?: str, "limit"?: n}`` → ``"messages"``: what waits in
  the JetStream stream for that node (default: every node), each ``{"seq", "id",
  "toNode", "subject", "method", "fromNode", "storedAt", "size", "broadcast"}``; at most
  ``limit`` (default 1000, at most 10000).
* ``{"op": "queue.stream.cancel", "seq"?: n, "id"?: str, "toNode"?: str}`` → ``"done"``,
  ``"seqs"``: removes the message from the stream (by sequence, or the waiting message(s)
  with that id, for ``toNode`` when given), so no node takes it; a broadcast is removed
  for every node.
* ``{"op": "methods"}`` → ``"methods"``: the node's method table (built-in methods and those
  added by embedding code), each ``{"name", "kind", "replyCapable", "routable", "quick",
  "description", "args"}``; ``steward-otp send`` validates against it.
* ``{"op": "audit.end"}`` → ``"seq"``: the position of the newest audit record (0: none).
  Take it before sending, then follow the replies from there: nothing is missed.
* ``{"op": "audit", "id"?: str, "since"?: wall time, "node"?: str, "direction"?: "in" |
  "out", "limit"?: n}`` → ``"records"``: audit records, oldest first -- one message's, or
  the newest ``limit`` (default 100, at most 10000) matching the filters.

Streaming requests answer with several lines and end the connection (send them last):

* ``{"op": "replies", "ids": [str], "deliveryIds"?: [str], "afterSeq"?: seq,
  "timeout"?: seconds, "quiet"?: seconds}`` → one ``{"ok": true, "event": ...}`` line per
  reply to a watched message and per change of its delivery state, then an ``"end"`` line
  with the final state of each (see :mod:`steward_otp.replies`). ``ids`` want a reply,
  ``deliveryIds`` only delivery; ``afterSeq`` (from ``audit.end``) is where to start
  reading (default: now); ``timeout`` (default 60, at most 7 days) bounds the wait. Closing
  the connection ends it early.

Taking a snapshot reads bookkeeping only, so inspecting a node under load does not slow it.
"""

from __future__ import annotations

import json
import logging
import math
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import trio

from steward_otp import codec, replies
from steward_otp.inputs.unix_server import serve_unix_socket
from steward_otp.jetstream import (
    JetStreamUnavailable,
    delete_waiting,
    waiting_counts,
    waiting_messages,
)
from steward_otp.limits import node_name_problem
from steward_otp.methods import MethodTable
from steward_otp.store import AuditRecord, Store
from steward_otp.supervisors import ProcessSnapshot

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 1024 * 1024


class Inspectable(Protocol):
    """What the control server needs from a node."""

    @property
    def node_name(self) -> str: ...

    @property
    def url(self) -> str: ...

    @property
    def store(self) -> Store: ...

    @property
    def table(self) -> MethodTable: ...

    def snapshot(self) -> ProcessSnapshot: ...

    def connection_state(self) -> str: ...

    def last_hellos(self) -> Mapping[str, float]: ...

    def posture(self) -> Mapping[str, Any]:
        """How the node delivers and what it checks (``delivery``, ``security``)."""
        ...


Operation = Callable[[Inspectable, Mapping[str, Any]], Awaitable[dict[str, Any]]]
Stream = Callable[[Inspectable, Mapping[str, Any]], Awaitable[AsyncIterator[dict[str, Any]]]]
"""A streaming operation: checks the request (raising RequestError), then returns the
events to send, one line each."""


class RequestError(Exception):
    """A control request that cannot be served; its text goes back to the client."""


async def _tree(node: Inspectable, request: Mapping[str, Any]) -> dict[str, Any]:
    return {"tree": node.snapshot().to_dict()}


async def _status(node: Inspectable, request: Mapping[str, Any]) -> dict[str, Any]:
    counts = await node.store.counts()
    depths = await node.store.queue_depths()
    posture = dict(node.posture())
    delivery = posture.get("delivery")
    if isinstance(delivery, Mapping) and delivery.get("mode") == "jetstream":
        posture["delivery"] = await _with_waiting(node, delivery)
    return {
        "status": {
            "node": node.node_name,
            "broker": node.url,
            "connection": node.connection_state(),
            "outbox": {str(state): n for state, n in counts.items()},
            "queued_per_node": depths,
            "last_hello": dict(node.last_hellos()),
            "time": time.time(),
            **posture,
        }
    }


STREAM_API_TIMEOUT = 2.0
"""Seconds the broker has to answer each JetStream API request of a control request."""


async def _with_waiting(node: Inspectable, delivery: Mapping[str, Any]) -> dict[str, Any]:
    """``delivery`` with the messages waiting in the stream per node."""
    out = dict(delivery)
    bridge = getattr(node, "bridge", None)
    if bridge is None or not delivery.get("stream_ready", True):
        out["waiting_problem"] = "the stream is not ready"
        return out
    try:
        out["waiting_per_node"] = await waiting_counts(bridge, timeout=STREAM_API_TIMEOUT)
    except JetStreamUnavailable as exc:
        out["waiting_problem"] = str(exc)
    return out


def _stream_bridge(node: Inspectable) -> Any:
    bridge = getattr(node, "bridge", None)
    if bridge is None:
        raise RequestError("this node has no broker connection to read the stream through")
    return bridge


def _count(request: Mapping[str, Any], key: str, default: int, most: int) -> int:
    value = request.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise RequestError(f'field "{key}": value {value!r}; allowed: an integer from 1 to {most}')
    return value


def _node_name(request: Mapping[str, Any]) -> str | None:
    name = _text(request, "toNode", required=False)
    problem = node_name_problem(name) if name is not None else None
    if problem is not None:
        raise RequestError(f'field "toNode": value {name!r} {problem}; allowed: a node name')
    return name


async def _queue_stream_ls(node: Inspectable, request: Mapping[str, Any]) -> dict[str, Any]:
    to_node = _node_name(request)
    limit = _count(request, "limit", 1000, 10000)
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


async def _queue_stream_cancel(node: Inspectable, request: Mapping[str, Any]) -> dict[str, Any]:
    seq = request.get("seq")
    msg_id = _text(request, "id", required=False)
    if seq is not None:
        seqs = [_count(request, "seq", 1, 2**63 - 1)]
    elif msg_id is None:
        raise RequestError('give "seq" (from queue.stream.ls) or "id" of the message to cancel')
    bridge = _stream_bridge(node)
    try:
        if seq is None:
            waiting = await waiting_messages(
                bridge,
                _node_name(request),
                limit=10000,
                timeout=STREAM_API_TIMEOUT,
            )
            seqs = sorted({m.seq for m in waiting if m.msg_id == msg_id})
        done = [s for s in seqs if await delete_waiting(bridge, s, timeout=STREAM_API_TIMEOUT)]
    except JetStreamUnavailable as exc:
        raise RequestError(f"the stream cannot be changed: {exc}") from exc
    return {"done": bool(done), "seqs": done}


def _text(request: Mapping[str, Any], key: str, *, required: bool) -> str | None:
    value = request.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise RequestError(f'field "{key}": value {value!r}; allowed: a non-empty string')
    return value


async def _queue_ls(node: Inspectable, request: Mapping[str, Any]) -> dict[str, Any]:
    states = request.get("states")
    if states is not None and not (
        isinstance(states, list) and all(isinstance(s, str) for s in states)
    ):
        raise RequestError(f'field "states": value {states!r}; allowed: a list of state names')
    try:
        rows = await node.store.list_outbox(
            to_node=_text(request, "toNode", required=False), states=states
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


async def _queue_cancel(node: Inspectable, request: Mapping[str, Any]) -> dict[str, Any]:
    msg_id = _text(request, "id", required=True)
    assert msg_id is not None
    return {"done": await node.store.cancel(msg_id)}


async def _queue_retry(node: Inspectable, request: Mapping[str, Any]) -> dict[str, Any]:
    msg_id = _text(request, "id", required=True)
    assert msg_id is not None
    return {"done": await node.store.retry(msg_id)}


def _age(request: Mapping[str, Any], key: str) -> float | None:
    """``request[key]`` as seconds: a finite number >= 0, or None when absent."""
    value = request.get(key)
    if value is None:
        return None
    seconds = math.nan
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:  # an int too large for a float
            seconds = math.inf
    if not (math.isfinite(seconds) and seconds >= 0):
        raise RequestError(
            f'field "{key}": value {value!r}; allowed: seconds (a finite number >= 0)'
        )
    return seconds


async def _queue_purge(node: Inspectable, request: Mapping[str, Any]) -> dict[str, Any]:
    older = _age(request, "olderThan")
    # Messages being retried are in flight; purging them is safe: their publisher stops at
    # its next attempt (the store says they are gone).
    purged = await node.store.purge(
        states=("queued", "in_flight", "failed", "cancelled"),
        to_node=_text(request, "toNode", required=False),
        older_than_seconds=older,
    )
    return {"purged": purged}


async def _methods(node: Inspectable, request: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "methods": [
            {
                "name": spec.name,
                "kind": str(spec.kind),
                "replyCapable": spec.reply_capable,
                "routable": spec.routable,
                "quick": spec.quick,
                "description": spec.description,
                "args": spec.args,
            }
            for spec in node.table
        ]
    }


_AUDIT_END: weakref.WeakKeyDictionary[Store, int] = weakref.WeakKeyDictionary()
"""Last audit position found per store: the next search starts there."""


async def audit_end(store: Store) -> int:
    """The newest audit record's seq (see :func:`steward_otp.replies.audit_end`)."""
    end = await replies.audit_end(store, _AUDIT_END.get(store, 0))
    _AUDIT_END[store] = end
    return end


async def _audit_end(node: Inspectable, request: Mapping[str, Any]) -> dict[str, Any]:
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


async def _audit(node: Inspectable, request: Mapping[str, Any]) -> dict[str, Any]:
    msg_id = _text(request, "id", required=False)
    peer = _text(request, "node", required=False)
    direction = _text(request, "direction", required=False)
    if direction not in (None, "in", "out"):
        raise RequestError(f'field "direction": value {direction!r}; allowed: "in" or "out"')
    limit = request.get("limit", 100)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= AUDIT_LIMIT:
        raise RequestError(f'field "limit": value {limit!r}; allowed: 1 to {AUDIT_LIMIT}')
    since = request.get("since")
    if since is not None and (
        isinstance(since, bool) or not isinstance(since, int | float) or not math.isfinite(since)
    ):
        raise RequestError(f'field "since": value {since!r}; allowed: a wall time in seconds')

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
    start = await _first_at(store, float(since), end) if since is not None else None
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


def _ids(request: Mapping[str, Any], key: str, *, required: bool) -> list[str]:
    value = request.get(key)
    if value is None and not required:
        return []
    if (
        not isinstance(value, list)
        or not all(isinstance(v, str) and v for v in value)
        or len(value) > 100_000
    ):
        raise RequestError(
            f'field "{key}": value {value!r}; allowed: a list of message ids (non-empty strings)'
        )
    return value


async def _replies(node: Inspectable, request: Mapping[str, Any]) -> AsyncIterator[dict[str, Any]]:
    ids = _ids(request, "ids", required=True)
    delivery_ids = _ids(request, "deliveryIds", required=False)
    after = request.get("afterSeq")
    if after is not None and (isinstance(after, bool) or not isinstance(after, int) or after < 0):
        raise RequestError(f'field "afterSeq": value {after!r}; allowed: a seq from audit.end')
    try:
        timeout = replies.checked_seconds(
            request.get("timeout"), "timeout", default=60.0, maximum=7 * 86400.0
        )
        quiet = replies.checked_seconds(
            request.get("quiet"), "quiet", default=replies.DEFAULT_QUIET, maximum=3600.0
        )
    except ValueError as exc:
        raise RequestError(str(exc)) from exc
    return replies.follow(
        node.store,
        ids,
        delivery_ids=delivery_ids,
        after_seq=after,
        timeout=timeout,
        quiet=quiet,
        hub=getattr(node, "reply_hub", None),  # a node's ReplyHub: no polling of the audit log
    )


STREAMS: dict[str, Stream] = {"replies": _replies}


OPERATIONS: dict[str, Operation] = {
    "tree": _tree,
    "status": _status,
    "queue.ls": _queue_ls,
    "queue.cancel": _queue_cancel,
    "queue.retry": _queue_retry,
    "queue.purge": _queue_purge,
    "queue.stream.ls": _queue_stream_ls,
    "queue.stream.cancel": _queue_stream_cancel,
    "methods": _methods,
    "audit": _audit,
    "audit.end": _audit_end,
}


async def handle_request(node: Inspectable, line: bytes) -> dict[str, Any]:
    """Answer one request line. Never raises: every problem becomes ``{"ok": false}``."""
    try:
        request = json.loads(line)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deeply
        return {"ok": False, "error": f"request is not JSON: {exc}"}
    return await answer(node, request)


async def answer(node: Inspectable, request: object) -> dict[str, Any]:
    """Answer one decoded request. Never raises for a bad request: every problem with it --
    one refused here or a value the store refuses (its ValueError) -- becomes
    ``{"ok": false, "error": ...}``; only a failing store itself (StoreError) propagates."""
    if not isinstance(request, dict):
        return {"ok": False, "error": 'request must be a JSON object with an "op" field'}
    op = request.get("op")
    operation = OPERATIONS.get(op) if isinstance(op, str) else None
    if operation is None:
        if isinstance(op, str) and op in STREAMS:
            return {"ok": False, "error": f"op {op!r} streams its answer: use the control socket"}
        allowed = ", ".join([*OPERATIONS, *STREAMS])
        return {"ok": False, "error": f'field "op": value {op!r} is unknown; allowed: {allowed}'}
    try:
        return {"ok": True, **await operation(node, request)}
    except (RequestError, ValueError) as exc:  # ValueError: the store refused a value
        return {"ok": False, "error": str(exc)}


class ControlServer:
    """Supervised process serving the control socket. See the module docstring."""

    def __init__(self, path: Path, node: Inspectable) -> None:
        self.path = path
        self.node = node
        self.info: dict[str, object] = {"path": str(path), "requests": 0}

    async def run(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; the socket file is removed on the way out."""
        await serve_unix_socket(self.path, self._serve, backlog=16, task_status=task_status)

    async def _serve(self, stream: trio.SocketStream) -> None:
        buffer = b""
        try:
            async with stream:
                while chunk := await stream.receive_some(65536):
                    buffer += chunk
                    if len(buffer) > MAX_REQUEST_BYTES:
                        await stream.send_all(b'{"ok": false, "error": "request too large"}\n')
                        return
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        if line.strip():
                            self.info["requests"] = int(str(self.info["requests"])) + 1
                            events = await self._stream_for(line)
                            if events is not None:
                                await _send_stream(stream, events)
                                return  # a streaming request is the last of its connection
                            response = await handle_request(self.node, line)
                            await stream.send_all(json.dumps(response).encode() + b"\n")
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            log.debug("control client went away: %s", exc)

    async def _stream_for(self, line: bytes) -> AsyncIterator[dict[str, Any]] | None:
        """The events of a streaming request (a refused one: a single error line), or None
        when ``line`` is not a streaming request."""
        try:
            request = json.loads(line)
        except (ValueError, RecursionError):  # answered as "not JSON" by handle_request
            return None
        op = request.get("op") if isinstance(request, dict) else None
        stream = STREAMS.get(op) if isinstance(op, str) else None
        if stream is None:
            return None
        try:
            return await stream(self.node, request)
        except (RequestError, ValueError) as exc:
            return _one({"ok": False, "error": str(exc)})


async def _one(event: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    yield event


async def _send_stream(stream: trio.SocketStream, events: AsyncIterator[dict[str, Any]]) -> None:
    """Send each event as a line until they end or the client goes away: it sends anything
    more, or its connection breaks (seen at the next line sent; the stream sends a
    ``waiting`` line every few seconds). A client that only shuts down its sending side
    still gets the whole stream."""
    async with trio.open_nursery() as nursery:

        async def watch_client() -> None:
            try:
                if not await stream.receive_some(1):
                    return  # half-closed: it still reads
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            nursery.cancel_scope.cancel()

        nursery.start_soon(watch_client)
        try:
            async for event in events:
                line = event if "ok" in event else {"ok": True, **event}
                await stream.send_all(json.dumps(line).encode() + b"\n")
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                with trio.CancelScope(shield=True):
                    await aclose()
        nursery.cancel_scope.cancel()


async def control_stream(path: Path, request: Mapping[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """Send one streaming request to the control socket at ``path``; yield each answer line
    (the first may be ``{"ok": false, ...}``). Ends when the node closes the connection."""
    stream = await trio.open_unix_socket(str(path))
    async with stream:
        await stream.send_all(json.dumps(request).encode() + b"\n")
        buffer = b""
        while chunk := await stream.receive_some(1 << 20):
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.strip():
                    answer = json.loads(line)
                    if not isinstance(answer, dict):
                        raise ConnectionError("control socket answered a non-object line")
                    yield answer


async def control_request(path: Path, request: Mapping[str, Any]) -> dict[str, Any]:
    """Send one request to the control socket at ``path`` and return its response."""
    stream = await trio.open_unix_socket(str(path))
    async with stream:
        await stream.send_all(json.dumps(request).encode() + b"\n")
        buffer = b""
        while b"\n" not in buffer:
            chunk = await stream.receive_some(1 << 20)
            if not chunk:
                raise ConnectionError("control socket closed without an answer")
            buffer += chunk
    response = json.loads(buffer.split(b"\n", 1)[0])
    if not isinstance(response, dict):
        raise ConnectionError("control socket answered something that is not an object")
    return response
