"""The Message record and everything pure around it: input parsing, validation, ids,
fan-out, defaults, subjects and reply construction.

Field names follow the Steward wire format (``toNode``, ``ACKTimeout``, ...) on input and
output and are snake_case in Python (``to_node``, ``ack_timeout``, ...). A message is a
frozen value: derive changed copies with ``attrs.evolve``.

Decisions on input (``parse_messages`` / ``Message.from_dict``), in one place:

* A document is JSON or YAML (tried in that order; JSON with trailing commas is accepted) and
  holds a list of messages, one message object, or several YAML documents of either shape.
  NUL bytes are trimmed from both ends; an empty document holds no messages.
* ``null`` for a field means "absent" (its default).
* ``data`` is bytes. A string becomes its UTF-8 bytes; ``{"base64": "..."}`` and YAML
  ``!!binary`` carry arbitrary bytes; a list of integers 0–255 is taken as the bytes
  themselves. A list of strings is the pre-2022 Steward form, where ``data`` held what is now
  ``methodArgs``: a list of empty strings (the old ``[""]`` placeholder) is read as empty data
  with a warning, any other list of strings is rejected with an error naming ``data``.
* Numbers given for string fields are read as their text (YAML keeps the spelling, so
  ``0700`` stays ``"0700"``); ``true``/``false`` become ``"true"``/``"false"``. YAML's
  ``yes``/``no``/``on``/``off`` and dates are plain strings here.
* ``id`` is a text id; a numeric id (Steward's ring-buffer number) is ignored with a warning.
  Parsing leaves a missing id empty; the input layer calls :func:`ensure_id` on accepted
  messages.
* Unknown keys are ignored and reported as warnings (with a "did you mean" for keys that
  differ only in case, e.g. ``RetryWait``). ``previousMessage`` is also read from
  ``PreviousMessage`` and ``previousmessage``.
* One bad message yields :class:`MessageError` records and is left out; the rest of the batch
  goes through. Parsing never raises.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import operator
import os
import re
import reprlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

import attrs

from steward_otp.limits import (
    MAX_MESSAGES_PER_DOCUMENT,
    NODE_NAME_RULE,
    PATH_TEXT_RULE,
    node_name_problem,
    path_text_problem,
    size_problem,
    size_rule,
)
from steward_otp.methods import (
    BUILTIN_METHODS,
    DEFAULT_REPLY_METHOD,
    NO_REPLY,
    MethodSpec,
    MethodTable,
    unknown_method_reason,
)

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

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
MAX_PREVIOUS_DEPTH: Final = 32
"""Longest chain of nested ``previous_message`` records a Message may carry."""
LOCAL_NODE: Final = "local"
"""``toNode`` alias for "this node", replaced by :func:`fan_out`."""
METHOD_TIMEOUT_FOREVER: Final = -1
"""``methodTimeout`` value meaning "no timeout"."""
ERROR_FILE_SUFFIX: Final = ".error"
"""Appended to ``fileName`` of error replies, so errors land next to the normal output."""


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

_PREVIOUS_KEYS: Final = ("previousMessage", "PreviousMessage", "previousmessage")


# --- Constructor checks. Converters normalise acceptable inputs (lists, str/int
# subclasses, bytes-like values) to the exact types; anything else passes through unchanged
# so that the validator can reject it with the field's name.


def _as_str(value: str) -> str:
    return str(value) if isinstance(value, str) and type(value) is not str else value


def _as_int(value: int) -> int:
    if type(value) is int or isinstance(value, bool) or not isinstance(value, int):
        return value
    return int(value)


def _as_bytes(value: bytes | bytearray | memoryview) -> bytes:
    if type(value) is not bytes and isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return value


def _as_str_tuple(value: Sequence[str]) -> tuple[str, ...]:
    if isinstance(value, list | tuple) and (
        type(value) is not tuple or not set(map(type, value)) <= {str}
    ):
        return tuple(_as_str(item) for item in value)
    return value  # type: ignore[return-value]  # not a sequence: the validator says so


def _as_int_tuple(value: Sequence[int]) -> tuple[int, ...]:
    if isinstance(value, list | tuple) and (
        type(value) is not tuple or not set(map(type, value)) <= {int}
    ):
        return tuple(_as_int(item) for item in value)
    return value  # type: ignore[return-value]  # not a sequence: the validator says so


def _type_error(field: attrs.Attribute[Any], expected: str, value: object) -> TypeError:
    return TypeError(f"Message.{field.name} must be {expected}, got {type(value).__name__}")


def _is_str(_instance: object, field: attrs.Attribute[Any], value: object) -> None:
    if type(value) is not str:
        raise _type_error(field, "a str", value)


def _is_str_tuple(_instance: object, field: attrs.Attribute[Any], value: object) -> None:
    if type(value) is not tuple:
        raise _type_error(field, "a tuple of str", value)
    for item in value:
        if type(item) is not str:
            raise _type_error(field, "a tuple of str", item)


def _is_bytes(_instance: object, field: attrs.Attribute[Any], value: object) -> None:
    if type(value) is not bytes:
        raise _type_error(field, "bytes", value)


def _is_int64(_instance: object, field: attrs.Attribute[Any], value: object) -> None:
    if type(value) is not int:
        raise _type_error(field, "an int", value)
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"Message.{field.name} is outside the signed 64-bit range: {value}")


def _is_int64_tuple(instance: object, field: attrs.Attribute[Any], value: object) -> None:
    if type(value) is not tuple:
        raise _type_error(field, "a tuple of int", value)
    for item in value:
        _is_int64(instance, field, item)


def _is_bool(_instance: object, field: attrs.Attribute[Any], value: object) -> None:
    if type(value) is not bool:
        raise _type_error(field, "a bool", value)


def _is_flag(_instance: object, field: attrs.Attribute[Any], value: object) -> None:
    if value is not None and type(value) is not bool:
        raise _type_error(field, "True, False or None", value)


def _chain_length(message: Message | None) -> int:
    length = 0
    while message is not None:
        length += 1
        message = message.previous_message
    return length


def _is_previous(_instance: object, field: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if type(value) is not Message:
        raise _type_error(field, "a Message or None", value)
    if _chain_length(value) > MAX_PREVIOUS_DEPTH:
        raise ValueError(
            f"Message.{field.name} nests more than {MAX_PREVIOUS_DEPTH} previous messages"
        )


def _str_field() -> Any:
    return attrs.field(default="", converter=_as_str, validator=_is_str)


def _int_field() -> Any:
    return attrs.field(default=0, converter=_as_int, validator=_is_int64)


def _bool_field() -> Any:
    return attrs.field(default=False, validator=_is_bool)


@attrs.frozen(kw_only=True)
class Message:
    """One Steward message: a request or a reply, with exactly the fields of the wire format.

    Construction checks types (str, tuple of str, bytes, bool, signed 64-bit int) and raises
    ``TypeError``/``ValueError`` naming the field; lists become tuples, bytes-like values
    bytes, str/int subclasses plain str/int. It does not check meaning (known method, node
    names, schedule shape): that is :func:`validate_message`.

    ``id`` is a globally unique text id used for de-duplication ("" until assigned, see
    :func:`ensure_id`). ``previous_message`` is the request a reply answers (its ``data``
    cleared); chains are at most :data:`MAX_PREVIOUS_DEPTH` long.
    """

    to_node: str = _str_field()
    to_nodes: tuple[str, ...] = attrs.field(
        default=(), converter=_as_str_tuple, validator=_is_str_tuple
    )
    id: str = _str_field()
    data: bytes = attrs.field(default=b"", converter=_as_bytes, validator=_is_bytes, repr=False)
    method: str = _str_field()
    method_args: tuple[str, ...] = attrs.field(
        default=(), converter=_as_str_tuple, validator=_is_str_tuple
    )
    arg_signature: bytes = attrs.field(
        default=b"", converter=_as_bytes, validator=_is_bytes, repr=False
    )
    reply_method: str = _str_field()
    reply_method_args: tuple[str, ...] = attrs.field(
        default=(), converter=_as_str_tuple, validator=_is_str_tuple
    )
    is_reply: bool = _bool_field()
    from_node: str = _str_field()
    ack_timeout: int = _int_field()
    retry_wait: int = _int_field()
    is_sub_published_msg: bool = _bool_field()
    retries: int = _int_field()
    reply_ack_timeout: int = _int_field()
    reply_retries: int = _int_field()
    method_timeout: int = _int_field()
    reply_method_timeout: int = _int_field()
    directory: str = _str_field()
    file_name: str = _str_field()
    previous_message: Message | None = attrs.field(default=None, validator=_is_previous)
    schedule: tuple[int, ...] = attrs.field(
        default=(), converter=_as_int_tuple, validator=_is_int64_tuple
    )
    relay_via_node: str = _str_field()
    relay_reply_method: str = _str_field()
    relay_from_node: str = _str_field()
    relay_original_method: str = _str_field()
    jetstream: bool | None = attrs.field(default=None, validator=_is_flag)
    """True: delivered through the JetStream stream; False: through core NATS; None: as
    the sending node's ``delivery`` setting says. Set on a message, it wins."""

    def field_values(self) -> tuple[Any, ...]:
        """All field values in :data:`FIELD_NAMES` order (one C-level call)."""
        return _GET_ALL(self)

    @classmethod
    def from_field_values(cls, values: Sequence[Any]) -> Message:
        """Build a Message from values in :data:`FIELD_NAMES` order, as a decoder has them.

        Besides what the constructor accepts, list and bytes fields may be None (empty, as
        Go encodes nil). Values of exact types take a fast path; anything else goes through
        the constructor, so results and errors (``TypeError``/``ValueError`` naming the
        field) are the same either way. ``values`` is not modified.
        """
        if len(values) != _FIELD_COUNT:
            raise ValueError(f"expected {_FIELD_COUNT} field values, got {len(values)}")
        fields = list(values)
        if _normalise_fields(fields):
            return _build_unchecked(fields)
        return cls(**dict(zip(FIELD_NAMES, fields, strict=True)))

    def to_dict(self) -> dict[str, Any]:
        """The message as JSON/YAML-ready data with Steward's key names.

        Fields equal to their default are left out. ``data``/``argSignature`` are a string
        when they are valid UTF-8, else ``{"base64": "..."}``. ``Message.from_dict`` (and
        ``parse_messages`` on the JSON or YAML text of it) gives back an equal Message.
        """
        out: dict[str, Any] = {}
        for info, value in zip(MESSAGE_FIELDS, _GET_ALL(self), strict=True):
            if value == _DEFAULTS[info.name]:
                continue
            if info.kind is FieldKind.BYTES:
                out[info.key] = _bytes_to_doc(value)
            elif info.kind is FieldKind.MESSAGE:
                out[info.key] = value.to_dict()
            elif info.kind in (FieldKind.STRS, FieldKind.INTS):
                out[info.key] = list(value)
            else:
                out[info.key] = value
        return out

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any]) -> Message:
        """Read a message from JSON/YAML-shaped data (the inverse of :meth:`to_dict`).

        Checks value types only, not meaning (see :func:`validate_message`); unknown keys
        are ignored. Raises :class:`MessageFieldsError` listing every bad field.
        """
        reader = _Reader(index=None)
        message = reader.message(mapping, "", depth=0)
        if reader.errors or message is None:
            raise MessageFieldsError(reader.errors)
        return message


