"""Parsing input documents off the event loop, so a big document delays no other client.

:func:`parse_document` is :func:`steward_otp.message.parse_messages` for the inputs: a
document up to :data:`INLINE_BYTES` is parsed right away (that takes well under a
millisecond for JSON and a few for YAML); a larger one is parsed in a worker thread, at
most :data:`PARSE_THREADS` at a time per node process, through a limiter of its own so that
parsing never takes the worker threads other parts of the node (file writes, folders)
need. Parsing is pure, so a cancelled caller does not wait for its thread to finish.
"""

from __future__ import annotations

import functools
from typing import Final

import trio

from steward_otp.message import ParseResult, parse_messages
from steward_otp.methods import BUILTIN_METHODS, MethodTable

__all__ = ["INLINE_BYTES", "PARSE_THREADS", "parse_document"]

INLINE_BYTES: Final = 16 * 1024
"""Documents up to this many bytes (or characters) are parsed on the event loop."""

PARSE_THREADS: Final = 2
"""Most documents parsed at the same time in worker threads."""

_LIMITER: Final = trio.lowlevel.RunVar[trio.CapacityLimiter]("steward_otp_parse_limiter")


def _limiter() -> trio.CapacityLimiter:
    try:
        return _LIMITER.get()
    except LookupError:
        limiter = trio.CapacityLimiter(PARSE_THREADS)
        _LIMITER.set(limiter)
        return limiter


async def parse_document(
    document: str | bytes | bytearray, *, table: MethodTable = BUILTIN_METHODS
) -> ParseResult:
    """:func:`~steward_otp.message.parse_messages` of ``document``, off the event loop
    when it is larger than :data:`INLINE_BYTES`. Never raises (but ``trio.Cancelled``)."""
    if len(document) <= INLINE_BYTES:
        return parse_messages(document, table=table)
    parse = functools.partial(parse_messages, document, table=table)
    return await trio.to_thread.run_sync(parse, limiter=_limiter(), abandon_on_cancel=True)
