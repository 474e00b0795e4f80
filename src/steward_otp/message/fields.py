"""The fields of a message: names, wire keys, value kinds, and the limits on their values.

Field names follow the Steward wire format (``toNode``, ``ACKTimeout``, ...) on input and
output and are snake_case in Python (``to_node``, ``ack_timeout``, ...).
:data:`MESSAGE_FIELDS` is the one table of them, in attribute (and wire) order: the record,
the reader, the codec and signing all take the order and the names from it.
"""

from __future__ import annotations

import enum
from typing import Final

import attrs

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
MAX_PREVIOUS_DEPTH: Final = 32
"""Longest chain of nested ``previous_message`` records a Message may carry."""


class FieldKind(enum.Enum):
    """The value type of a message field."""

    STR = "a string"
    STRS = "a list of strings"
    BYTES = 'a string (taken as UTF-8), {"base64": "..."}, !!binary, or a list of byte values 0-255'
    INT = f"an integer from {INT64_MIN} to {INT64_MAX}"
    BOOL = "true or false"
    MESSAGE = "a message object or null"
    INTS = "a list of integers"
    FLAG = "true or false (leave it out for the node's delivery default)"


@attrs.frozen
class FieldInfo:
    """One message field: Python attribute name, wire/JSON/YAML key, value kind."""

    name: str
    key: str
    kind: FieldKind


_K = FieldKind
MESSAGE_FIELDS: Final[tuple[FieldInfo, ...]] = tuple(
    FieldInfo(name, key, kind)
    for name, key, kind in (
        # Steward's 23 fields, in Steward's order.
        ("to_node", "toNode", _K.STR),
        ("to_nodes", "toNodes", _K.STRS),
        ("id", "id", _K.STR),
        ("data", "data", _K.BYTES),
        ("method", "method", _K.STR),
        ("method_args", "methodArgs", _K.STRS),
        ("arg_signature", "argSignature", _K.BYTES),
        ("reply_method", "replyMethod", _K.STR),
        ("reply_method_args", "replyMethodArgs", _K.STRS),
        ("is_reply", "isReply", _K.BOOL),
        ("from_node", "fromNode", _K.STR),
        ("ack_timeout", "ACKTimeout", _K.INT),
        ("retry_wait", "retryWait", _K.INT),
        ("is_sub_published_msg", "isSubPublishedMsg", _K.BOOL),
        ("retries", "retries", _K.INT),
        ("reply_ack_timeout", "replyACKTimeout", _K.INT),
        ("reply_retries", "replyRetries", _K.INT),
        ("method_timeout", "methodTimeout", _K.INT),
        ("reply_method_timeout", "replyMethodTimeout", _K.INT),
        ("directory", "directory", _K.STR),
        ("file_name", "fileName", _K.STR),
        ("previous_message", "previousMessage", _K.MESSAGE),
        ("schedule", "schedule", _K.INTS),
        # Relay fields, after Steward's.
        ("relay_via_node", "relayViaNode", _K.STR),
        ("relay_reply_method", "relayReplyMethod", _K.STR),
        ("relay_from_node", "relayFromNode", _K.STR),
        ("relay_original_method", "relayOriginalMethod", _K.STR),
        # Delivery choice, after the relay fields: True through the JetStream stream, False
        # through core NATS, None (absent) the sending node's ``delivery`` default.
        ("jetstream", "jetstream", _K.FLAG),
    )
)
"""Every field of :class:`Message`, in attribute (and wire) order."""

FIELD_NAMES: Final[tuple[str, ...]] = tuple(f.name for f in MESSAGE_FIELDS)
"""Attribute names of :class:`Message`, in order."""
_FIELD_COUNT: Final = len(FIELD_NAMES)
