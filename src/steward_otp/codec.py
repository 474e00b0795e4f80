"""Wire encoding of a Message: a CBOR array, lz4-compressed when large, plus NATS headers.

Wire format (``serial: cbor``): one CBOR array holding the fields in Steward's order (its 23
fields, ``PreviousMessage`` as a nested array or null), followed by our four relay fields.
The array form is Steward's own CBOR form and is compact: no key names on the wire, roughly
half the size of a map. Empty lists are sent as CBOR null (as Go sends nil lists) because
cbor2 spends as much on an empty array as on a dozen scalars; the relay fields are left off
when all four are empty, so a message without relay information is a 23-element array. A
28th element, ``jetstream`` (true/false), follows them only when the message sets it.

Reading accepts arrays of 23 or more elements (missing relay fields are empty, a missing
``jetstream`` is null, extra trailing
elements from newer versions are ignored), null for any list or bytes field, and an integer
``id`` (Steward's ring-buffer number, read as "no id"). A Go Steward node configured with
``Serialization = "cbor"`` can therefore be read; Go cannot read ours, because our ``id`` is
text.

Headers (lower-case keys, as Steward): ``serial`` (``cbor``), ``cmp`` (``lz4``, ``g`` gzip,
``z`` zstd, ``none``; missing or unknown = uncompressed, as Steward) and ``fromNode``.
"""

from __future__ import annotations

import importlib
import zlib
from collections.abc import Mapping
from typing import Any, Final, NamedTuple

import cbor2
import lz4.frame

from steward_otp.message import FIELD_NAMES, MAX_PREVIOUS_DEPTH, Message

__all__ = [
    "DEFAULT_COMPRESS_THRESHOLD",
    "DEFAULT_MAX_DECODED_SIZE",
    "RAW_CBOR_HEADERS",
    "DecodeError",
    "EncodedMessage",
    "cbor_payload",
    "decode",
    "decode_with_cbor",
    "encode",
    "frame",
]

DEFAULT_COMPRESS_THRESHOLD: Final = 1024
"""Encoded size (bytes) above which ``encode`` tries lz4."""
RAW_CBOR_HEADERS: Final = {"serial": "cbor", "cmp": "none"}
"""Headers of an uncompressed encoding, as stored in the outbox and inbox."""
DEFAULT_MAX_DECODED_SIZE: Final = 64 * 1024 * 1024
"""Largest payload ``decode`` accepts after decompression (bytes)."""

_STEWARD_FIELDS: Final = 23
_ALL_FIELDS: Final = len(FIELD_NAMES)
_RELAY_DEFAULTS: Final = ["", "", "", ""]
_TAIL_DEFAULTS: Final = [*_RELAY_DEFAULTS, None]  # the relay fields, then ``jetstream``
_FLAG: Final = FIELD_NAMES.index("jetstream")
_NULLABLE_LISTS: Final = tuple(
    FIELD_NAMES.index(n) for n in ("to_nodes", "method_args", "reply_method_args", "schedule")
)
_ID: Final = FIELD_NAMES.index("id")
_PREVIOUS: Final = FIELD_NAMES.index("previous_message")
_LZ4_STEP: Final = 1024 * 1024
_MAX_NESTING: Final = 1 + MAX_PREVIOUS_DEPTH  # a message and its previous messages

assert len(FIELD_NAMES) == _STEWARD_FIELDS + len(_TAIL_DEFAULTS)
assert FIELD_NAMES[-1] == "jetstream"
assert FIELD_NAMES[_STEWARD_FIELDS] == "relay_via_node"


class DecodeError(ValueError):
    """A payload could not be turned into a Message; the text says why.

    ``decode`` raises only this, whatever the input.
    """


class EncodedMessage(NamedTuple):
    """A message ready for NATS: the payload bytes and the headers to send with it."""

    payload: bytes
    headers: dict[str, str]


def _to_wire(message: Message) -> list[Any]:
    values = list(message.field_values())
    for i in _NULLABLE_LISTS:
        if not values[i]:
            values[i] = None
    previous = values[_PREVIOUS]
    if previous is not None:
        values[_PREVIOUS] = _to_wire(previous)
    if values[_FLAG] is None:
        del values[_FLAG]
        if values[_STEWARD_FIELDS:] == _RELAY_DEFAULTS:
            del values[_STEWARD_FIELDS:]
    return values


