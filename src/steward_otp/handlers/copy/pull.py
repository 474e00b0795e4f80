"""The destination's side of the conversation of a copy: asking for chunks, sending the result.

:func:`pull_chunks` asks the source for a window of missing chunks (REQSUBCopySrc
``want``), takes the news the chunk handler sends (:data:`TargetEvent`: stored, damaged,
aborted) and asks for more until every chunk is here. A period without news (the
:func:`stall_seconds`, doubling up to :data:`MAX_STALL`) makes it check the disk again and
ask again; at most one ``want`` waits for an unreachable source (:func:`want_retries`).
:func:`send_result` tells the source how the copy ended, through the durable outbox,
retried for at least :data:`RESULT_SPAN` seconds and with an id of its own, so a result
sent again is delivered once.
"""

from __future__ import annotations

import math
from typing import Final

import attrs
import trio

from steward_otp.handlers.base import HandlerContext, NodeServices
from steward_otp.handlers.copy.files import DstSession
from steward_otp.handlers.copy.plan import PullWindow
from steward_otp.handlers.copy.protocol import (
    SUB_METHOD_SRC,
    CopyInit,
    Result,
    Want,
    notice_args,
    protocol_message,
    protocol_retries,
)

MAX_STALL: Final = 600.0
"""The longest wait without news before the destination asks the source again (seconds)."""
RESULT_SPAN: Final = 24 * 3600
"""The result keeps trying to reach the source for at least this long (seconds)."""


@attrs.frozen
class ChunkStored:
    """A chunk was verified and stored on disk."""

    index: int


@attrs.frozen
class ChunkRejected:
    """A chunk arrived damaged (its SHA-256 or length is wrong) and was dropped."""

    index: int


@attrs.frozen
class CopyAborted:
    """The source gave up on the copy."""

    text: str


TargetEvent = ChunkStored | ChunkRejected | CopyAborted


def stall_seconds(init: CopyInit) -> float:
    """How long the destination first waits without news before asking again.

    The wait doubles after each silent period, up to :data:`MAX_STALL` seconds.
    """
    return max(30.0, 3.0 * init.ack_timeout)


def want_retries(stall: float, ack_timeout: int) -> int:
    """Retries of a ``want``: it keeps trying for at most one ``stall`` period.

    So while the source is unreachable at most one ``want`` waits for it (the older ones
    have failed), and when it comes back it is asked for one window, not one per silent
    period. Chunks, results and aborts are retried for the whole copy time instead.
    """
    return max(0, math.floor(stall / max(ack_timeout, 1)) - 1)


async def pull_chunks(
    ctx: HandlerContext,
    init: CopyInit,
    session: DstSession,
    pull: PullWindow,
    events: trio.MemoryReceiveChannel[TargetEvent],
) -> str | None:
    """Ask for chunks until all are here; returns the source's reason if it gives up."""
    base = stall = stall_seconds(init)
    while not pull.complete:
        wanted = pull.next_requests()
        if wanted:
            want = protocol_message(
                to_node=init.src_node,
                method=SUB_METHOD_SRC,
                ack_timeout=init.ack_timeout,
                retries=want_retries(stall, init.ack_timeout),
                args=notice_args(Want(init.copy_id, tuple(wanted))),
            )
            await ctx.services.submit([want])
        received: list[TargetEvent] = []
        with trio.move_on_after(stall):
            received.append(await events.receive())
        if not received:
            # No news for a whole stall period (the last want has given up by now):
            # resync with the disk and ask again, backing off.
            for index in await trio.to_thread.run_sync(session.verified):
                pull.received(index)
            pull.forget_outstanding()
            stall = min(stall * 2, MAX_STALL)
            continue
        stall = base
        while True:
            try:
                received.append(events.receive_nowait())
            except trio.WouldBlock:
                break
        for event in received:
            if isinstance(event, CopyAborted):
                return event.text
            if isinstance(event, ChunkStored):
                pull.received(event.index)
            else:
                pull.rejected(event.index)
    return None


async def send_result(services: NodeServices, init: CopyInit, ok: bool, text: str) -> None:
    """Send the copy's result to its source, retried for at least :data:`RESULT_SPAN`."""
    result = protocol_message(
        to_node=init.src_node,
        method=SUB_METHOD_SRC,
        ack_timeout=init.ack_timeout,
        retries=max(init.retries, protocol_retries(RESULT_SPAN, init.ack_timeout)),
        args=notice_args(Result(init.copy_id, ok, text)),
        msg_id=f"{services.node_name}:copy-{init.copy_id}-result",
    )
    await services.submit([result])
