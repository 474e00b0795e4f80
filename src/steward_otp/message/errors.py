"""Errors: how a problem with an input message (or a whole document) is told to people.

A :class:`MessageError` names the message (its 0-based index in the batch), the field (with
a path for nested values), the offending value and what would be accepted; values are
rendered short, on one line and safe to encode as UTF-8 (:func:`show_value`), whatever the
input held. :class:`MessageFieldsError` is the exception form (a ``ValueError``).
"""

from __future__ import annotations

import json
import reprlib
from collections.abc import Sequence
from typing import Any

import attrs

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
