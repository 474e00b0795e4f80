"""The control server: answers request lines and serves the control socket.

:func:`answer` dispatches a decoded request to its operation (:data:`OPERATIONS`);
:class:`ControlServer` is the supervised process that reads request lines from
``<home>/tmp/control.sock`` and writes the answers, or a stream's events
(:data:`STREAMS`). The protocol is described in :mod:`steward_otp.control`.

Guarantees: a bad request never raises, it is answered ``{"ok": false, "error": ...}``;
answers come in the order of the requests; a streaming request is the last of its
connection, and its stream ends when the client goes away. Whatever goes wrong while one
request is answered (a failing store, a bug) is logged with its traceback and answered
``{"ok": false, "error": ...}`` to that client only (a stream: as its last line): the
control process and the other clients carry on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import trio

from steward_otp.control.audit import audit_end_op, audit_op, replies_stream
from steward_otp.control.queues import (
    queue_cancel_op,
    queue_ls_op,
    queue_purge_op,
    queue_retry_op,
    queue_stream_cancel_op,
    queue_stream_ls_op,
)
from steward_otp.control.requests import Inspectable, Operation, RequestError, Stream
from steward_otp.control.status import methods_op, status_op, tree_op
from steward_otp.inputs.unix_server import serve_unix_socket

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 1024 * 1024


STREAMS: dict[str, Stream] = {"replies": replies_stream}


OPERATIONS: dict[str, Operation] = {
    "tree": tree_op,
    "status": status_op,
    "queue.ls": queue_ls_op,
    "queue.cancel": queue_cancel_op,
    "queue.retry": queue_retry_op,
    "queue.purge": queue_purge_op,
    "queue.stream.ls": queue_stream_ls_op,
    "queue.stream.cancel": queue_stream_cancel_op,
    "methods": methods_op,
    "audit": audit_op,
    "audit.end": audit_end_op,
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
    """Supervised process serving the control socket; the protocol is in
    :mod:`steward_otp.control`."""

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
                            if not await self._respond(stream, line):
                                return  # a streaming request is the last of its connection
        except Exception as exc:  # one client's trouble never ends the control process
            if _client_gone(exc):
                log.debug("control client went away: %s", exc)
            else:
                log.exception("control connection failed")

    async def _respond(self, stream: trio.SocketStream, line: bytes) -> bool:
        """Answer one request line; False when it was a streaming request (the last of its
        connection). An unexpected failure is logged and answered as an error."""
        try:
            events = await self._stream_for(line)
        except Exception as exc:
            events = _one(_failure(line, exc))
        if events is not None:
            await _send_stream(stream, events, line)
            return False
        try:
            answer = json.dumps(await handle_request(self.node, line))
        except Exception as exc:
            answer = json.dumps(_failure(line, exc))
        await stream.send_all(answer.encode() + b"\n")
        return True

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


def _failure(line: bytes, exc: Exception) -> dict[str, Any]:
    """The answer to a request whose answering failed unexpectedly (logged here, with the
    traceback)."""
    try:
        request = json.loads(line)
    except (ValueError, RecursionError):
        request = None
    op = request.get("op") if isinstance(request, dict) else None
    log.error("control request %r failed", op, exc_info=exc)
    return {
        "ok": False,
        "error": f"the node could not answer op {op!r}: {type(exc).__name__}: {exc} "
        "(see the node's log)",
    }


def _client_gone(exc: BaseException) -> bool:
    """Whether ``exc`` only says that the client's connection broke or was closed."""
    gone = (trio.BrokenResourceError, trio.ClosedResourceError)
    if isinstance(exc, BaseExceptionGroup):
        return all(_client_gone(inner) for inner in exc.exceptions)
    return isinstance(exc, gone)


async def _one(event: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    yield event


async def _send_stream(
    stream: trio.SocketStream, events: AsyncIterator[dict[str, Any]], line: bytes
) -> None:
    """Send each event as a line until they end or the client goes away: it sends anything
    more, or its connection breaks (seen at the next line sent; the stream sends a
    ``waiting`` line every few seconds). A client that only shuts down its sending side
    still gets the whole stream. When producing the events fails unexpectedly, the failure
    (logged) is the last line."""
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
            last = False
            while not last:
                try:
                    event = await anext(events)
                    event = event if "ok" in event else {"ok": True, **event}
                    text = json.dumps(event)
                except StopAsyncIteration:
                    break
                except Exception as exc:
                    event = _failure(line, exc)
                    text = json.dumps(event)
                last = event.get("ok") is False
                await stream.send_all(text.encode() + b"\n")
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                with trio.CancelScope(shield=True):
                    await aclose()
        nursery.cancel_scope.cancel()
