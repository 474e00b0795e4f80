"""The control socket ``<home>/tmp/control.sock``: how the CLI inspects a running node.

Protocol (JSON lines): the client sends one request object per line and reads one response
line per request, in order; it may send several on one connection. Only the node's own user
can connect (socket mode 0600).

Requests (``op``) and their responses (always ``{"ok": true, ...}`` or
``{"ok": false, "error": "..."}``):

* ``{"op": "tree"}`` → ``"tree"``: the live supervision tree (``ProcessSnapshot.to_dict``).
* ``{"op": "status"}`` → ``"status"``: node, broker URL, connection state, outbox counts per
  state and per destination, last hello per node (on the central node).
* ``{"op": "queue.ls", "toNode"?: str, "states"?: [str]}`` → ``"messages"``.
* ``{"op": "queue.cancel", "id": str}`` / ``{"op": "queue.retry", "id": str}`` → ``"done"``.
* ``{"op": "queue.purge", "toNode"?: str, "olderThan"?: seconds}`` → ``"purged"``
  (``olderThan``: a finite number >= 0).

Taking a snapshot reads bookkeeping only, so inspecting a node under load does not slow it.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import trio

from steward_otp.inputs.unix_server import serve_unix_socket
from steward_otp.store import Store
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

    def snapshot(self) -> ProcessSnapshot: ...

    def connection_state(self) -> str: ...

    def last_hellos(self) -> Mapping[str, float]: ...


Operation = Callable[[Inspectable, Mapping[str, Any]], Awaitable[dict[str, Any]]]


class RequestError(Exception):
    """A control request that cannot be served; its text goes back to the client."""


async def _tree(node: Inspectable, request: Mapping[str, Any]) -> dict[str, Any]:
    return {"tree": node.snapshot().to_dict()}


async def _status(node: Inspectable, request: Mapping[str, Any]) -> dict[str, Any]:
    counts = await node.store.counts()
    depths = await node.store.queue_depths()
    return {
        "status": {
            "node": node.node_name,
            "broker": node.url,
            "connection": node.connection_state(),
            "outbox": {str(state): n for state, n in counts.items()},
            "queued_per_node": depths,
            "last_hello": dict(node.last_hellos()),
            "time": time.time(),
        }
    }


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
    return {
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
        ]
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


OPERATIONS: dict[str, Operation] = {
    "tree": _tree,
    "status": _status,
    "queue.ls": _queue_ls,
    "queue.cancel": _queue_cancel,
    "queue.retry": _queue_retry,
    "queue.purge": _queue_purge,
}


async def handle_request(node: Inspectable, line: bytes) -> dict[str, Any]:
    """Answer one request line. Never raises: every problem becomes ``{"ok": false}``."""
    try:
        request = json.loads(line)
    except ValueError as exc:
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
        allowed = ", ".join(OPERATIONS)
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
                            response = await handle_request(self.node, line)
                            await stream.send_all(json.dumps(response).encode() + b"\n")
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            log.debug("control client went away: %s", exc)


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
