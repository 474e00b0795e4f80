"""Documents: batches of messages read from JSON or YAML text, and written back.

Decisions on input for a whole document (the values inside each message:
:mod:`steward_otp.message.reading`):

* A document is JSON or YAML (tried in that order; JSON with trailing commas is accepted) and
  holds a list of messages, one message object, or several YAML documents of either shape.
  NUL bytes are trimmed from both ends; an empty document holds no messages.
* One bad message yields :class:`~steward_otp.message.MessageError` records and is left out;
  the rest of the batch goes through. Parsing never raises.

:class:`ParseResult` is what :func:`parse_messages` made of a document: the valid messages,
and an error for every message left out. :func:`dump_json` and :func:`dump_yaml` write
messages that :func:`parse_messages` reads back unchanged. PyYAML is imported only when
YAML is read or written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

import attrs

from steward_otp.limits import MAX_MESSAGES_PER_DOCUMENT
from steward_otp.message.errors import MessageError, _printable, show_value
from steward_otp.message.reading import _object_pairs, _Reader, _TextFloat, _TextInt
from steward_otp.message.record import Message
from steward_otp.message.validation import _check_message
from steward_otp.methods import BUILTIN_METHODS, MethodTable


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


_TRAILING_COMMA: Final = re.compile(r'("(?:[^"\\]|\\.)*")|,(\s*[\]}])', re.DOTALL)


def _json_loads(text: str) -> Any:
    # JSON writes an integer one way only, so ``str()`` of the parsed int gives its text
    # back -- except ``-0``: only a document that holds "-0" pays for remembering the text.
    # A key given twice in one object is refused by the reader, not silently last-wins.
    return json.loads(
        text,
        object_pairs_hook=_object_pairs,
        parse_int=_text_int if "-0" in text else None,
        parse_float=lambda s: _TextFloat(float(s), s),
    )


def _text_int(text: str) -> _TextInt:
    return _TextInt(int(text), text)


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
