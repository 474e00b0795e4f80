"""The protocol of the stream inputs (unix socket, TCP): one document in, answer lines out.

The client writes one JSON or YAML document and shuts down its write side; the node answers
one JSON line per message and closes. :func:`answer_client` serves one connection under the
input's :class:`~steward_otp.inputs.connections.ConnectionGate`. Whatever the client does,
it gets at least one answer line when it can still receive one, and nothing it does raises
out of here:

* a document over the size limit: one line, nothing accepted (the rest is read and
  dropped, so a client still writing gets its answer instead of a broken pipe);
* an incomplete document after the idle or total read timeout: one line, nothing accepted;
* an empty document: one line (``document: holds no messages``);
* more than :data:`~steward_otp.inputs.answers.MAX_REJECTED_ANSWERS` rejected messages: those
  are listed, the rest counted in one summary line;
* the input full: one line refusing the connection (or the idlest client is dropped with
  one line, see :mod:`~steward_otp.inputs.connections`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final

import trio

from steward_otp.inputs.answers import answer_lines, rejection_line
from steward_otp.inputs.connections import ConnectionGate, Ticket
from steward_otp.inputs.intake import Answer

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MAX_DOCUMENT_BYTES",
    "REFUSAL_SEND_TIMEOUT",
    "AcceptDocument",
    "ReadTimeout",
    "answer_client",
    "read_document",
    "too_large_line",
]

DEFAULT_MAX_DOCUMENT_BYTES: Final = 16 * 1024 * 1024
REFUSAL_SEND_TIMEOUT: Final = 1.0
"""Seconds spent at most telling a refused or dropped client why."""

AcceptDocument = Callable[[bytes], Awaitable[list[Answer]]]


class ReadTimeout(Exception):
    """The client did not finish sending its document in time; ``str()`` says which limit."""


def too_large_line(limit: int) -> str:
    """The answer to a document over the size limit."""
    return rejection_line(
        f"document: larger than {limit} bytes; nothing was accepted",
        f"documents up to {limit} bytes",
    )


async def read_document(
    stream: trio.abc.ReceiveStream,
    limit: int,
    *,
    gate: ConnectionGate | None = None,
    ticket: Ticket | None = None,
) -> bytes | None:
    """Everything the client sends until it shuts down its side; None when over ``limit``.

    With a ``gate`` and its ``ticket``: raises :class:`ReadTimeout` when the client sends
    nothing for the gate's idle timeout or has not finished by its read timeout, and notes
    every chunk as activity on the ticket.
    """
    chunks: list[bytes] = []
    size = 0
    idle = gate.limits.idle_timeout if gate is not None else float("inf")
    deadline = gate.deadline(ticket) if gate is not None and ticket is not None else float("inf")
    while True:
        with trio.move_on_at(min(deadline, trio.current_time() + idle)) as waited:
            chunk = await stream.receive_some(65536)
        if waited.cancelled_caught:
            if trio.current_time() >= deadline and gate is not None:
                raise ReadTimeout(
                    f"not complete after {gate.limits.read_timeout:g} s (the most a client has "
                    "to send its whole document)"
                )
            raise ReadTimeout(f"nothing received for {idle:g} s")
        if not chunk:
            return b"".join(chunks) if size <= limit else None
        if ticket is not None:
            ticket.touch()
        size += len(chunk)
        if size <= limit:
            chunks.append(bytes(chunk))
        else:
            chunks.clear()


async def _send_bounded(stream: trio.abc.SendStream, data: bytes, seconds: float) -> bool:
    """Send ``data`` within ``seconds``; False when the client did not take it in time."""
    with trio.move_on_after(seconds):
        await stream.send_all(data)
        return True
    return False


def _timeout_line(problem: ReadTimeout) -> str:
    return rejection_line(
        f"document: {problem}; nothing was accepted",
        "send the whole document, then shut down the write side (e.g. nc -N)",
    )


def _full_line(gate: ConnectionGate) -> str:
    return rejection_line(
        f"connection refused: {gate.limits.max_connections} clients are being served, the "
        "most this input allows; nothing was accepted",
        "connect again in a moment",
    )


def _evicted_line(gate: ConnectionGate) -> str:
    return rejection_line(
        f"connection dropped: the input was full ({gate.limits.max_connections} clients) and "
        f"this client had sent nothing for at least {gate.limits.evict_idle_after:g} s; "
        "nothing was accepted",
        "send the whole document right after connecting",
    )


async def answer_client(
    stream: trio.abc.Stream,
    accept: AcceptDocument,
    limit: int,
    source: str,
    gate: ConnectionGate | None = None,
) -> None:
    """Serve one client connection: admit, read, accept, answer (see the module docstring).

    Client errors are logged only. Without a ``gate`` nothing is limited but the size.
    """
    try:
        async with stream:
            if gate is None:
                await _serve(stream, accept, limit, None, None)
                return
            ticket = gate.admit()
            if ticket is None:
                log.info("%s: connection refused: %d clients served", source, gate.active)
                await _send_bounded(stream, _full_line(gate).encode(), REFUSAL_SEND_TIMEOUT)
                return
            try:
                await _serve(stream, accept, limit, gate, ticket)
            finally:
                gate.release(ticket)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
        log.info("%s: client went away: %s", source, exc)


async def _serve(
    stream: trio.abc.Stream,
    accept: AcceptDocument,
    limit: int,
    gate: ConnectionGate | None,
    ticket: Ticket | None,
) -> None:
    seconds = gate.limits.idle_timeout if gate is not None else float("inf")
    try:
        if ticket is None:
            document = await read_document(stream, limit)
        else:
            with ticket.scope:
                document = await read_document(stream, limit, gate=gate, ticket=ticket)
            ticket.reading = False
            if ticket.evicted:
                assert gate is not None
                await _send_bounded(stream, _evicted_line(gate).encode(), REFUSAL_SEND_TIMEOUT)
                return
    except ReadTimeout as problem:
        await _send_bounded(stream, _timeout_line(problem).encode(), REFUSAL_SEND_TIMEOUT)
        return
    if document is None:
        await _send_bounded(stream, too_large_line(limit).encode(), seconds)
        return
    try:
        answers = await accept(document)
    except Exception as exc:  # one client's document must not take the input down
        log.exception("input: accepting a document failed")
        line = rejection_line(f"document: not accepted: internal error: {type(exc).__name__}")
        await _send_bounded(stream, line.encode(), seconds)
        return
    await _send_bounded(stream, answer_lines(answers), seconds)