def encode(
    message: Message, *, compress_threshold: int | None = DEFAULT_COMPRESS_THRESHOLD
) -> EncodedMessage:
    """Encode ``message`` for the wire.

    The CBOR array is lz4-frame compressed when it is longer than ``compress_threshold``
    bytes (None: never) and compression makes it smaller; ``cmp`` says which. ``fromNode``
    is sent as a header when it is non-empty printable text. ``decode`` gives back an equal
    Message. Raises ``ValueError`` only when a text field holds a lone surrogate, which has
    no UTF-8 form.
    """
    return frame(cbor_payload(message), message.from_node, compress_threshold=compress_threshold)


def cbor_payload(message: Message) -> bytes:
    """The uncompressed CBOR array of ``message`` (what the outbox stores; ``encode``'s
    payload below the compression threshold). Raises ``ValueError`` for a lone surrogate."""
    try:
        return bytes(cbor2.dumps(_to_wire(message)))
    except UnicodeEncodeError as exc:
        raise ValueError(f"message text is not valid Unicode: {exc}") from exc


def frame(
    raw: bytes, from_node: str, *, compress_threshold: int | None = DEFAULT_COMPRESS_THRESHOLD
) -> EncodedMessage:
    """:func:`encode` of a message whose :func:`cbor_payload` is ``raw`` and whose
    ``fromNode`` is ``from_node``: the same payload and headers, without encoding it again."""
    headers = {"serial": "cbor", "cmp": "none"}
    if from_node and from_node.isprintable():
        headers["fromNode"] = from_node
    if compress_threshold is not None and len(raw) > compress_threshold:
        packed: bytes = lz4.frame.compress(raw)
        if len(packed) < len(raw):
            headers["cmp"] = "lz4"
            return EncodedMessage(packed, headers)
    return EncodedMessage(raw, headers)


def decode(
    payload: bytes | bytearray | memoryview,
    headers: Mapping[str, str] | None,
    *,
    max_size: int = DEFAULT_MAX_DECODED_SIZE,
) -> Message:
    """Decode a payload received with ``headers`` (None = no headers) into a Message.

    Compression and serialisation are detected from the headers. Payloads larger than
    ``max_size`` bytes after decompression are refused without inflating them further.
    Raises :class:`DecodeError` and nothing else, for any input: unsupported ``gob`` (a
    missing ``serial`` header means gob, as in Steward) or ``zstd`` without a zstd library,
    broken compression, bad CBOR, or a CBOR value that is not a valid message.
    """
    return decode_with_cbor(payload, headers, max_size=max_size)[0]


def decode_with_cbor(
    payload: bytes | bytearray | memoryview,
    headers: Mapping[str, str] | None,
    *,
    max_size: int = DEFAULT_MAX_DECODED_SIZE,
) -> tuple[Message, bytes]:
    """:func:`decode`, also returning the message's uncompressed CBOR bytes.

    Those bytes decode again with :data:`RAW_CBOR_HEADERS` to the same message: a receiver
    stores them as they came, without encoding the message again.
    """
    try:
        if headers is None:
            headers = {}
        serial = headers.get("serial")
        if serial != "cbor":
            raise DecodeError(_serial_problem(serial))
        cmp = headers.get("cmp")
        if cmp == "none" and len(payload) <= max_size:
            data = bytes(payload)  # the common case, without a call
        else:
            data = _decompress(bytes(payload), cmp, max_size)
        return _from_wire(cbor2.loads(data), 1), data
    except DecodeError:
        raise
    except Exception as exc:
        raise DecodeError(f"cannot decode message: {type(exc).__name__}: {exc}") from exc


def _serial_problem(serial: object) -> str:
    if serial is None or serial in ("", "gob"):
        return (
            "payload is gob-encoded (serial header is missing or 'gob'); steward-otp reads only "
            'CBOR: set Serialization = "cbor" on Go Steward nodes'
        )
    return f"unknown serialization {serial!r} in header 'serial'; steward-otp reads only 'cbor'"


