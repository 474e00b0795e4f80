"""The file-copy protocol without I/O: arguments, paths, the init record and the messages.

A copy (``REQCopySrc`` on the source node) is carried by four methods, all through the
nodes' normal durable message path:

* ``REQCopyDst`` src → dst: ``data`` = the :class:`CopyInit` record (JSON).
* ``REQSUBCopySrc`` dst → src: :class:`Want` (chunk indices to send) or :class:`Result`
  (the copy ended: ok or failed, with a text).
* ``REQSUBCopyDst`` src → dst: :class:`Chunk` (``data`` = the chunk bytes, the SHA-256 of
  them in ``methodArgs``) or :class:`Abort` (the source cannot go on).

Everything here is pure: reading a peer's record or message raises :class:`ProtocolError`,
with a text naming the field, the value and what is allowed; it is a :class:`HandlerError`,
so a handler that lets one through answers with it. The operator's arguments are checked
in :mod:`.arguments`, chunk planning and the pull window are in :mod:`.plan`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence
from typing import Any, Final

import attrs

from steward_otp.handlers.base import HandlerError
from steward_otp.handlers.copy.plan import MAX_WINDOW, ChunkPlan
from steward_otp.message import Message, build_reply
from steward_otp.methods import NO_REPLY

MAX_CHUNK_SIZE: Final = 1_000_000
"""Largest chunk: a chunk message must fit NATS's default ``max_payload`` of 1 MiB."""
DEFAULT_ACK_TIMEOUT: Final = 10
"""ACKTimeout of protocol messages when the request has none (they are always ACKed)."""
MAX_PROTOCOL_RETRIES: Final = 1_000_000_000
PROTOCOL_METHOD_TIMEOUT: Final = 120
"""methodTimeout of the chunk, want, result and abort messages."""
DRIVER_GRACE: Final = 60
"""Seconds the destination's REQCopyDst handler may outlive maxTotalCopyTime (clean-up)."""

REPLY_SUFFIX: Final = ".copyreply"
"""Appended to ``fileName`` for the requester's replies about a copy (Steward's name)."""
ERROR_SUFFIX: Final = ".copyerror"
"""Appended to ``fileName`` for the requester's error replies about a copy."""

COPY_METHOD_SRC: Final = "REQCopySrc"
COPY_METHOD_DST: Final = "REQCopyDst"
SUB_METHOD_SRC: Final = "REQSUBCopySrc"
SUB_METHOD_DST: Final = "REQSUBCopyDst"

_COPY_ID = re.compile(r"[0-9a-f]{32}")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class ProtocolError(HandlerError):
    """A copy record or protocol message from a peer is malformed; the text says why."""


# --------------------------------------------------------------------------- copy ids


