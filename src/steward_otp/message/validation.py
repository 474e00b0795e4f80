"""Validation of meaning: what the constructor does not check.

:func:`validate_message` decides whether a message can be accepted as input (a known,
routable method, valid node names, clean paths, a sane schedule, a size the broker
carries); :func:`wire_errors` / :func:`check_wire` what stops any message, whatever its
method, from being published. Both report every problem as a
:class:`~steward_otp.message.MessageError` and never change the message.
"""

from __future__ import annotations

import re
from typing import Final

from steward_otp.limits import (
    NODE_NAME_RULE,
    PATH_TEXT_RULE,
    node_name_problem,
    path_text_problem,
    size_problem,
    size_rule,
)
from steward_otp.message.errors import MessageError, MessageFieldsError, show_value
from steward_otp.message.reading import _BAD
from steward_otp.message.record import Message
from steward_otp.methods import BUILTIN_METHODS, MethodTable, unknown_method_reason

_NODE_RULE: Final = NODE_NAME_RULE
_SUFFIX_TOKEN: Final = re.compile(r"[^\s.*>\x00-\x1f\x7f-\x9f]{1,128}")
_NODE_FIELDS: Final = (
    ("fromNode", "from_node"),
    ("relayViaNode", "relay_via_node"),
    ("relayFromNode", "relay_from_node"),
)
_PATH_FIELDS: Final = (("directory", "directory"), ("fileName", "file_name"))


def _check_message(
    message: Message, table: MethodTable, index: int | None, skip: frozenset[str] | set[str]
) -> tuple[list[MessageError], list[MessageError]]:
    errors: list[MessageError] = []
    warnings: list[MessageError] = []

    def error(field: str, value: object, reason: str, allowed: str | None) -> None:
        shown = None if value is _BAD else show_value(value)
        errors.append(MessageError(index, field, shown, reason, allowed))

    def node_name(field: str, value: str) -> None:
        problem = node_name_problem(value)
        if problem is not None:
            error(field, value, f"is not a valid node name: it {problem}", _NODE_RULE)

    if "method" not in skip:
        spec = table.lookup(message.method) if message.method else None
        # The list of methods goes into error texts only: built only when one may need it.
        valid = spec is not None and spec.routable
        routable = "" if valid else ", ".join(table.routable_names())
        if not message.method:
            error("method", _BAD, "is missing", routable)
        elif spec is None:
            error("method", message.method, unknown_method_reason(message.method), routable)
        elif not spec.routable:
            why = " (it is only valid as replyMethod)" if spec.reply_capable else ""
            error("method", message.method, f"cannot be sent as a request{why}", routable)
        elif message.method != spec.name:
            suffix = message.method[len(spec.name) :]
            if not suffix.startswith(".") or not _SUFFIX_TOKEN.fullmatch(suffix[1:]):
                error(
                    "method",
                    message.method,
                    "has an invalid sub-process suffix",
                    f"{spec.name}.<id> with one subject token of at most 128 characters as <id>",
                )

    if "toNode" not in skip and "toNodes" not in skip:
        if not message.to_node and not message.to_nodes:
            error(
                "toNode",
                _BAD,
                "is missing and toNodes is empty",
                f"{_NODE_RULE}; or toNodes: a list of node names",
            )
        elif message.to_node and message.to_nodes:
            warnings.append(
                MessageError(
                    index,
                    "toNodes",
                    show_value(list(message.to_nodes)),
                    "is ignored because toNode is set",
                    None,
                )
            )
    if message.to_node and "toNode" not in skip:
        node_name("toNode", message.to_node)
    if not message.to_node and "toNodes" not in skip:
        for i, node in enumerate(message.to_nodes):
            node_name(f"toNodes[{i}]", node)
    for key, name in _NODE_FIELDS:
        value = getattr(message, name)
        if value and key not in skip:
            node_name(key, value)
    for key, name in _PATH_FIELDS:
        value = getattr(message, name)
        problem = path_text_problem(value) if key not in skip else None
        if problem is not None:
            error(key, value, problem, PATH_TEXT_RULE)

    if message.reply_method and "replyMethod" not in skip:
        reply_spec = table.lookup(message.reply_method)
        valid = reply_spec is not None and reply_spec.reply_capable
        allowed = "" if valid else ", ".join(table.reply_method_names())
        if reply_spec is None:
            reason = unknown_method_reason(message.reply_method)
            error("replyMethod", message.reply_method, reason, allowed)
        elif not reply_spec.reply_capable:
            error("replyMethod", message.reply_method, "cannot be used as replyMethod", allowed)

    if message.schedule and "schedule" not in skip:
        allowed = "[intervalSeconds, totalSeconds], both at least 1, or no schedule"
        if len(message.schedule) != 2:
            error("schedule", list(message.schedule), "does not have exactly 2 elements", allowed)
        else:
            for i, seconds in enumerate(message.schedule):
                if seconds < 1:
                    error(f"schedule[{i}]", seconds, "is not a positive number of seconds", allowed)

    if not errors:  # the size is only worth computing for an otherwise valid message
        too_large = size_problem(message)
        if too_large is not None:
            error(too_large[0], _BAD, too_large[1], size_rule())
    return errors, warnings


def validate_message(
    message: Message, *, table: MethodTable = BUILTIN_METHODS, index: int | None = None
) -> list[MessageError]:
    """Check what the constructor does not: that ``message`` can be accepted as input.

    Reports (each as a :class:`MessageError` naming field, value and what is allowed): a
    missing, unknown or reply-only ``method``; neither ``toNode`` nor ``toNodes``; invalid node
    names (``toNode``, ``toNodes``, ``fromNode``, ``relayViaNode``, ``relayFromNode``: see
    :data:`~steward_otp.limits.NODE_NAME_RULE`); control characters in ``directory`` or
    ``fileName``; a ``replyMethod`` that is unknown or not reply-capable; a ``schedule``
    that is not empty or two positive integers; a message too large for the broker (see
    :data:`~steward_otp.limits.MAX_ENCODED_MESSAGE_BYTES`). An empty list means valid.
    """
    return _check_message(message, table, index, frozenset())[0]


def wire_errors(message: Message, *, index: int | None = None) -> list[MessageError]:
    """What stops ``message`` from being published, whatever its method: an invalid
    ``toNode``, ``fromNode``, ``relayViaNode`` or ``relayFromNode`` (empty ones are not
    checked) or an encoding too large for the broker. An empty list means it can be sent.

    For messages that did not come through an input (replies to a node named by the bus,
    relayed messages): the outbox can refuse them before they are stored.
    """
    errors: list[MessageError] = []
    for key, value in (("toNode", message.to_node), *_wire_node_values(message)):
        problem = node_name_problem(value) if value else None
        if problem is not None:
            reason = f"is not a valid node name: it {problem}"
            errors.append(MessageError(index, key, show_value(value), reason, _NODE_RULE))
    too_large = size_problem(message) if not errors else None
    if too_large is not None:
        errors.append(MessageError(index, too_large[0], None, too_large[1], size_rule()))
    return errors


def _wire_node_values(message: Message) -> list[tuple[str, str]]:
    return [(key, getattr(message, name)) for key, name in _NODE_FIELDS]


def check_wire(message: Message) -> None:
    """Raise :class:`MessageFieldsError` (a ``ValueError``) naming every problem
    :func:`wire_errors` finds; return quietly when ``message`` can be sent."""
    errors = wire_errors(message)
    if errors:
        raise MessageFieldsError(errors)
