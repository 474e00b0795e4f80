"""The common path of every input: parse, validate, fan out, make durable, answer.

Every input (unix socket, TCP, HTTP, read folder) hands the raw document to
:func:`accept_document` and sends back what it returns: one :class:`Answer` per message —
the id it was accepted under, or what was wrong with it (index, field, value, what is
allowed). A message fanned out to several nodes gives one answer per node. Nothing is
answered as accepted before it is durable in the outbox.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs

from steward_otp.inputs.parsing import parse_document
from steward_otp.jetstream.layout import BROADCAST_NODE
from steward_otp.message import LOCAL_NODE, Message, MessageError, fan_out, show_value
from steward_otp.methods import MethodTable
from steward_otp.store.schema import StoreError

Submit = Callable[[Sequence[Message]], Awaitable[list[str]]]


@attrs.frozen
class Answer:
    """What an input tells its client about one message."""

    index: int | None
    accepted: bool
    id: str | None = None
    to_node: str | None = None
    method: str | None = None
    error: MessageError | None = None
    warnings: tuple[MessageError, ...] = ()
    """What was ignored or reinterpreted in this message (it was accepted or rejected anyway)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON form: ``{"index", "status": "accepted", "id", "toNode", "method",
        "warnings"}`` or ``{"index", "status": "rejected", "error", "field", "value",
        "allowed", "warnings"}``; ``warnings`` is a list of one-line texts (often empty)."""
        warnings = [str(w) for w in self.warnings]
        if self.accepted:
            return {
                "index": self.index,
                "status": "accepted",
                "id": self.id,
                "toNode": self.to_node,
                "method": self.method,
                "warnings": warnings,
            }
        assert self.error is not None
        return {
            "index": self.index,
            "status": "rejected",
            "error": str(self.error),
            "field": self.error.field,
            "value": self.error.value,
            "allowed": self.error.allowed,
            "warnings": warnings,
        }

    def to_json_line(self) -> str:
        """One line of JSON, newline-terminated."""
        return json.dumps(self.to_dict(), ensure_ascii=False) + "\n"


def document_rejection(error: str, allowed: str | None = None) -> dict[str, Any]:
    """An answer about the whole document (not one message), shaped like a rejected answer."""
    return {
        "index": None,
        "status": "rejected",
        "error": error,
        "field": None,
        "value": None,
        "allowed": allowed,
        "warnings": [],
    }


async def accept_document(
    document: bytes | str,
    *,
    node_name: str,
    submit: Submit,
    table: MethodTable,
    force_from_node: bool = True,
    require_from_node: bool = False,
    jetstream: bool = False,
) -> list[Answer]:
    """Parse ``document``, make every valid message durable, and say what happened to each.

    ``force_from_node`` sets ``fromNode`` to this node (every input but the startup folder
    does, so replies come back here): a message naming another node gets this node's name
    here, one naming none is left for the outbox, which fills in the same name. With
    ``require_from_node`` (and ``force_from_node`` off) a message without ``fromNode`` is
    rejected with an error naming that field.
    ``local`` in ``toNode``/``toNodes`` means this node. ``jetstream`` tells whether this
    node's delivery is JetStream: without it, a broadcast (``toNode: all``) that does not
    set ``"jetstream": true`` is refused here, since core NATS could never deliver it.
    Invalid messages are answered with their error and change nothing; the valid ones in
    the same batch still go through.
    """
    result = await parse_document(document, table=table)
    noted = _warnings_by_index(result.warnings)

    def warnings_of(index: int | None) -> tuple[MessageError, ...]:
        return noted.get(index, ()) + (noted.get(None, ()) if index is not None else ())

    answers = [
        Answer(index=e.index, accepted=False, error=e, warnings=warnings_of(e.index))
        for e in result.errors
    ]
    outgoing: list[tuple[int | None, Message]] = []
    for index, parsed in zip(result.indexes, result.messages, strict=True):
        if require_from_node and not force_from_node and not parsed.from_node:
            answers.append(
                Answer(
                    index=index,
                    accepted=False,
                    error=_missing_from_node(index),
                    warnings=warnings_of(index),
                )
            )
            continue
        # fromNode is set in the fan-out's one copy per destination: no extra copy. An
        # empty one is left for the outbox, which fills in this node's name anyway.
        from_node = node_name if force_from_node and parsed.from_node else None
        for copy in fan_out(parsed, node_name, from_node=from_node):
            refusal = _core_broadcast(parsed, copy, node_name, jetstream, index)
            if refusal is None:
                outgoing.append((index, copy))
            else:
                answers.append(
                    Answer(
                        index=index,
                        accepted=False,
                        error=refusal,
                        warnings=warnings_of(index),
                    )
                )
    if outgoing:
        try:
            ids = await submit([m for _, m in outgoing])
        except (StoreError, ValueError) as exc:
            # The outbox could not take the batch (e.g. the store is restarting): say so for
            # every message instead of dropping the client's connection without an answer.
            answers.extend(
                Answer(
                    index=i,
                    accepted=False,
                    to_node=m.to_node,
                    method=m.method,
                    error=MessageError(
                        i, None, None, f"was not accepted: {exc}; send it again", None
                    ),
                    warnings=warnings_of(i),
                )
                for i, m in outgoing
            )
        else:
            answers.extend(
                Answer(
                    index=i,
                    accepted=True,
                    id=msg_id,
                    to_node=m.to_node,
                    method=m.method,
                    warnings=warnings_of(i),
                )
                for (i, m), msg_id in zip(outgoing, ids, strict=True)
            )
    answers.sort(key=lambda a: (a.index is not None, a.index or 0))
    return answers


def _core_broadcast(
    parsed: Message, copy: Message, node_name: str, jetstream: bool, index: int | None
) -> MessageError | None:
    """Why ``copy`` (of ``parsed``) is a broadcast core NATS would have to carry, or None.

    A broadcast reaches every node only through the JetStream stream: one that would leave
    this node by core NATS could never be delivered (the outbox would fail it later).
    A relayed one is left to the relay node unless it says ``"jetstream": false``.
    """
    if copy.to_node != BROADCAST_NODE:
        return None
    direct = copy.relay_via_node in ("", LOCAL_NODE, node_name)
    if copy.jetstream or (copy.jetstream is None and (jetstream or not direct)):
        return None
    field = (
        "toNode" if parsed.to_node else f"toNodes[{list(parsed.to_nodes).index(BROADCAST_NODE)}]"
    )
    why = (
        'the message sets "jetstream": false'
        if copy.jetstream is False
        else 'this node\'s delivery is "core" and the message does not set "jetstream"'
    )
    return MessageError(
        index,
        field,
        show_value(BROADCAST_NODE),
        f"is a broadcast, which reaches every node only through JetStream, but {why}",
        'a node name; to broadcast, set "jetstream": true on the message or run the node '
        "with --delivery jetstream",
    )


def _warnings_by_index(
    warnings: Sequence[MessageError],
) -> dict[int | None, tuple[MessageError, ...]]:
    """The parser's warnings grouped by message index (None: about the whole document)."""
    grouped: dict[int | None, tuple[MessageError, ...]] = {}
    for warning in warnings:
        grouped[warning.index] = (*grouped.get(warning.index, ()), warning)
    return grouped