def _from_wire(values: object, depth: int) -> Message:
    if type(values) is not list:
        raise DecodeError(f"message must be a CBOR array, got {type(values).__name__}")
    count = len(values)
    if count < _STEWARD_FIELDS:
        raise DecodeError(
            f"message array has {count} elements; at least {_STEWARD_FIELDS} are needed"
        )
    if count < _ALL_FIELDS:
        values = values + _TAIL_DEFAULTS[count - _STEWARD_FIELDS :]
    elif count > _ALL_FIELDS:
        values = values[:_ALL_FIELDS]
    if type(values[_ID]) is int or values[_ID] is None:
        values[_ID] = ""
    previous = values[_PREVIOUS]
    if previous is not None:
        if depth >= _MAX_NESTING:
            raise DecodeError(f"previous messages nest deeper than {_MAX_NESTING - 1} levels")
        values[_PREVIOUS] = _from_wire(previous, depth + 1)
    try:
        return Message.from_field_values(values)
    except (TypeError, ValueError) as exc:
        raise DecodeError(f"invalid message field: {exc}") from exc


def _decompress(payload: bytes, cmp: object, max_size: int) -> bytes:
    if cmp == "lz4":
        data = _inflate_lz4(payload, max_size)
    elif cmp == "g":
        data = _inflate_gzip(payload, max_size)
    elif cmp == "z":
        data = _inflate_zstd(payload, max_size)
    else:  # "none", missing or unknown: uncompressed, as Steward
        data = payload
    if len(data) > max_size:
        raise DecodeError(f"payload is larger than the limit of {max_size} bytes")
    return data


def _too_large(max_size: int) -> DecodeError:
    return DecodeError(f"decompressed payload exceeds the limit of {max_size} bytes")


def _inflate_lz4(payload: bytes, max_size: int) -> bytes:
    # Output is produced in steps: the frame's declared size when it has one (ours do),
    # else 1 MiB; asking for max_size at once would allocate max_size for every message.
    declared = int(lz4.frame.get_frame_info(payload).get("content_size") or 0)
    if declared > max_size:
        raise _too_large(max_size)
    step = min(declared or _LZ4_STEP, max_size) + 1
    decompressor = lz4.frame.LZ4FrameDecompressor()
    out = bytearray(decompressor.decompress(payload, max_length=step))
    while not decompressor.eof and not decompressor.needs_input:
        if len(out) > max_size:
            raise _too_large(max_size)
        out += decompressor.decompress(b"", max_length=step)
    if len(out) > max_size:
        raise _too_large(max_size)
    if not decompressor.eof:
        raise DecodeError("lz4 frame is truncated")
    if decompressor.unused_data:
        raise DecodeError("unexpected bytes after the lz4 frame")
    return bytes(out)


def _inflate_gzip(payload: bytes, max_size: int) -> bytes:
    out = bytearray()
    rest = payload
    while True:  # a gzip stream may hold several members; Go's reader reads them all
        decompressor = zlib.decompressobj(wbits=31)
        out += decompressor.decompress(rest, max_size + 1 - len(out))
        if len(out) > max_size or decompressor.unconsumed_tail:
            raise _too_large(max_size)
        if not decompressor.eof:
            raise DecodeError("gzip stream is truncated")
        rest = decompressor.unused_data
        if not rest:
            return bytes(out)


def _load_zstd() -> Any:
    try:
        return importlib.import_module("zstandard")
    except ImportError:
        return None


_zstd: Any = _load_zstd()


def _inflate_zstd(payload: bytes, max_size: int) -> bytes:
    if _zstd is None:
        raise DecodeError(
            "zstd not supported: this node has no zstd library (cmp 'z'); "
            'use Compression = "g" or none on Go Steward nodes'
        )
    out = bytearray()
    with _zstd.ZstdDecompressor().stream_reader(payload) as reader:
        while True:
            chunk = reader.read(max_size + 1 - len(out))
            if not chunk:
                return bytes(out)
            out += chunk
            if len(out) > max_size:
                raise _too_large(max_size)