_GET_ALL: Final = operator.attrgetter(*FIELD_NAMES)
_DEFAULTS: Final[dict[str, Any]] = {a.name: a.default for a in attrs.fields(Message)}
_DEFAULT_ITEMS: Final = tuple((name, _DEFAULTS[name]) for name in FIELD_NAMES)


def _indexes(kind: FieldKind) -> list[int]:
    return [i for i, info in enumerate(MESSAGE_FIELDS) if info.kind is kind]


def _getter(indexes: list[int]) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    if len(indexes) == 1:
        only = indexes[0]
        return lambda values: (values[only],)
    return operator.itemgetter(*indexes)


_STRS_INDEXES: Final = tuple(_indexes(FieldKind.STRS))
_BYTES_INDEXES: Final = tuple(_indexes(FieldKind.BYTES))
_INT_AT = _getter(_indexes(FieldKind.INT))
(_PREVIOUS_INDEX,) = _indexes(FieldKind.MESSAGE)
(_SCHEDULE_INDEX,) = _indexes(FieldKind.INTS)
(_FLAG_INDEX,) = _indexes(FieldKind.FLAG)
_KIND_TYPES: Final[dict[FieldKind, type]] = {
    FieldKind.STR: str,
    FieldKind.STRS: tuple,
    FieldKind.BYTES: bytes,
    FieldKind.INT: int,
    FieldKind.BOOL: bool,
    FieldKind.MESSAGE: type(None),
    FieldKind.INTS: tuple,
    FieldKind.FLAG: type(None),
}