def copy_id_for(message_id: str) -> str:
    """The copy id of a REQCopySrc message: 32 hex digits derived from its message id.

    Deterministic, so a request run again after a crash continues the same copy.
    """
    return hashlib.sha256(message_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def protocol_retries(max_time: int, ack_timeout: int) -> int:
    """Retries that keep a protocol message trying for the whole copy time."""
    if max_time <= 0:
        return MAX_PROTOCOL_RETRIES
    return min(MAX_PROTOCOL_RETRIES, math.ceil(max_time / max(ack_timeout, 1)) + 1)


# --------------------------------------------------------------------------- records


def _check_copy_id(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not _COPY_ID.fullmatch(value):
        raise ValueError(f'field "{attribute.name}": value {value!r}; allowed: 32 hex digits')


def _check_sha(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not _SHA256_HEX.fullmatch(value):
        raise ValueError(
            f'field "{attribute.name}": value {value!r}; allowed: 64 lowercase hex digits'
        )


def _text(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not value or "\0" in value:
        raise ValueError(f'field "{attribute.name}": value {value!r}; allowed: non-empty text')


def _int_in(low: int, high: int) -> Any:
    def check(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if type(value) is not int or not low <= value <= high:
            raise ValueError(
                f'field "{attribute.name}": value {value!r}; allowed: an integer from '
                f"{low} to {high}"
            )

    return check


@attrs.frozen(kw_only=True)
class CopyInit:
    """What the destination needs to run a copy: REQCopyDst's ``data`` (as JSON).

    ``sha256`` is the whole file's hash, ``mtime_ns`` its modification time when hashed,
    ``file_mode``/``folder_permission`` permission bits, ``max_time`` seconds (0: no limit);
    ``ack_timeout``/``retries`` apply to every protocol message of the copy.
    """

    copy_id: str = attrs.field(validator=_check_copy_id)
    src_node: str = attrs.field(validator=_text)
    dst_node: str = attrs.field(validator=_text)
    src_path: str = attrs.field(validator=_text)
    dst_path: str = attrs.field(validator=_text)
    size: int = attrs.field(validator=_int_in(0, 2**62))
    mtime_ns: int = attrs.field(validator=_int_in(-(2**63), 2**63 - 1))
    chunk_size: int = attrs.field(validator=_int_in(1, MAX_CHUNK_SIZE))
    sha256: str = attrs.field(validator=_check_sha)
    file_mode: int = attrs.field(validator=_int_in(0, 0o7777))
    folder_permission: int = attrs.field(validator=_int_in(0, 0o7777))
    max_time: int = attrs.field(validator=_int_in(0, 10**9))
    ack_timeout: int = attrs.field(validator=_int_in(1, 10**6))
    retries: int = attrs.field(validator=_int_in(0, MAX_PROTOCOL_RETRIES))

    @property
    def plan(self) -> ChunkPlan:
        """The chunks of this copy."""
        return ChunkPlan(self.size, self.chunk_size)

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data."""
        return attrs.asdict(self)

    @classmethod
    def from_dict(cls, value: object) -> CopyInit:
        """Read a record; raises ProtocolError naming the bad field. Unknown keys are ignored."""
        if not isinstance(value, dict):
            raise ProtocolError(f"copy init record: expected a JSON object, got {value!r:.80}")
        names = [a.name for a in attrs.fields(cls)]
        missing = [n for n in names if n not in value]
        if missing:
            raise ProtocolError(f"copy init record: missing fields: {', '.join(missing)}")
        try:
            return cls(**{n: value[n] for n in names})
        except (TypeError, ValueError) as exc:
            raise ProtocolError(f"copy init record: {exc}") from None

    def to_bytes(self) -> bytes:
        """The record as JSON text (UTF-8)."""
        return json.dumps(self.to_dict(), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> CopyInit:
        """Parse :meth:`to_bytes` output; raises ProtocolError."""
        try:
            value = json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise ProtocolError(f"copy init record: not JSON: {exc}") from None
        return cls.from_dict(value)


# --------------------------------------------------------------------------- messages


@attrs.frozen
class Want:
    """dst → src: send these chunks."""

    copy_id: str
    indices: tuple[int, ...]


@attrs.frozen
class Chunk:
    """src → dst: chunk ``index`` (the message's ``data``) whose SHA-256 is ``digest``."""

    copy_id: str
    index: int
    digest: str


@attrs.frozen
class Result:
    """dst → src: the copy ended; ``text`` is the destination path (ok) or the reason."""

    copy_id: str
    ok: bool
    text: str


@attrs.frozen
class Abort:
    """src → dst: the source cannot go on (file changed, copy unknown or expired)."""

    copy_id: str
    text: str


Notice = Want | Chunk | Result | Abort


def notice_args(notice: Notice) -> tuple[str, ...]:
    """``methodArgs`` carrying ``notice``; :func:`parse_notice` reads them back."""
    if isinstance(notice, Want):
        return ("want", notice.copy_id, *(str(i) for i in notice.indices))
    if isinstance(notice, Chunk):
        return ("chunk", notice.copy_id, str(notice.index), notice.digest)
    if isinstance(notice, Result):
        return ("result", notice.copy_id, "ok" if notice.ok else "failed", notice.text)
    return ("abort", notice.copy_id, notice.text)


def _index(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 12:
        raise ProtocolError(f"copy protocol: chunk index {text!r} is not a non-negative integer")
    return int(text)


def parse_notice(args: Sequence[str]) -> Notice:
    """The protocol notice in a REQSUBCopy* message's ``methodArgs``; raises ProtocolError."""
    if len(args) < 2 or not _COPY_ID.fullmatch(args[1]):
        raise ProtocolError(
            f'copy protocol: field "methodArgs": value {list(args)[:4]!r}; allowed: '
            "[want|chunk|result|abort, <copy id: 32 hex digits>, ...]"
        )
    kind, copy_id, rest = args[0], args[1], list(args[2:])
    if kind == "want" and 0 < len(rest) <= MAX_WINDOW:
        return Want(copy_id, tuple(_index(i) for i in rest))
    if kind == "chunk" and len(rest) == 2 and _SHA256_HEX.fullmatch(rest[1]):
        return Chunk(copy_id, _index(rest[0]), rest[1])
    if kind == "result" and len(rest) == 2 and rest[0] in ("ok", "failed"):
        return Result(copy_id, rest[0] == "ok", rest[1])
    if kind == "abort" and len(rest) == 1:
        return Abort(copy_id, rest[0])
    raise ProtocolError(
        f"copy protocol: {kind!r} message with arguments {rest[:4]!r} is not valid; allowed: "
        f"want <1..{MAX_WINDOW} indices>, chunk <index> <sha256>, result ok|failed <text>, "
        "abort <text>"
    )


def protocol_message(
    *,
    to_node: str,
    method: str,
    ack_timeout: int,
    retries: int,
    args: Sequence[str] = (),
    data: bytes = b"",
    msg_id: str = "",
    method_timeout: int = PROTOCOL_METHOD_TIMEOUT,
) -> Message:
    """A message of the copy protocol: ACKed, retried, never replied to.

    ``ack_timeout``/``retries`` come from the copy's :class:`CopyInit` (or, answering a
    message about an unknown copy, from that message).
    """
    return Message(
        to_node=to_node,
        id=msg_id,
        method=method,
        method_args=tuple(args),
        data=data,
        reply_method=NO_REPLY,
        is_sub_published_msg=True,
        ack_timeout=max(ack_timeout, 1),
        retries=max(retries, 0),
        method_timeout=method_timeout,
    )


def driver_method_timeout(max_time: int) -> int:
    """methodTimeout of REQCopyDst: the copy's time plus clean-up grace (-1: no limit)."""
    return -1 if max_time <= 0 else max_time + DRIVER_GRACE


def check_peer(message: Message, expected: str, copy_id: str) -> None:
    """Refuse a protocol message from a node that does not take part in the copy."""
    if message.from_node != expected:
        raise ProtocolError(
            f"copy {copy_id}: {message.method} from {message.from_node!r} refused: only "
            f"{expected!r} takes part in this copy"
        )


def copy_reply(
    request: Message, node: str, copy_id: str, text: str, *, error: bool, tag: str
) -> Message | None:
    """The reply telling a copy's requester ``text``, in ``<fileName>.copyreply``/``.copyerror``.

    None when the request wants no reply. The id is derived from ``copy_id`` and ``tag``, so
    a reply sent again (a handler run again after a crash) is stored and delivered once.
    """
    suffix = ERROR_SUFFIX if error else REPLY_SUFFIX
    target = attrs.evolve(request, file_name=(request.file_name or "copy") + suffix)
    reply = build_reply(target, text.encode())
    if reply is None:
        return None
    return attrs.evolve(reply, id=f"{node}:copy-{copy_id}-{tag}")
