"""The TCP input ``tcp_listener`` (``HOST:PORT``): the unix socket's protocol over TCP.

Protocol, exactly as on ``tmp/steward.sock``: the client writes one JSON or YAML document
(a list of messages, or one message) and shuts down its write side
(``nc -N 127.0.0.1 8091 < msg.json``); the node answers one JSON line per message (see
:class:`steward_otp.inputs.intake.Answer`) and closes. Nothing is answered as accepted
before it is durable in the outbox. A document larger than ``max_document_bytes`` is
refused whole with one error line. The same limits as the socket's apply (at most
``limits.max_connections`` clients, read timeouts, bounded answers; see
:mod:`steward_otp.inputs.document_stream`), and one document causes at most
:data:`~steward_otp.inputs.answers.MAX_REPORTS_PER_DOCUMENT` error-log lines.

There is no authentication on this door: anyone who can reach the address can hand the
node messages. Bind it to loopback or a trusted network.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import attrs
import trio

from steward_otp.handlers.base import Level
from steward_otp.inputs.answers import bounded_reports
from steward_otp.inputs.connections import ConnectionGate, Limits
from steward_otp.inputs.document_stream import (
    DEFAULT_MAX_DOCUMENT_BYTES,
    AcceptDocument,
    answer_client,
)
from steward_otp.inputs.intake import Answer, rejection_texts

log = logging.getLogger(__name__)

Report = Callable[[Level, str], None]

_ADDRESS = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]*):(?P<port>\d{1,5})")


class ListenError(Exception):
    """A listener input could not bind its address; ``str()`` says which and why."""


@attrs.frozen
class ListenAddress:
    """A parsed ``HOST:PORT``; ``host`` is None for all interfaces (``:PORT``)."""

    text: str
    host: str | None
    port: int


def parse_listen_address(text: str) -> ListenAddress:
    """Read ``HOST:PORT``, ``[IPV6]:PORT`` or ``:PORT``; raise :class:`ListenError` otherwise."""
    match = _ADDRESS.fullmatch(text)
    if match is None or not 1 <= int(match["port"]) <= 65535:
        raise ListenError(
            f"cannot listen on {text!r}: not an address; allowed: HOST:PORT with PORT from "
            "1 to 65535, e.g. '127.0.0.1:8091', '[::1]:8091' or ':8091' (all interfaces)"
        )
    host = match["host"].strip("[]") or None
    return ListenAddress(text, host, int(match["port"]))


def bind_error(address: str, error: OSError) -> ListenError:
    """The clear crash for an address that cannot be bound (in use, not ours, ...)."""
    return ListenError(f"cannot listen on {address}: {error.strerror or error}")


def reporting(accept: AcceptDocument, report: Report, source: str) -> AcceptDocument:
    """``accept`` that also reports rejected messages to the error kernel (warning): the
    first :data:`~steward_otp.inputs.answers.MAX_REPORTS_PER_DOCUMENT` of a document one by
    one, the others counted in one more line."""

    async def accept_and_report(document: bytes) -> list[Answer]:
        answers = await accept(document)
        for text in bounded_reports(rejection_texts(answers, source), source):
            report("warning", text)
        return answers

    return accept_and_report


class TcpInput:
    """Supervised process serving the TCP input. See the module docstring.

    Ready once the listener accepts connections. A bind failure is a crash raising
    :class:`ListenError` ("cannot listen on HOST:PORT: ..."); the supervisor's restart
    intensity then decides whether the node gives up. Cancellation closes the listener and
    drops clients still waiting for their answer (what was already accepted stays durable).
    """

    SOURCE = "tcp listener"

    def __init__(
        self,
        address: str,
        accept: AcceptDocument,
        report: Report,
        *,
        max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
        limits: Limits | None = None,
    ) -> None:
        self.address = parse_listen_address(address)
        self.accept = reporting(accept, report, self.SOURCE)
        self.max_document_bytes = max_document_bytes
        self.gate = ConnectionGate(limits)
        self.connections = 0

    @property
    def info(self) -> dict[str, object]:
        """What the tree snapshot shows: the address, connections so far, clients served
        now, refused and dropped."""
        return {
            "address": self.address.text,
            "connections": self.connections,
            "clients": self.gate.active,
            "refused": self.gate.refused,
            "dropped": self.gate.evicted,
        }

    async def run(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled."""
        try:
            listeners = await trio.open_tcp_listeners(self.address.port, host=self.address.host)
        except OSError as error:
            raise bind_error(self.address.text, error) from error
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(trio.serve_listeners, self._serve, listeners)
                log.info("TCP input listening on %s", self.address.text)
                task_status.started()
        finally:
            with trio.CancelScope(shield=True):  # closing a listener never blocks
                for listener in listeners:
                    await listener.aclose()

    async def _serve(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        await answer_client(stream, self.accept, self.max_document_bytes, self.SOURCE, self.gate)