def _exact_types(previous: type, flag: type) -> tuple[type, ...]:
    types = [_KIND_TYPES[info.kind] for info in MESSAGE_FIELDS]
    types[_PREVIOUS_INDEX], types[_FLAG_INDEX] = previous, flag
    return tuple(types)


_TYPES_WITHOUT_PREVIOUS: Final = frozenset(
    _exact_types(type(None), flag) for flag in (type(None), bool)
)
_TYPES_WITH_PREVIOUS: Final = frozenset(_exact_types(Message, flag) for flag in (type(None), bool))


def _normalise_fields(fields: list[Any]) -> bool:
    """Turn None/list in sequence and bytes fields into ()/tuple/b"" in place; then tell
    whether every value already satisfies the constructor's checks with exact types."""
    exact = True
    for i in _STRS_INDEXES:
        items = fields[i]
        if not items:
            if items is None or type(items) is list:
                fields[i] = ()
            continue
        if type(items) is list:
            items = fields[i] = tuple(items)
        elif type(items) is not tuple:
            exact = False
            continue
        for item in items:
            if type(item) is not str:
                exact = False
                break
    for i in _BYTES_INDEXES:
        if fields[i] is None:
            fields[i] = b""
    ints: tuple[int, ...] = _INT_AT(fields)
    schedule = fields[_SCHEDULE_INDEX]
    if schedule is None:
        schedule = fields[_SCHEDULE_INDEX] = ()
    elif type(schedule) is list:
        schedule = fields[_SCHEDULE_INDEX] = tuple(schedule)
    if schedule and type(schedule) is tuple:
        for item in schedule:
            if type(item) is not int:
                return False
        ints += schedule
    if not exact:
        return False
    types = tuple(map(type, fields))
    if types not in _TYPES_WITHOUT_PREVIOUS and (
        types not in _TYPES_WITH_PREVIOUS
        or _chain_length(fields[_PREVIOUS_INDEX]) > MAX_PREVIOUS_DEPTH
    ):
        return False
    # abs() turns INT64_MIN away from the fast path; the constructor accepts it.
    return max(map(abs, ints)) <= INT64_MAX


