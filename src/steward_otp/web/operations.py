"""What the web view does with its node: the CLI's operations, called in-process.

Every read and every action goes through the functions the control socket and the inputs
use, with the same validation and the same answers:

* status, tree, queue list/cancel/retry, audit position: :func:`steward_otp.control.server.answer`
  (what the control server calls for ``steward-otp status``, ``tree``, ``queue ...``);
* sending: the document is checked against the node's method table first (as
  ``steward-otp send`` does: one bad message and nothing is sent), then handed to
  ``Node.accept_document`` (what the socket input calls); a composed command is the
  ``REQCliCommand`` message ``steward-otp cmd`` builds, with its defaults;
* the replies: the control socket's ``replies`` stream
  (:data:`steward_otp.control.server.STREAMS`).

Nothing here knows HTTP: :mod:`steward_otp.web.app` turns :class:`OperationError` into a 400
answer whose text names the field, the value and what is allowed.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, Final, Protocol

import attrs
import trio

from steward_otp.control import server as control_server
from steward_otp.control.requests import Inspectable, RequestError
from steward_otp.inputs.intake import Answer
from steward_otp.inputs.parsing import parse_document
from steward_otp.methods import NO_REPLY

MAX_DOCUMENT_BYTES: Final = 1024 * 1024
"""Largest message document the send page takes (the inputs take more; a browser needs less)."""
TREE_INTERVAL: Final = 1.0
"""Seconds between two snapshots of the local tree on the node page."""
REMOTE_TREE_INTERVAL: Final = 5.0
"""Seconds between two REQOpProcessList requests while a remote node's page is open."""
REMOTE_TREE_TIMEOUT: Final = 15.0
"""Seconds to wait for a remote node's tree before saying it did not answer."""
TAIL_POLL: Final = 0.5
"""Seconds between two looks at the error log's size while tailing it."""
TAIL_READ_LIMIT: Final = 256 * 1024
"""Most bytes read from the end of the error log for its last lines, or in one poll."""


class OperationError(Exception):
    """A request the web view refuses; ``str()`` names the field, the value and what is
    allowed (the same text the CLI prints)."""


class WebNode(Inspectable, Protocol):
    """What the web view needs from a node (:class:`steward_otp.node.Node` provides it)."""

    async def accept_document(self, document: bytes | str) -> list[Answer]: ...


async def ask(node: Inspectable, request: Mapping[str, Any]) -> dict[str, Any]:
    """One control operation, answered as on the control socket; OperationError when
    refused."""
    response = await control_server.answer(node, dict(request))
    if not response.get("ok"):
        raise OperationError(str(response.get("error")))
    return response


# ------------------------------------------------------------------------------ fleet


async def fleet(node: Inspectable) -> dict[str, Any]:
    """Every node heard from or written to, with its last hello, the messages held for it
    (active and failed) and whether its signing key is allowed or pending here."""
    status = (await ask(node, {"op": "status"}))["status"]
    failed_rows = (await ask(node, {"op": "queue.ls", "states": ["failed"]}))["messages"]
    hellos: Mapping[str, float] = status.get("last_hello") or {}
    queued: Mapping[str, int] = status.get("queued_per_node") or {}
    failed: dict[str, int] = {}
    for row in failed_rows:
        failed[row["toNode"]] = failed.get(row["toNode"], 0) + 1
    security = status.get("security") or {}
    allowed = set(security.get("allowed") or ())
    pending = set(security.get("pending") or ())
    me = str(status["node"])
    names = sorted({me, *hellos, *queued, *failed}, key=lambda n: (n != me, n))
    now = float(status.get("time") or time.time())
    rows = [
        {
            "node": name,
            "self": name == me,
            "lastHello": hellos.get(name),
            "helloAge": None if name not in hellos else max(0.0, now - hellos[name]),
            "queued": int(queued.get(name, 0)),
            "failed": failed.get(name, 0),
            "key": "allowed" if name in allowed else "pending" if name in pending else "",
        }
        for name in names
    ]
    return {"status": status, "nodes": rows}


# ------------------------------------------------------------------------------ sending


@attrs.frozen
class Sent:
    """What happened to a document: one answer per message (the inputs' answer shape), and
    what to watch for the replies (the arguments of the ``replies`` stream)."""

    answers: list[dict[str, Any]]
    reply_ids: list[str]
    delivery_ids: list[str]
    after_seq: int | None
    refused: bool
    """True when the local check refused the document: nothing was sent."""

    def to_dict(self) -> dict[str, Any]:
        """JSON form: ``answers``, ``sent`` and ``watch`` (``ids``, ``deliveryIds``,
        ``afterSeq``)."""
        return {
            "answers": self.answers,
            "sent": not self.refused,
            "watch": {
                "ids": self.reply_ids,
                "deliveryIds": self.delivery_ids,
                "afterSeq": self.after_seq,
            },
        }


