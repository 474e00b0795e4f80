"""The Message record and everything pure around it: input parsing, validation, ids,
fan-out, defaults, subjects and reply construction.

Field names follow the Steward wire format (``toNode``, ``ACKTimeout``, ...) on input and
output and are snake_case in Python (``to_node``, ``ack_timeout``, ...). A message is a
frozen value: derive changed copies with ``attrs.evolve``.

One module per topic; import the names from this package, which holds them all:

* :mod:`~steward_otp.message.fields` — the field table (names, wire keys, value kinds) and
  the limits on values.
* :mod:`~steward_otp.message.record` — the :class:`Message` record and its constructor
  checks.
* :mod:`~steward_otp.message.errors` — :class:`MessageError`, :class:`MessageFieldsError`:
  problems told to people.
* :mod:`~steward_otp.message.reading` — JSON/YAML-shaped values into fields, and the
  decisions on input for values.
* :mod:`~steward_otp.message.validation` — validation of meaning, and what stops a message
  from being published.
* :mod:`~steward_otp.message.documents` — documents of messages (:func:`parse_messages`,
  :class:`ParseResult`, :func:`dump_json`, :func:`dump_yaml`), and the decisions on input
  for documents.
* :mod:`~steward_otp.message.preparation` — ids, fan-out, node defaults.
* :mod:`~steward_otp.message.routing` — subjects and replies.

Input (``parse_messages`` / ``Message.from_dict``) is lenient in documented ways, listed in
:mod:`~steward_otp.message.documents` (the document) and :mod:`~steward_otp.message.reading`
(the values). ``parse_messages`` reports a bad message and leaves it out, and never raises.
"""

from __future__ import annotations

# record first: it imports reading at its end, and reading takes names from record.
from steward_otp.message.record import Message

# isort: split
from steward_otp.message.documents import ParseResult, dump_json, dump_yaml, parse_messages
from steward_otp.message.documents import _DocumentError as _DocumentError
from steward_otp.message.errors import MessageError, MessageFieldsError, show_value
from steward_otp.message.fields import (
    FIELD_NAMES,
    INT64_MAX,
    INT64_MIN,
    MAX_PREVIOUS_DEPTH,
    MESSAGE_FIELDS,
    FieldInfo,
    FieldKind,
)
from steward_otp.message.preparation import (
    LOCAL_NODE,
    METHOD_TIMEOUT_FOREVER,
    MessageDefaults,
    apply_defaults,
    defaulted_settings,
    ensure_id,
    fan_out,
    new_message_id,
)
from steward_otp.message.reading import _BadBase64 as _BadBase64
from steward_otp.message.reading import _RepeatedKeys as _RepeatedKeys
from steward_otp.message.reading import _TextFloat as _TextFloat
from steward_otp.message.reading import _TextInt as _TextInt
from steward_otp.message.routing import (
    ERROR_FILE_SUFFIX,
    build_reply,
    subject_for,
    subject_for_node,
    uses_ack,
)
from steward_otp.message.validation import check_wire, validate_message, wire_errors

__all__ = [
    "ERROR_FILE_SUFFIX",
    "FIELD_NAMES",
    "INT64_MAX",
    "INT64_MIN",
    "LOCAL_NODE",
    "MAX_PREVIOUS_DEPTH",
    "MESSAGE_FIELDS",
    "METHOD_TIMEOUT_FOREVER",
    "FieldInfo",
    "FieldKind",
    "Message",
    "MessageDefaults",
    "MessageError",
    "MessageFieldsError",
    "ParseResult",
    "apply_defaults",
    "build_reply",
    "check_wire",
    "defaulted_settings",
    "dump_json",
    "dump_yaml",
    "ensure_id",
    "fan_out",
    "new_message_id",
    "parse_messages",
    "show_value",
    "subject_for",
    "subject_for_node",
    "uses_ack",
    "validate_message",
    "wire_errors",
]