def _make_unchecked_builder() -> Callable[[Sequence[Any]], Message]:
    # Setting slots through their member descriptors in straight-line code is what attrs'
    # own __init__ does, minus the per-field checks that _normalise_fields made in bulk.
    # It is the bulk of decode time on the hot path, hence generated rather than looped.
    namespace: dict[str, Any] = {"new": object.__new__, "Message": Message}
    lines = ["def build(values):", "    obj = new(Message)"]
    for i, name in enumerate(FIELD_NAMES):
        namespace[f"set_{name}"] = Message.__dict__[name].__set__
        lines.append(f"    set_{name}(obj, values[{i}])")
    lines.append("    return obj")
    exec("\n".join(lines), namespace)
    builder: Callable[[Sequence[Any]], Message] = namespace["build"]
    return builder


_build_unchecked: Final = _make_unchecked_builder()


# --- Errors.

_VALUE_REPR = reprlib.Repr()
_VALUE_REPR.maxstring = 60
_VALUE_REPR.maxother = 60
_VALUE_REPR.maxlist = 6
_VALUE_REPR.maxtuple = 6
_VALUE_REPR.maxdict = 4
_VALUE_REPR.maxset = 4
_VALUE_REPR.maxlevel = 2
_SHOW_LIMIT = 60


def _printable(text: str) -> str:
    """``text`` made safe to encode as UTF-8 (lone surrogates become backslash escapes)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def show_value(value: object) -> str:
    """A short, single-line, UTF-8-safe rendering of any input value for error texts."""
    try:
        if isinstance(value, str):
            text = value if len(value) <= _SHOW_LIMIT else value[:_SHOW_LIMIT] + "…"
            return _printable(json.dumps(text, ensure_ascii=False))
        if value is None or isinstance(value, bool):
            return json.dumps(value)
        if isinstance(value, int | float):
            return _printable(getattr(value, "text", None) or repr(value))
        if isinstance(value, bytes | bytearray):
            head = repr(bytes(value[:40]))
            return head + ("…" if len(value) > 40 else "")
        return _printable(_VALUE_REPR.repr(value).replace("\n", "\\n"))
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def _key_text(key: str) -> str:
    """A document key as it may appear in a field path: short, one line, UTF-8-safe."""
    short = key if len(key) <= _SHOW_LIMIT else key[:_SHOW_LIMIT] + "…"
    return _printable(json.dumps(short, ensure_ascii=False)[1:-1])


@attrs.frozen
class MessageError:
    """One problem with an input message (or the whole document), written for people.

    ``index`` is the 0-based position of the message in the batch (None for the whole
    document); ``field`` the key, with a path for nested values (``toNodes[1]``,
    ``previousMessage.ACKTimeout``; None when the problem is not one field); ``value`` the
    offending value rendered short and printable (None when missing); ``reason`` what is
    wrong; ``allowed`` what would be accepted. ``str()`` gives one line, e.g.
    ``message 2: field "method": value "ECHORequest" is not a known method; allowed: ...``.
    """

    index: int | None
    field: str | None
    value: str | None
    reason: str
    allowed: str | None = None

    def __str__(self) -> str:
        where = "document" if self.index is None else f"message {self.index}"
        text = where + ":"
        if self.field is not None:
            text += f' field "{self.field}"'
            if self.value is not None:
                text += ":"
        if self.value is not None:
            text += f" value {self.value}"
        text += f" {self.reason}"
        if self.allowed:
            text += f"; allowed: {self.allowed}"
        return text

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: every attribute plus ``text`` (the one-line ``str()``)."""
        return {
            "index": self.index,
            "field": self.field,
            "value": self.value,
            "reason": self.reason,
            "allowed": self.allowed,
            "text": str(self),
        }


class MessageFieldsError(ValueError):
    """Raised by :meth:`Message.from_dict`; ``errors`` names every bad field."""

    def __init__(self, errors: Sequence[MessageError]) -> None:
        self.errors: tuple[MessageError, ...] = tuple(errors)
        super().__init__("; ".join(str(e) for e in self.errors) or "invalid message")


