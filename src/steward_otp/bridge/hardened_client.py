"""nats-py's client, made safe against what other clients of the broker can send.

nats-py ends its read loop -- for good, with the connection still up, so the node hears
nothing more and looks healthy -- when a message it is to deliver has a subject or reply
subject that is not UTF-8, or a header block it cannot read (``NATS/1.0`` and nothing
after it). And it drops the connection (to reconnect) when a subject or reply subject
holds a vertical tab or form feed: its parser splits the server's ``MSG`` line on any
ASCII whitespace, the server only on spaces and tabs. The broker passes all of these on as
any client sent them, so any client allowed to publish to one of a node's subjects could
deafen it with one frame, or keep it reconnecting.

:class:`HardenedClient` closes those doors where nats-py reads the frame:

* the ``MSG``/``HMSG`` lines are split as the server writes them, on spaces and tabs
  (:data:`MSG_LINE`, :data:`HMSG_LINE`, put in place of nats-py's patterns when this
  module is imported: the only nats-py client in a node's process is its bridge's);
* a message whose subject or reply subject is not UTF-8, or holds a control character,
  is dropped and counted (:attr:`RefusedFrames.dropped`): nothing could answer it, and
  nothing of ours sends one;
* a header block nats-py cannot read is taken as no headers (counted in
  :attr:`RefusedFrames.unreadable_headers`): the node then refuses the message as it
  refuses any without the protocol's headers, and reports it;
* should the read loop end for any other reason while the connection is up, the client
  notes it (``reader_stopped``) and calls ``on_reader_stopped``: the bridge then closes
  the connection so that its supervisor starts it again (see
  :mod:`steward_otp.bridge.actor`).

It also writes header blocks once per header set (a node sends few), not once per message,
and hands the messages of a subscription made with
:meth:`HardenedClient.subscribe_direct` straight to a plain function from the read loop,
not through nats-py's per-subscription queue, task and coroutine callback. That function
must not block: the bridge's offers the message to a bounded Trio channel, which drops and
counts what does not fit (the guard nats-py's pending limits would be).

This module leans on internals of nats-py (``_build_message``, ``_process_headers``,
``_parse_header_lines``, ``_process_msg``, ``_send_publish``, ``_send_subscribe``,
``_remove_sub``, ``_read_loop``, the parser's ``MSG_RE`` and ``HMSG_RE``); the integration
tests send each of those frames through a real nats-server, so a nats-py that renames them
fails the tests rather than the node. ``pyproject.toml`` therefore admits only the nats-py
release the tests pass with.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs
import nats.protocol.parser
from nats import errors
from nats.aio.client import Client
from nats.protocol.command import hpub_cmd

log = logging.getLogger("steward_otp.bridge")

MSG_LINE: Final = re.compile(
    rb"\AMSG[ \t]+([^ \t\r\n]+)[ \t]+([^ \t\r\n]+)[ \t]+(([^ \t\r\n]+)[ \t]+)?(\d+)\r\n"
)
"""``MSG <subject> <sid> [reply] <size>``, split on spaces and tabs as the server does."""
HMSG_LINE: Final = re.compile(
    rb"\AHMSG[ \t]+([^ \t\r\n]+)[ \t]+([^ \t\r\n]+)[ \t]+(([^ \t\r\n]+)[ \t]+)?"
    rb"(\d+)[ \t]+(\d+)\r\n"
)
"""``HMSG <subject> <sid> [reply] <header size> <total size>``, split the same way."""
nats.protocol.parser.MSG_RE = MSG_LINE
nats.protocol.parser.HMSG_RE = HMSG_LINE

_UNANSWERABLE: Final = re.compile(rb"[\x00-\x20\x7f]")
"""A control character or space in a subject: no client library sends one."""
_WHITESPACE: Final = re.compile(r"\s")
"""What makes a header name invalid (nats-py skips such a header)."""


_HEADER_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""A header name nats-py accepts (an HTTP token)."""
_NEWLINES: Final = str.maketrans({"\r": " ", "\n": " "})


@functools.lru_cache(maxsize=256)
def _header_name(name: str) -> bytes:
    """``name`` as written in a header block (b"" for a blank one, which is left out);
    raises nats-py's BadHeaderError for one that is not a token, as nats-py does."""
    name = name.strip()
    if name and not _HEADER_NAME.fullmatch(name):
        raise errors.BadHeaderError(name)
    return name.encode()


def header_block(headers: Mapping[str, str]) -> bytes:
    """The ``NATS/1.0`` header block of ``headers``, byte for byte as nats-py writes it.

    A node sends the same few header sets again and again (its name, the encoding, the
    protocol version): the blocks of the last :data:`_HEADER_BLOCKS_KEPT` are kept."""
    return _header_block(tuple(headers.items()))


_HEADER_BLOCKS_KEPT: Final = 64


