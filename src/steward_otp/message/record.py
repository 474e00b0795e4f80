"""The Message record: a frozen value with exactly the fields of the wire format.

Construction checks types and raises ``TypeError``/``ValueError`` naming the field; it does
not check meaning (that is :mod:`steward_otp.message.validation`). A message is a frozen
value: derive changed copies with ``attrs.evolve``. :meth:`Message.from_field_values` is the
decoder's fast path: values of exact types skip the per-field checks, anything else goes
through the constructor, so results and errors are the same either way.
"""

from __future__ import annotations

import base64
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import attrs

from steward_otp.message.errors import MessageFieldsError
from steward_otp.message.fields import (
    _FIELD_COUNT,
    FIELD_NAMES,
    INT64_MAX,
    INT64_MIN,
    MAX_PREVIOUS_DEPTH,
    MESSAGE_FIELDS,
    FieldKind,
)

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
_DEFAULT_VALUES: Final = tuple(default for _, default in _DEFAULT_ITEMS)
"""Every field's default in field order: a message built from values starts as a copy."""
_FIELD_INDEX: Final = {name: i for i, name in enumerate(FIELD_NAMES)}
"""A field's position in :data:`FIELD_NAMES` (and in :meth:`Message.field_values`)."""


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


def _bytes_to_doc(value: bytes) -> str | dict[str, str]:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(value).decode("ascii")}


# The reader builds Messages, and Message.from_dict runs the reader: imported last, once
# every name the reader takes from this module exists.
from steward_otp.message.reading import _Reader  # noqa: E402