def _missing_from_node(index: int | None) -> MessageError:
    return MessageError(
        index,
        "fromNode",
        None,
        "is missing; this input keeps fromNode as written, and replies go to it",
        "the name of the node that should receive the replies",
    )


def rejection_texts(answers: Sequence[Answer], source: str) -> list[str]:
    """Error-kernel lines for the rejected answers of one document read by ``source``.

    A document that could not be read at all gives Steward's
    ``error: malformed json received on <source>: <error>``; each rejected message gives
    ``error: <source>: message rejected: <error>``. Accepted answers give nothing.
    """
    texts = []
    for answer in answers:
        if answer.accepted or answer.error is None:
            continue
        if answer.index is None and answer.error.field is None:
            texts.append(f"error: malformed json received on {source}: {answer.error}")
        else:
            texts.append(f"error: {source}: message rejected: {answer.error}")
    return texts


def warning_texts(answers: Sequence[Answer], source: str) -> list[str]:
    """Log lines for the warnings of one document read by ``source``, once per warning
    (a message fanned out to several nodes has the same warnings in each of its answers):
    ``warning: <source>: message 0: field "AckTimeout" is not a known field ...``.

    For inputs whose client never sees the answers (read folder, startup folder), so a typo
    that makes a message behave differently is at least in the node's log.
    """
    seen: dict[str, None] = {}
    for answer in answers:
        for warning in answer.warnings:
            seen.setdefault(f"warning: {source}: {warning}")
    return list(seen)