@functools.lru_cache(maxsize=_HEADER_BLOCKS_KEPT)
def _header_block(items: tuple[tuple[str, str], ...]) -> bytes:
    lines = [b"NATS/1.0\r\n"]
    for name, value in items:
        written = _header_name(name)
        if written:
            lines.append(written + b": " + value.strip().translate(_NEWLINES).encode() + b"\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)


def _worth_a_line(count: int) -> bool:
    """Whether the ``count``-th refused frame (or failed take) of a kind is logged: the
    first and every 1000th, so a flood of them costs a few lines."""
    return count == 1 or count % 1000 == 0


def _utf8(raw: bytes) -> bool:
    if raw.isascii():
        return True
    try:
        raw.decode()
    except UnicodeDecodeError:
        return False
    return True


Deliver = Callable[[str, bytes, "dict[str, str] | None", str], None]
"""Takes one message of a direct subscription: subject, payload, headers, reply subject."""


@attrs.define
class RefusedFrames:
    """What a bridge's clients refused to read, over all its connections."""

    dropped: int = 0
    """Messages dropped for a subject or reply subject not UTF-8 or with a control character."""
    unreadable_headers: int = 0
    """Messages whose header block nats-py could not read, delivered without headers."""


class HardenedClient(Client):
    """:class:`nats.aio.client.Client` that keeps reading whatever other clients send.

    What it refuses is counted in ``refused``; ``on_refused`` is called after each count,
    ``on_reader_stopped`` once the read loop has stopped while connected.
    """

    def __init__(
        self,
        refused: RefusedFrames,
        *,
        on_refused: Callable[[], None] = lambda: None,
        on_reader_stopped: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__()
        self.refused = refused
        self._on_refused = on_refused
        self._on_reader_stopped = on_reader_stopped
        self.reader_stopped = False
        """The read loop ended while the connection was up: nothing more is read."""
        self._direct: dict[int, Deliver] = {}
        self.failed_takes = 0
        """Messages a direct subscription's deliver function raised on (a bug; the first
        and every 1000th are logged with the traceback), lost to that subscription."""
        self._subscribing: Deliver | None = None

    async def subscribe_direct(self, subject: str, deliver: Deliver, queue: str = "") -> Any:
        """Subscribe to ``subject`` (in ``queue``), each message going to ``deliver`` from
        the read loop; returns nats-py's subscription (unsubscribe it as any other).
        ``deliver`` is in place before the broker hears of the subscription."""
        self._subscribing = deliver
        try:
            return await self.subscribe(subject, queue=queue)
        finally:
            self._subscribing = None

    async def _send_subscribe(self, sub: Any) -> None:
        # nats-py's subscribe() gets here without an await, so this is the subscription
        # subscribe_direct() is making.
        if self._subscribing is not None:
            self._direct[sub._id] = self._subscribing
            self._subscribing = None
        await super()._send_subscribe(sub)

    def _remove_sub(self, sid: int, max_msgs: int = 0) -> None:
        self._direct.pop(sid, None)
        super()._remove_sub(sid, max_msgs)

    async def _process_msg(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: Any
    ) -> None:
        deliver = self._direct.get(sid)
        if deliver is None:
            await super()._process_msg(sid, subject, reply, data, headers)
            return
        self.stats["in_msgs"] += 1
        self.stats["in_bytes"] += len(data)
        hdr = await self._process_headers(headers)
        if not self._readable(subject, reply):
            return
        try:
            deliver(subject.decode(), data, hdr, reply.decode())
        except Exception:  # a bug there must not end the read loop
            self.failed_takes += 1
            if _worth_a_line(self.failed_takes):
                log.exception(
                    "bridge: a subscription could not take a message on %r (%d so far)",
                    subject,
                    self.failed_takes,
                )

    async def _send_publish(
        self,
        subject: str,
        reply: str,
        payload: bytes,
        payload_size: int,
        headers: dict[str, Any] | None,
    ) -> None:
        if headers is None or not subject:
            await super()._send_publish(subject, reply, payload, payload_size, headers)
            return
        command = hpub_cmd(subject, reply, header_block(headers), payload)
        self.stats["out_msgs"] += 1
        self.stats["out_bytes"] += payload_size
        await self._send_command(command)
        if self._flush_queue is not None and self._flush_queue.empty():
            await self._flush_pending()

    @staticmethod
    def _parse_header_lines(raw: bytes) -> dict[str, str]:
        # nats-py's, with one regex search where it makes a generator per header name.
        out: dict[str, str] = {}
        for line in raw.split(b"\r\n"):
            name, sep, value = line.partition(b":")
            if not sep:
                continue
            try:
                key = name.strip().decode("ascii")
            except UnicodeDecodeError:
                continue
            if _WHITESPACE.search(key):
                continue
            out[key] = value.strip().decode("utf-8", "replace")
        return out

    def _readable(self, subject: bytes, reply: bytes) -> bool:
        """Whether a message with ``subject`` and ``reply`` can be delivered; one that
        cannot is counted (and the first and every 1000th logged)."""
        if (
            _utf8(subject)
            and _utf8(reply)
            and not (_UNANSWERABLE.search(subject) or _UNANSWERABLE.search(reply))
        ):
            return True
        self.refused.dropped += 1
        if _worth_a_line(self.refused.dropped):
            log.warning(
                "bridge: dropped a message whose subject or reply subject is not UTF-8 "
                "or holds a control character (%d so far): subject %r, reply %r",
                self.refused.dropped,
                subject[:100],
                reply[:100],
            )
        self._on_refused()
        return False

    def _build_message(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: Any
    ) -> Any:
        if not self._readable(subject, reply):
            return None  # nats-py skips a message it could not build
        return super()._build_message(sid, subject, reply, data, headers)

    async def _process_headers(self, headers: Any) -> Any:
        try:
            return await super()._process_headers(headers)
        except Exception as exc:
            self.refused.unreadable_headers += 1
            if _worth_a_line(self.refused.unreadable_headers):
                log.warning(
                    "bridge: a message's header block could not be read (%d so far: %r); "
                    "taken as no headers: %r",
                    self.refused.unreadable_headers,
                    exc,
                    bytes(headers[:100]) if isinstance(headers, bytes | bytearray) else headers,
                )
            self._on_refused()
            return None

    async def _read_loop(self) -> None:
        await super()._read_loop()
        if self.is_connected:  # not closing, not reconnecting: nats-py gave up reading
            self.reader_stopped = True
            self._on_reader_stopped()