@attrs.frozen
class ParseResult:
    """What :func:`parse_messages` made of a document.

    ``messages`` are the valid messages in document order; ``errors`` explain every message
    (or the document) that was rejected; ``warnings`` note what was ignored or reinterpreted
    in messages that were accepted or rejected.
    """

    messages: list[Message] = attrs.field(factory=list)
    indexes: list[int] = attrs.field(factory=list)
    """The 0-based position in the document of each message in ``messages``."""
    errors: list[MessageError] = attrs.field(factory=list)
    warnings: list[MessageError] = attrs.field(factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing was rejected."""
        return not self.errors


# --- Reading JSON/YAML-shaped values into fields.


class _TextInt(int):
    """An int parsed from a document, remembering how it was written."""

    text: str

    def __new__(cls, value: int, text: str) -> _TextInt:
        obj = super().__new__(cls, value)
        obj.text = text
        return obj


class _TextFloat(float):
    """A float parsed from a document, remembering how it was written."""

    text: str

    def __new__(cls, value: float, text: str) -> _TextFloat:
        obj = super().__new__(cls, value)
        obj.text = text
        return obj


_BAD: Final = object()
_MAX_UNKNOWN_KEY_WARNINGS: Final = 10
_FIELDS_BY_KEY: Final = {info.key: info for info in MESSAGE_FIELDS}
_KNOWN_KEYS: Final = frozenset(_FIELDS_BY_KEY) | frozenset(_PREVIOUS_KEYS)
_KEYS_BY_FOLDED: Final = {key.lower(): key for key in _FIELDS_BY_KEY}
_LEGACY_DATA_HINT: Final = (
    'is a list of strings, the old Steward form of what is now "methodArgs"; '
    'move the list to "methodArgs", or give "data" as one string'
)


def _scalar_text(value: object) -> str | None:
    """The text of a scalar given where a string is expected, else None."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        text = getattr(value, "text", None)
        if isinstance(text, str):
            return text
        try:
            return repr(value)
        except ValueError:  # an int too long to print
            return None
    return None


def _bytes_to_doc(value: bytes) -> str | dict[str, str]:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(value).decode("ascii")}


class _Reader:
    """Converts one message's JSON/YAML data into a Message, collecting errors/warnings."""

    def __init__(self, index: int | None) -> None:
        self.index = index
        self.errors: list[MessageError] = []
        self.warnings: list[MessageError] = []
        self.bad_fields: set[str] = set()

    def error(self, field: str | None, value: object, reason: str, allowed: str | None) -> None:
        shown = None if value is _BAD else show_value(value)
        self.errors.append(MessageError(self.index, field, shown, reason, allowed))
        if field is not None:
            self.bad_fields.add(re.split(r"[.\[]", field, maxsplit=1)[0])

    def warn(self, field: str | None, value: object, reason: str, allowed: str | None) -> None:
        shown = None if value is _BAD else show_value(value)
        self.warnings.append(MessageError(self.index, field, shown, reason, allowed))

    def message(self, mapping: object, prefix: str, depth: int) -> Message | None:
        if not isinstance(mapping, Mapping):
            self.error(
                prefix.rstrip(".") or None,
                mapping,
                "is not a message object",
                'a mapping of message fields, e.g. {"toNode": "ship1", "method": "REQPing"}',
            )
            return None
        if depth > MAX_PREVIOUS_DEPTH:
            self.error(
                prefix.rstrip("."),
                _BAD,
                f"nests more than {MAX_PREVIOUS_DEPTH} previous messages",
                None,
            )
            return None
        values: dict[str, Any] = {}
        previous_keys = [k for k in _PREVIOUS_KEYS if k in mapping]
        if len(previous_keys) > 1:
            self.error(
                prefix + "previousMessage",
                _BAD,
                "is given more than once (as " + " and ".join(previous_keys) + ")",
                "one of " + ", ".join(_PREVIOUS_KEYS),
            )
        unknown = 0
        for key, raw in mapping.items():
            if not isinstance(key, str) or key not in _KNOWN_KEYS:
                unknown += 1
                if unknown <= _MAX_UNKNOWN_KEY_WARNINGS:
                    self._unknown_key(prefix, key)
                continue
            if key in _PREVIOUS_KEYS:
                if len(previous_keys) > 1:
                    continue
                info = _FIELDS_BY_KEY["previousMessage"]
            else:
                info = _FIELDS_BY_KEY[key]
            value = self.value(info, raw, prefix + info.key, depth)
            if value is not _BAD:
                values[info.name] = value
        if unknown > _MAX_UNKNOWN_KEY_WARNINGS:
            more = unknown - _MAX_UNKNOWN_KEY_WARNINGS
            self.warn(prefix.rstrip(".") or None, _BAD, f"has {more} more unknown fields", None)
        try:
            # The reader's values are already converted: the decoder's fast path takes them.
            return Message.from_field_values([values.get(n, d) for n, d in _DEFAULT_ITEMS])
        except (TypeError, ValueError) as exc:  # only reachable through a bug in the reader
            self.error(prefix.rstrip(".") or None, _BAD, f"could not be built: {exc}", None)
            return None

    def _unknown_key(self, prefix: str, key: object) -> None:
        if not isinstance(key, str):
            self.warn(None, key, "is not a field name and was ignored", "string keys")
            return
        suggestion = _KEYS_BY_FOLDED.get(key.lower())
        allowed = f'"{suggestion}" (keys are case-sensitive)' if suggestion else None
        self.warn(prefix + _key_text(key), _BAD, "is not a known field and was ignored", allowed)

    def text(self, raw: object, path: str) -> object:
        text = _scalar_text(raw)
        if text is None:
            self.error(path, raw, "is not a string", FieldKind.STR.value)
            return _BAD
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                self.error(path, raw, "is not valid Unicode text (lone surrogate)", "text")
                return _BAD
        return text

    def value(self, info: FieldInfo, raw: object, path: str, depth: int) -> Any:
        if raw is None:
            return _DEFAULTS[info.name]
        kind = info.kind
        if kind is FieldKind.STR:
            if info.name == "id":
                return self.message_id(raw, path)
            return self.text(raw, path)
        if kind is FieldKind.INT:
            return self.integer(raw, path)
        if kind is FieldKind.BOOL or kind is FieldKind.FLAG:
            if isinstance(raw, bool):
                return raw
            self.error(path, raw, "is not true or false", kind.value)
            return _BAD
        if kind is FieldKind.STRS:
            return self.strings(raw, path)
        if kind is FieldKind.INTS:
            if not isinstance(raw, list | tuple):
                self.error(path, raw, "is not a list of integers", kind.value)
                return _BAD
            return self.items(raw, path, self.integer)
        if kind is FieldKind.BYTES:
            return self.binary(raw, path)
        # FieldKind.MESSAGE
        return self.message(raw, path + ".", depth + 1) or _BAD

    def message_id(self, raw: object, path: str) -> object:
        if isinstance(raw, str):
            return self.text(raw, path)
        if isinstance(raw, int) and not isinstance(raw, bool):
            self.warn(
                path,
                raw,
                "is a numeric Steward id and was ignored; a new id is assigned",
                "a text id",
            )
            return ""
        self.error(path, raw, "is not a string", "a text id")
        return _BAD

    def integer(self, raw: object, path: str) -> object:
        if isinstance(raw, bool) or not isinstance(raw, int):
            self.error(path, raw, "is not an integer", FieldKind.INT.value)
            return _BAD
        if not INT64_MIN <= raw <= INT64_MAX:
            self.error(path, raw, "is out of range", FieldKind.INT.value)
            return _BAD
        return int(raw)

    def strings(self, raw: object, path: str) -> object:
        if not isinstance(raw, list | tuple):
            self.error(path, raw, "is not a list of strings", 'e.g. ["bash", "-c", "ls -l"]')
            return _BAD
        return self.items(raw, path, self.text)

    def items(
        self, raw: Sequence[object], path: str, convert: Callable[[object, str], object]
    ) -> object:
        """Convert every item; stop at (and report) the first bad one."""
        converted = []
        for i, item in enumerate(raw):
            value = convert(item, f"{path}[{i}]")
            if value is _BAD:
                return _BAD
            converted.append(value)
        return tuple(converted)

    def binary(self, raw: object, path: str) -> object:
        allowed = FieldKind.BYTES.value
        if isinstance(raw, str):
            try:
                return raw.encode("utf-8")
            except UnicodeEncodeError:
                self.error(path, raw, "is not valid Unicode text", allowed)
                return _BAD
        if isinstance(raw, bytes | bytearray):
            return bytes(raw)
        if isinstance(raw, Mapping):
            encoded = raw.get("base64") if len(raw) == 1 else None
            if isinstance(encoded, str):
                try:
                    return base64.b64decode(encoded, validate=True)
                except (binascii.Error, ValueError):
                    self.error(path + ".base64", encoded, "is not valid base64", allowed)
                    return _BAD
            self.error(path, raw, 'is not {"base64": "<text>"}', allowed)
            return _BAD
        if isinstance(raw, list | tuple):
            if all(isinstance(item, int) and not isinstance(item, bool) for item in raw):
                if all(0 <= item <= 255 for item in raw):
                    return bytes(raw)
                self.error(path, raw, "holds integers outside 0-255", allowed)
                return _BAD
            if all(isinstance(item, str) for item in raw):
                if all(item == "" for item in raw):
                    self.warn(path, raw, "is the old list form; read as empty data", allowed)
                    return b""
                self.error(path, raw, _LEGACY_DATA_HINT, allowed)
                return _BAD
        self.error(path, raw, "is not text or bytes", allowed)
        return _BAD