def _text(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise OperationError(f'field "{key}": value {value!r}; allowed: a non-empty string')
    return value


def command_document(body: Mapping[str, Any]) -> bytes:
    """The document ``steward-otp cmd NODES -- COMMAND`` sends, from ``{"nodes": [...],
    "command": "..."}``: one REQCliCommand run with ``sh -c`` on each node, with cmd's
    defaults (replies appended to ``data/cmd/<node>/cmd.log``)."""
    from steward_otp.replies.send_plan import CMD_DEFAULTS, command_message  # noqa: PLC0415

    nodes = body.get("nodes")
    if (
        not isinstance(nodes, list)
        or not nodes
        or not all(isinstance(n, str) and n.strip() for n in nodes)
    ):
        raise OperationError(
            f'field "nodes": value {nodes!r}; allowed: a non-empty list of node names'
        )
    command = _text(body, "command")
    message = command_message(
        [n.strip() for n in nodes],
        [command],
        directory="cmd",
        file_name="cmd.log",
        **CMD_DEFAULTS,
    )
    return json.dumps([message]).encode()


def request_document(body: Mapping[str, Any]) -> bytes:
    """The document to send for a send request: ``document`` (a message file's text, JSON
    or YAML, as ``steward-otp send`` takes) or ``nodes`` + ``command`` (as ``cmd``)."""
    has_document = body.get("document") is not None
    has_command = body.get("command") is not None
    if has_document == has_command:
        raise OperationError(
            'fields "document" and "command": give exactly one; allowed: a message document '
            '(JSON or YAML), or "nodes" with a "command"'
        )
    if has_command:
        return command_document(body)
    document = _text(body, "document").encode()
    if len(document) > MAX_DOCUMENT_BYTES:
        raise OperationError(
            f'field "document": {len(document)} bytes; allowed: at most {MAX_DOCUMENT_BYTES}'
        )
    return document


async def submit_document(node: WebNode, document: bytes) -> Sent:
    """Check ``document`` against the node's methods, then hand it to the node's input path
    (as ``steward-otp send``: a message the check refuses stops the whole document)."""
    from steward_otp.replies.send_plan import local_rejections  # noqa: PLC0415

    local = await parse_document(document, table=node.table)
    if local.errors:
        return Sent(local_rejections(local), [], [], None, refused=True)
    after = int((await ask(node, {"op": "audit.end"}))["seq"])
    answers = await node.accept_document(document)
    by_index = dict(zip(local.indexes, local.messages, strict=True))
    reply_ids: list[str] = []
    delivery_ids: list[str] = []
    for answer in answers:
        if not answer.accepted or answer.id is None:
            continue
        message = by_index.get(answer.index) if answer.index is not None else None
        wants_reply = message is None or (message.reply_method != NO_REPLY and not message.is_reply)
        (reply_ids if wants_reply else delivery_ids).append(answer.id)
    return Sent([a.to_dict() for a in answers], reply_ids, delivery_ids, after, refused=False)


async def follow_replies(
    node: Inspectable, watch: Mapping[str, Any]
) -> AsyncIterator[dict[str, Any]]:
    """The control socket's ``replies`` stream for ``watch`` (``ids``, ``deliveryIds``,
    ``afterSeq``, ``timeout``, ``quiet``), checked as there before this returns
    (OperationError when refused); the ``end`` event also carries the summary line
    ``steward-otp cmd`` prints (``text``)."""
    from steward_otp.replies.send_plan import summarise  # noqa: PLC0415

    try:
        events = await control_server.STREAMS["replies"](node, {"op": "replies", **watch})
    except (RequestError, ValueError) as exc:
        raise OperationError(str(exc)) from exc

    async def with_summary() -> AsyncIterator[dict[str, Any]]:
        try:
            async for event in events:
                if event.get("event") == "end":
                    text, _status = summarise(event["messages"], bool(event.get("timedOut")))
                    yield {**event, "text": text}
                else:
                    yield event
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                with trio.CancelScope(shield=True):
                    await aclose()

    return with_summary()


# ------------------------------------------------------------------------------ trees


async def local_tree_events(
    node: Inspectable, *, interval: float = TREE_INTERVAL
) -> AsyncIterator[dict[str, Any]]:
    """The node's own supervision tree (``steward-otp tree --json``), every ``interval``
    seconds, until the consumer stops."""
    while True:
        tree = (await ask(node, {"op": "tree"}))["tree"]
        yield {"event": "tree", "node": node.node_name, "tree": tree, "time": time.time()}
        await trio.sleep(interval)


def tree_request(name: str) -> bytes:
    """A REQOpProcessList for ``name``: one attempt, its reply kept in
    ``data/web/<name>/tree.txt`` (overwritten) and in the audit log."""
    message = {
        "toNodes": [name],
        "method": "REQOpProcessList",
        "replyMethod": "REQToFile",
        "directory": "web",
        "fileName": "tree.txt",
        "ACKTimeout": 5,
        "retries": 0,
        "methodTimeout": 10,
        "replyACKTimeout": 5,
        "replyRetries": 1,
    }
    return json.dumps([message]).encode()


async def remote_tree_events(
    node: WebNode,
    name: str,
    *,
    interval: float = REMOTE_TREE_INTERVAL,
    timeout: float = REMOTE_TREE_TIMEOUT,
) -> AsyncIterator[dict[str, Any]]:
    """Node ``name``'s tree as it answers REQOpProcessList (the text ``steward-otp tree``
    prints there), asked again ``interval`` seconds after each answer. Ends with an
    ``unanswered`` event (saying why: the request failed, or ``timeout`` seconds passed)
    when it does not answer; a failed request stays in the queue as failed. Ends with an
    ``error`` event when the request is refused."""
    while True:
        sent = await submit_document(node, tree_request(name))
        refused = [a for a in sent.answers if a.get("status") != "accepted"]
        if refused or not sent.reply_ids:
            yield {"event": "error", "node": name, "error": refused[0]["error"] if refused else ""}
            return
        answered = False
        why = f"no answer within {timeout:g} s"
        watch = {"ids": sent.reply_ids, "afterSeq": sent.after_seq, "timeout": timeout}
        async for event in await follow_replies(node, watch):
            if event.get("event") == "state" and event.get("state") != "delivered":
                why = str(event.get("state")) + (
                    f": {event['reason']}" if event.get("reason") else ""
                )
            if event.get("event") == "reply" and not answered:
                answered = True
                yield {
                    "event": "tree",
                    "node": name,
                    "text": event.get("output", ""),
                    "error": bool(event.get("error")),
                    "time": time.time(),
                }
        if not answered:
            yield {
                "event": "unanswered",
                "node": name,
                "error": f"{name} did not answer REQOpProcessList ({why})",
            }
            return
        await trio.sleep(interval)


# ------------------------------------------------------------------------------ error log


def _last_lines(path: Path, count: int) -> tuple[list[str], int]:
    """The last ``count`` complete lines of ``path`` and the offset after them."""
    try:
        with path.open("rb") as file:
            size = file.seek(0, 2)
            start = max(0, size - TAIL_READ_LIMIT)
            file.seek(start)
            data = file.read(size - start)
    except FileNotFoundError:
        return [], 0
    end = data.rfind(b"\n") + 1
    lines = data[:end].decode("utf-8", errors="replace").splitlines()
    if start > 0 and lines:
        lines = lines[1:]  # the first one may be cut
    return lines[-count:] if count else [], start + end


def _read_from(path: Path, offset: int) -> tuple[list[str], int]:
    """The complete lines written to ``path`` after ``offset``, and the offset after them;
    from the start again when the file became shorter (rotated or truncated)."""
    try:
        with path.open("rb") as file:
            size = file.seek(0, 2)
            if size < offset:
                offset = 0
            file.seek(offset)
            data = file.read(min(size - offset, TAIL_READ_LIMIT))
    except FileNotFoundError:
        return [], 0
    end = data.rfind(b"\n") + 1
    return data[:end].decode("utf-8", errors="replace").splitlines(), offset + end


async def error_log_lines(path: Path, count: int) -> list[str]:
    """The last ``count`` lines of the error log at ``path`` ([] while it does not exist)."""
    lines, _offset = await trio.to_thread.run_sync(_last_lines, path, count)
    return lines


async def tail_error_log(
    path: Path, *, last: int, poll: float = TAIL_POLL
) -> AsyncIterator[list[str]]:
    """The last ``last`` lines of the error log, then each batch of lines appended to it,
    until the consumer stops. A rotated or truncated file is read from its start."""
    lines, offset = await trio.to_thread.run_sync(_last_lines, path, last)
    yield lines
    while True:
        await trio.sleep(poll)
        lines, offset = await trio.to_thread.run_sync(_read_from, path, offset)
        if lines:
            yield lines


def check_count(value: str | None, name: str, *, default: int, maximum: int) -> int:
    """A whole number from a query parameter, 0 to ``maximum``; OperationError otherwise."""
    if value is None:
        return default
    if not value.isdigit() or int(value) > maximum:
        raise OperationError(
            f'field "{name}": value {value!r}; allowed: a whole number 0 to {maximum}'
        )
    return int(value)


def split_ids(value: str | None) -> list[str]:
    """Comma-separated message ids from a query parameter (empty: none)."""
    return [part for part in (value or "").split(",") if part]


def watch_from_query(query: Mapping[str, str]) -> dict[str, Any]:
    """The ``replies`` arguments from a query string (``ids``, ``deliveryIds`` comma lists;
    ``afterSeq``, ``timeout``, ``quiet`` numbers); the stream checks the values."""
    watch: dict[str, Any] = {
        "ids": split_ids(query.get("ids")),
        "deliveryIds": split_ids(query.get("deliveryIds")),
    }
    for key, kind in (("afterSeq", int), ("timeout", float), ("quiet", float)):
        text = query.get(key)
        if text is None or text == "":
            continue
        try:
            watch[key] = kind(text)
        except ValueError:
            raise OperationError(f'field "{key}": value {text!r}; allowed: a number') from None
    return watch


__all__ = [
    "OperationError",
    "Sent",
    "WebNode",
    "ask",
    "check_count",
    "command_document",
    "error_log_lines",
    "fleet",
    "follow_replies",
    "local_tree_events",
    "remote_tree_events",
    "request_document",
    "submit_document",
    "tail_error_log",
    "tree_request",
    "watch_from_query",
]
