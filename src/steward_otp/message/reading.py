"""Reading JSON/YAML-shaped values into the fields of a Message, collecting every problem.

Decisions on input for the values of one message (the document around them:
:mod:`steward_otp.message.documents`):

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
  Parsing leaves a missing id empty; the input layer calls
  :func:`~steward_otp.message.ensure_id` on accepted messages.
* Unknown keys are ignored and reported as warnings (with a "did you mean" for keys that
  differ only in case, e.g. ``RetryWait``). ``previousMessage`` is also read from
  ``PreviousMessage`` and ``previousmessage``.

The reader checks value types only, never meaning; it does not raise on bad input but
records :class:`~steward_otp.message.MessageError` errors and warnings.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import attrs

from steward_otp.message.errors import MessageError, _key_text, show_value
from steward_otp.message.fields import (
    INT64_MAX,
    INT64_MIN,
    MAX_PREVIOUS_DEPTH,
    MESSAGE_FIELDS,
    FieldInfo,
    FieldKind,
)
from steward_otp.message.record import _DEFAULT_VALUES, _DEFAULTS, _FIELD_INDEX, Message

_PREVIOUS_KEYS: Final = ("previousMessage", "PreviousMessage", "previousmessage")


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


class _RepeatedKeys(dict[Any, Any]):
    """A mapping read from a document that named some keys more than once.

    ``repeated`` holds, for each such key, every value given, in document order (the
    mapping itself holds the last). Made by the JSON and YAML loaders only when a key
    repeats; the reader refuses the message, naming the field.
    """

    def __init__(self, pairs: Sequence[tuple[Any, Any]] = ()) -> None:
        super().__init__(pairs)
        self.repeated = self.repeats(pairs)

    @staticmethod
    def repeats(pairs: Sequence[tuple[Any, Any]]) -> dict[Any, list[Any]]:
        """Every key given more than once in ``pairs``, with all its values in order."""
        given: dict[Any, list[Any]] = {}
        for key, value in pairs:
            given.setdefault(key, []).append(value)
        return {key: values for key, values in given.items() if len(values) > 1}


def _object_pairs(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    """``json.loads``'s ``object_pairs_hook``: a plain dict, or :class:`_RepeatedKeys` when
    a key repeats (JSON itself would silently keep the last)."""
    mapping = dict(pairs)
    return mapping if len(mapping) == len(pairs) else _RepeatedKeys(pairs)


@attrs.frozen
class _BadBase64:
    """A YAML ``!!binary`` scalar that is not valid base64 (the reader refuses it)."""

    text: str


_BAD: Final = object()
_MAX_UNKNOWN_KEY_WARNINGS: Final = 10
_FIELDS_BY_KEY: Final = {info.key: info for info in MESSAGE_FIELDS}
_KNOWN_KEYS: Final = frozenset(_FIELDS_BY_KEY) | frozenset(_PREVIOUS_KEYS)
_KEYS_BY_FOLDED: Final = {key.lower(): key for key in _FIELDS_BY_KEY}
_BOOL_KINDS: Final = (FieldKind.BOOL, FieldKind.FLAG)
_SCALAR_FIELDS: Final = {
    info.key: (_FIELD_INDEX[info.name], info.kind)
    for info in MESSAGE_FIELDS
    if info.kind in (FieldKind.STR, FieldKind.BYTES, FieldKind.INT, *_BOOL_KINDS)
}
"""Where each scalar field's value goes, and its kind: the reader's fast path."""
_ARGS_EXAMPLE: Final = 'e.g. ["bash", "-c", "ls -l"]'
_LIST_EXAMPLES: Final = {
    "toNodes": 'a list of node names, e.g. ["ship1", "ship2"]; for one node: toNode: "ship1"',
}
"""What a list-of-strings field allows, by key, for the error when it is not a list."""
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
        values = list(_DEFAULT_VALUES)
        previous_keys = [k for k in _PREVIOUS_KEYS if k in mapping]
        if len(previous_keys) > 1:
            self.error(
                prefix + "previousMessage",
                _BAD,
                "is given more than once (as " + " and ".join(previous_keys) + ")",
                "one of " + ", ".join(_PREVIOUS_KEYS),
            )
        if isinstance(mapping, _RepeatedKeys):
            self._repeated_keys(prefix, mapping.repeated)
        unknown = 0
        for key, raw in mapping.items():
            fast = _SCALAR_FIELDS.get(key) if type(key) is str else None
            if fast is not None:
                # The common shapes, taken as they are; anything else (None, a subclass,
                # text that is not ASCII, an int out of range) goes the checking way below.
                index, kind = fast
                kind_of_raw = type(raw)
                if kind_of_raw is str and raw.isascii():
                    if kind is FieldKind.STR:
                        values[index] = raw
                        continue
                    if kind is FieldKind.BYTES:
                        values[index] = raw.encode("ascii")
                        continue
                elif kind_of_raw is int:
                    if kind is FieldKind.INT and INT64_MIN <= raw <= INT64_MAX:
                        values[index] = raw
                        continue
                elif kind_of_raw is bool and kind in _BOOL_KINDS:
                    values[index] = raw
                    continue
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
                values[_FIELD_INDEX[info.name]] = value
        if unknown > _MAX_UNKNOWN_KEY_WARNINGS:
            more = unknown - _MAX_UNKNOWN_KEY_WARNINGS
            self.warn(prefix.rstrip(".") or None, _BAD, f"has {more} more unknown fields", None)
        try:
            # The reader's values are already converted: the decoder's fast path takes them.
            return Message.from_field_values(values)
        except (TypeError, ValueError) as exc:  # only reachable through a bug in the reader
            self.error(prefix.rstrip(".") or None, _BAD, f"could not be built: {exc}", None)
            return None

    def _repeated_keys(self, prefix: str, repeated: Mapping[Any, list[Any]]) -> None:
        """Refuse every known field given more than once (its value would be a guess)."""
        for key, values in repeated.items():
            if isinstance(key, str) and key in _KNOWN_KEYS:
                self.error(
                    prefix + key,
                    list(values),
                    f"is given {len(values)} times in one message",
                    "each field at most once per message",
                )

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
            return self.strings(raw, path, _LIST_EXAMPLES.get(info.key, _ARGS_EXAMPLE))
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

    def strings(self, raw: object, path: str, example: str = _ARGS_EXAMPLE) -> object:
        if not isinstance(raw, list | tuple):
            self.error(path, raw, "is not a list of strings", example)
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
        if isinstance(raw, _BadBase64):
            self.error(path, raw.text, "is !!binary but not valid base64", allowed)
            return _BAD
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
