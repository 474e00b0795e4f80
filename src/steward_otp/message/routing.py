"""Subjects and replies: where a message is published, and the reply that goes back.

:func:`subject_for` names the NATS subject from the method table (never from the message);
:func:`build_reply` builds the reply to a request as Steward does (§4.5), keeping the
``previousMessage`` chain within :data:`~steward_otp.message.MAX_PREVIOUS_DEPTH`.
"""

from __future__ import annotations

from typing import Final

import attrs

from steward_otp.message.fields import MAX_PREVIOUS_DEPTH
from steward_otp.message.preparation import _DATA_AT, new_message_id
from steward_otp.message.record import (
    _DEFAULT_VALUES,
    _FIELD_INDEX,
    _PREVIOUS_INDEX,
    Message,
    _chain_length,
)
from steward_otp.methods import (
    BUILTIN_METHODS,
    DEFAULT_REPLY_METHOD,
    NO_REPLY,
    MethodSpec,
    MethodTable,
)

ERROR_FILE_SUFFIX: Final = ".error"
"""Appended to ``fileName`` of error replies, so errors land next to the normal output."""


def subject_for_node(node: str, method_spec: MethodSpec, *, method_name: str | None = None) -> str:
    """``<node>.<method>.<kind>`` for ``method_spec``.

    Pass ``method_name`` for sub-process methods whose full name carries a suffix
    (``REQSUBCopySrc.<uuid>``); the kind always comes from ``method_spec``.
    """
    return f"{node}.{method_name or method_spec.name}.{method_spec.kind.value}"


def subject_for(message: Message, table: MethodTable = BUILTIN_METHODS) -> str:
    """The NATS subject ``message`` is published on: ``<toNode>.<method>.<kind>``.

    The kind comes from the method table, not from the message; a reply whose method the
    table does not know goes as ``EventACK`` (see :meth:`MethodTable.routing_spec`). Raises
    ``UnknownMethodError`` for any other unknown method and ``ValueError`` when ``toNode``
    is empty (fan the message out first).
    """
    spec = table.routing_spec(message.method, reply=message.is_reply)
    if not message.to_node:
        raise ValueError("message has no toNode; fan it out before routing it")
    return subject_for_node(message.to_node, spec, method_name=message.method)


def uses_ack(message: Message) -> bool:
    """True when delivery of ``message`` is acknowledged (``ACKTimeout >= 1``)."""
    return message.ack_timeout >= 1


def _trim_chain(message: Message | None, keep: int) -> Message | None:
    if message is None or keep <= 0:
        return None
    if _chain_length(message) <= keep:
        return message
    return attrs.evolve(message, previous_message=_trim_chain(message.previous_message, keep - 1))


def build_reply(request: Message, output: bytes, *, error: bool = False) -> Message | None:
    """The reply carrying ``output`` back to whoever sent ``request`` (Steward §4.5).

    None when ``request.replyMethod`` is ``REQNone`` or ``request`` is itself a reply.
    Otherwise: ``toNode``/``fromNode`` swapped, ``method`` = ``replyMethod`` (empty →
    ``REQToFileAppend``), ``methodArgs``/``methodTimeout``/``ACKTimeout``/``retries`` taken
    from the ``reply*`` fields, ``retryWait``/``directory``/``fileName`` copied,
    ``isReply`` true, ``previousMessage`` = the request with ``data`` cleared, a fresh id,
    everything else default -- except ``jetstream``: a reply to a request that named it
    travels core NATS (``False``), which reaches its sender whatever that node's delivery
    (a core node consumes no stream); otherwise the replying node's default decides.
    ``error=True`` appends ``.error`` to ``fileName`` in the reply
    and in its ``previousMessage``, so the output path points at the sibling error file.
    """
    if request.reply_method == NO_REPLY or request.is_reply:
        return None
    if error:
        request = attrs.evolve(request, file_name=request.file_name + ERROR_FILE_SUFFIX)
    values = list(request.field_values())  # one copy, as fan_out makes them
    values[_DATA_AT] = b""
    values[_PREVIOUS_INDEX] = _trim_chain(request.previous_message, MAX_PREVIOUS_DEPTH - 1)
    previous = Message.from_field_values(values)
    reply = list(_DEFAULT_VALUES)
    for name, value in (
        ("to_node", request.from_node),
        ("from_node", request.to_node),
        ("id", new_message_id(request.to_node)),
        ("data", output),
        ("method", request.reply_method or DEFAULT_REPLY_METHOD),
        ("method_args", request.reply_method_args),
        ("method_timeout", request.reply_method_timeout),
        ("ack_timeout", request.reply_ack_timeout),
        ("retries", request.reply_retries),
        ("retry_wait", request.retry_wait),
        ("directory", request.directory),
        ("file_name", request.file_name),
        ("is_reply", True),
        ("previous_message", previous),
        ("jetstream", None if request.jetstream is None else False),
    ):
        reply[_FIELD_INDEX[name]] = value
    # Values of a checked message in checked fields: the decoder's fast path takes them
    # (output, bytes of any size, is checked like any data).
    return Message.from_field_values(reply)