# --- Validation of meaning.

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


# --- Documents.


_TRAILING_COMMA: Final = re.compile(r'("(?:[^"\\]|\\.)*")|,(\s*[\]}])', re.DOTALL)


def _json_loads(text: str) -> Any:
    return json.loads(
        text,
        parse_int=lambda s: _TextInt(int(s), s),
        parse_float=lambda s: _TextFloat(float(s), s),
    )


class _DocumentError(Exception):
    """The document cannot be read; ``str()`` says why, ``allowed`` what would be."""

    def __init__(self, text: str, allowed: str | None = None) -> None:
        super().__init__(text)
        self.allowed = allowed


def _load_document(text: str, max_messages: int = MAX_MESSAGES_PER_DOCUMENT) -> list[Any]:
    """The top-level values of ``text`` (one per YAML document); raises _DocumentError."""
    stripped = text.strip()
    if not stripped:
        return []
    try:
        return [_json_loads(text)]
    except Exception as exc:
        json_error: Exception = exc
    if stripped[0] in "[{":
        relaxed = _TRAILING_COMMA.sub(lambda m: m.group(1) or m.group(2), text)
        if relaxed != text:
            try:
                return [_json_loads(relaxed)]
            except Exception:
                pass
    from steward_otp import message_yaml  # noqa: PLC0415 - PyYAML only when YAML is used

    try:
        return message_yaml.load_all(text, max_messages)
    except _DocumentError:
        raise
    except Exception as exc:
        if stripped[0] in "[{":
            raise _DocumentError(f"malformed JSON: {json_error}") from exc
        raise _DocumentError(f"malformed YAML: {message_yaml.error_text(exc)}") from exc


def _decode_document(document: str | bytes | bytearray) -> str:
    if isinstance(document, str):
        return document.strip("\x00").removeprefix("\ufeff")
    raw = bytes(document).strip(b"\x00")
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise _DocumentError(f"not UTF-8 text: invalid byte at offset {exc.start}") from exc


def parse_messages(
    document: str | bytes | bytearray,
    *,
    table: MethodTable = BUILTIN_METHODS,
    max_messages: int = MAX_MESSAGES_PER_DOCUMENT,
) -> ParseResult:
    """Read and validate a batch of messages from JSON or YAML text; never raises.

    The document holds a list of messages or one message object (see the module docstring
    for the lenient rules). Each message is type-checked and validated with
    :func:`validate_message`; a bad message is reported in ``errors`` (with its 0-based
    ``index``) and left out while the others go through. A document that cannot be read at
    all gives one error with ``index`` and ``field`` None and the parser's message, which
    names the line and column. Messages are returned as written: no fan-out, no id, no
    defaults (see :func:`fan_out`, :func:`ensure_id`, :func:`apply_defaults`).

    Limits, each refusing the whole document with one error naming the count and the
    limit: at most ``max_messages`` messages, counting every distinct ``toNodes`` entry as
    one; YAML aliases expanding the document to at most :data:`MAX_DOCUMENT_EXPANSION`,
    and none inside itself. So the work done is bounded however the document is built; a
    large document still takes time, so inputs parse it off the event loop
    (:func:`steward_otp.inputs.parsing.parse_document`).
    """
    result = ParseResult()
    try:
        items = _document_items(_load_document(_decode_document(document), max_messages))
    except _DocumentError as exc:
        text = _printable(str(exc))
        result.errors.append(MessageError(None, None, None, text, exc.allowed))
        return result
    if len(items) > max_messages:
        result.errors.append(_too_many(f"holds {len(items)} messages", max_messages))
        return result
    for index, item in enumerate(items):
        try:
            _read_one(item, index, table, result)
        except Exception as exc:  # a reader bug must not take the batch down
            reason = f"could not be read (internal error: {type(exc).__name__}: {exc})"
            result.errors.append(MessageError(index, None, None, _printable(reason), None))
    destinations = sum(1 if m.to_node else len(dict.fromkeys(m.to_nodes)) for m in result.messages)
    if destinations > max_messages:
        reason = f"fans out to {destinations} messages (each toNodes entry is one)"
        return ParseResult(errors=[_too_many(reason, max_messages)], warnings=result.warnings)
    return result


def _too_many(what: str, limit: int) -> MessageError:
    return MessageError(
        None,
        None,
        None,
        f"{what}; nothing was accepted: split it into documents of at most {limit} messages",
        f"at most {limit} messages per document",
    )


def _document_items(tops: list[Any]) -> list[Any]:
    items: list[Any] = []
    for top in tops:
        if top is None:
            continue
        if isinstance(top, list):
            items.extend(top)
        elif isinstance(top, Mapping):
            items.append(top)
        else:
            raise _DocumentError(
                f"expected a list of messages or one message object, got {show_value(top)}"
            )
    return items


def _read_one(item: object, index: int, table: MethodTable, result: ParseResult) -> None:
    reader = _Reader(index)
    message = reader.message(item, "", depth=0)
    errors, warnings = list(reader.errors), list(reader.warnings)
    if message is not None and isinstance(item, Mapping):
        skip = reader.bad_fields
        if {"toNode", "toNodes"} & skip:
            skip = skip | {"toNode", "toNodes"}
        more_errors, more_warnings = _check_message(message, table, index, skip)
        errors += more_errors
        warnings += more_warnings
    result.warnings.extend(warnings)
    if errors or message is None:
        result.errors.extend(errors)
    else:
        result.messages.append(message)
        result.indexes.append(index)


def dump_json(messages: Iterable[Message], *, indent: int | None = 2) -> str:
    """The messages as a JSON list that :func:`parse_messages` reads back unchanged."""
    return json.dumps([m.to_dict() for m in messages], indent=indent, ensure_ascii=False)


def dump_yaml(messages: Iterable[Message]) -> str:
    """The messages as a YAML list that :func:`parse_messages` reads back unchanged."""
    from steward_otp import message_yaml  # noqa: PLC0415 - PyYAML only when YAML is used

    return message_yaml.dump([m.to_dict() for m in messages])


# --- Ids, fan-out, defaults.


def new_message_id(from_node: str) -> str:
    """A new globally unique message id, ``<from_node>:<32 hex digits>``.

    The hex part is a UUIDv7 (48-bit millisecond timestamp, then random bits), so ids from
    one node sort roughly by creation time. Without ``from_node`` the id is the hex part.
    Treat ids as opaque text.
    """
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (
        (millis & 0xFFFF_FFFF_FFFF) << 80
        | 0x7 << 76
        | (rand >> 62 & 0xFFF) << 64
        | 0b10 << 62
        | (rand & 0x3FFF_FFFF_FFFF_FFFF)
    )
    hex_part = f"{value:032x}"
    return f"{from_node}:{hex_part}" if from_node else hex_part


def ensure_id(message: Message) -> Message:
    """``message`` itself when it has an id, else a copy with a new id from its fromNode."""
    if message.id:
        return message
    return attrs.evolve(message, id=new_message_id(message.from_node))


def fan_out(message: Message, own_node: str, *, from_node: str | None = None) -> list[Message]:
    """One message per destination, each with ``toNodes`` cleared and ``local`` resolved.

    A message with ``toNode`` is kept as is (its ``toNodes`` is ignored). Otherwise each
    distinct entry of ``toNodes`` (first occurrence order) gives one copy with that
    ``toNode``; when the message has an id, each copy gets id ``<id>@<node>``, so copies
    stay distinct and resubmitting the same document yields the same ids. ``local`` becomes
    ``own_node``. A message with neither gives an empty list. ``from_node``, when given,
    becomes every copy's ``fromNode``. One copy per destination (the decoder's fast path,
    no ``attrs.evolve`` chain): inputs call this for every message they accept.
    """

    def resolve(node: str) -> str:
        return own_node if node == LOCAL_NODE else node

    if message.to_node:
        targets = [(resolve(message.to_node), message.id)]
    else:
        targets = []
        for node in dict.fromkeys(message.to_nodes):
            target = resolve(node)
            targets.append((target, f"{message.id}@{target}" if message.id else ""))
    values = list(message.field_values())
    values[_TO_NODES_AT] = ()
    if from_node is not None:
        values[_FROM_NODE_AT] = from_node
    copies: list[Message] = []
    for target, new_id in targets:
        values[_TO_NODE_AT], values[_ID_AT] = target, new_id
        copies.append(Message.from_field_values(values))
    return copies


_TO_NODE_AT, _TO_NODES_AT, _ID_AT, _FROM_NODE_AT, _RETRIES_AT, _METHOD_TIMEOUT_AT, _DATA_AT = (
    FIELD_NAMES.index(name)
    for name in ("to_node", "to_nodes", "id", "from_node", "retries", "method_timeout", "data")
)


@attrs.frozen
class MessageDefaults:
    """Node-wide defaults filled into messages when they enter the outbox (Steward §3.2)."""

    retries: int = 1
    """``DefaultMessageRetries``: used when a message's ``retries`` is negative."""
    method_timeout: int = 10
    """``DefaultMethodTimeout``: used when ``methodTimeout`` is below 1 and not -1."""


def apply_defaults(message: Message, defaults: MessageDefaults | None = None) -> Message:
    """``message`` with node defaults applied; the same object when nothing changes.

    ``retries < 0`` becomes ``defaults.retries`` (a missing ``retries``, 0, stays 0);
    ``methodTimeout < 1`` other than -1 (forever) becomes ``defaults.method_timeout``.
    ``ACKTimeout`` is deliberately not defaulted.
    """
    defaults = defaults or MessageDefaults()
    retries = defaults.retries if message.retries < 0 else message.retries
    timeout = message.method_timeout
    if timeout < 1 and timeout != METHOD_TIMEOUT_FOREVER:
        timeout = defaults.method_timeout
    if retries == message.retries and timeout == message.method_timeout:
        return message
    values = list(message.field_values())
    values[_RETRIES_AT], values[_METHOD_TIMEOUT_AT] = retries, timeout
    return Message.from_field_values(values)


# --- Subjects and replies.


def subject_for_node(node: str, method_spec: MethodSpec, *, method_name: str | None = None) -> str:
    """``<node>.<method>.<kind>`` for ``method_spec``.

    Pass ``method_name`` for sub-process methods whose full name carries a suffix
    (``REQSUBCopySrc.<uuid>``); the kind always comes from ``method_spec``.
    """
    return f"{node}.{method_name or method_spec.name}.{method_spec.kind.value}"


def subject_for(message: Message, table: MethodTable = BUILTIN_METHODS) -> str:
    """The NATS subject ``message`` is published on: ``<toNode>.<method>.<kind>``.

    The kind comes from the method table, not from the message. Raises
    ``UnknownMethodError`` for an unknown method and ``ValueError`` when ``toNode`` is empty
    (fan the message out first).
    """
    spec = table.require(message.method)
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
    return Message(
        to_node=request.from_node,
        from_node=request.to_node,
        id=new_message_id(request.to_node),
        data=output,
        method=request.reply_method or DEFAULT_REPLY_METHOD,
        method_args=request.reply_method_args,
        method_timeout=request.reply_method_timeout,
        ack_timeout=request.reply_ack_timeout,
        retries=request.reply_retries,
        retry_wait=request.retry_wait,
        directory=request.directory,
        file_name=request.file_name,
        is_reply=True,
        previous_message=previous,
        jetstream=None if request.jetstream is None else False,
    )
