"""The destination side of a file copy: REQCopyDst (the pull) and REQSUBCopyDst (chunks in).

REQCopyDst's handler runs for the whole copy. It asks the source for a window of missing
chunks, waits for news from the chunk handler (stored, damaged, aborted), asks for more,
and at the end joins, verifies and renames the file into place and sends the result to the
source. Its message stays unfinished in the node's inbox until then, so after a restart the
node runs it again and it continues from the verified chunks on disk.

REQSUBCopyDst's handler checks each chunk against its SHA-256, stores it (idempotently) and
tells the running pull, if there is one on this node. Without one (between a restart and
the pull's start) the chunk is still stored; the pull finds it on disk.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Final

import attrs
import trio

from steward_otp.handlers.base import HandlerContext, HandlerError, NodeServices
from steward_otp.handlers.copy.files import (
    AssemblyError,
    DstSession,
    describe,
    state_root,
    sweep_destination,
)
from steward_otp.handlers.copy.plan import PullWindow, chunk_is_intact, window_for
from steward_otp.handlers.copy.protocol import (
    SUB_METHOD_SRC,
    Abort,
    Chunk,
    CopyArgsError,
    CopyInit,
    ProtocolError,
    Result,
    Want,
    check_peer,
    notice_args,
    parse_notice,
    protocol_message,
    protocol_retries,
    resolve_copy_path,
)
from steward_otp.message import Message

MAX_STALL: Final = 600.0
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


@attrs.define
class _Writers:
    """Chunk writes under way for one copy; ``closing`` once the copy's files go away."""

    count: int = 0
    closing: bool = False
    idle: trio.Event = attrs.field(factory=trio.Event)


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


class CopyTarget:
    """The destination side's handlers, and the channels from chunk arrivals to the pulls.

    One instance serves one node (a running pull is keyed by the node's home and copy id).
    """

    def __init__(self) -> None:
        self._pulls: dict[tuple[str, str], trio.MemorySendChannel[TargetEvent]] = {}
        self._writers: dict[tuple[str, str], _Writers] = {}
        self._progress: dict[str, tuple[CopyInit, PullWindow, float, int]] = {}

    def info(self) -> dict[str, object]:
        """The copies being received, with how many chunks are verified (tree info)."""
        now = trio.current_time()
        copies: dict[str, object] = {}
        for copy_id, (init, pull, started, had) in self._progress.items():
            fetched = max(len(pull.have) - had, 0)  # what arrived since this run began
            elapsed = now - started
            fetched_bytes = min(fetched * init.chunk_size, init.size)
            copies[copy_id] = {
                "from": init.src_node,
                "chunks_verified": len(pull.have),
                "chunks": init.plan.count,
                "bytes_per_second": round(fetched_bytes / elapsed) if elapsed > 0 else 0,
            }
        return {"copies": copies}

    @asynccontextmanager
    async def _writing(self, key: tuple[str, str]) -> AsyncIterator[bool]:
        """Around a write into a copy's folder: yields False when the copy is ending."""
        state = self._writers.setdefault(key, _Writers())
        if state.closing:
            yield False
            return
        if state.count == 0:
            state.idle = trio.Event()
        state.count += 1
        try:
            yield True
        finally:
            state.count -= 1
            if state.count == 0:
                state.idle.set()
                if not state.closing:
                    del self._writers[key]

    async def _finish(self, key: tuple[str, str], session: DstSession, ok: bool, text: str) -> None:
        """Record the result and remove the chunks, once no chunk write is under way."""
        state = self._writers.setdefault(key, _Writers())
        state.closing = True
        try:
            if state.count:
                await state.idle.wait()
            await trio.to_thread.run_sync(session.finish, ok, text, time.time())
        finally:
            if self._writers.get(key) is state:
                del self._writers[key]

    @contextmanager
    def _listen(self, key: tuple[str, str]) -> Iterator[trio.MemoryReceiveChannel[TargetEvent]]:
        send, receive = trio.open_memory_channel[TargetEvent](math.inf)
        self._pulls[key] = send
        try:
            yield receive
        finally:
            if self._pulls.get(key) is send:
                del self._pulls[key]
            send.close()

    def _notify(self, key: tuple[str, str], event: TargetEvent) -> None:
        send = self._pulls.get(key)
        if send is not None:
            send.send_nowait(event)

    def _running(self, home: Path) -> set[str]:
        return {copy_id for node_home, copy_id in self._pulls if node_home == str(home)}

    async def copy_dst(self, ctx: HandlerContext, msg: Message) -> bytes | None:
        """Run the destination side of a copy until it ends (or its time is over).

        Runs again after a restart and continues from the verified chunks on disk; run for
        a copy that already ended, it sends the same result again. Ends by sending the result
        to the source; a failed copy also raises HandlerError (to the central error log).
        Cancellation (the node stops) leaves the chunks on disk for the next run.
        """
        init = CopyInit.from_bytes(msg.data)
        check_peer(msg, init.src_node, init.copy_id)
        home = ctx.services.home
        key = (str(home), init.copy_id)
        if key in self._pulls:
            return None  # this copy runs already on this node
        root = state_root(home)
        session = DstSession(root, init.copy_id)
        with self._listen(key) as events:
            await trio.to_thread.run_sync(sweep_destination, root, time.time(), self._running(home))
            finished = await trio.to_thread.run_sync(session.result)
            if finished is not None:
                await self._send_result(ctx.services, init, *finished)
                return None
            try:
                destination = resolve_copy_path(init.dst_path, ctx.data_dir, "dstPath")
                first_seen = await trio.to_thread.run_sync(session.open, init, time.time())
            except (CopyArgsError, ProtocolError, OSError) as exc:
                ok, text = False, describe(exc)
            else:
                ok, text = await self._receive(
                    ctx,
                    init,
                    session=session,
                    destination=destination,
                    first_seen=first_seen,
                    events=events,
                )
            self._progress.pop(init.copy_id, None)
            await self._finish(key, session, ok, text)
            await self._send_result(ctx.services, init, ok, text)
        if not ok:
            raise HandlerError(f"copy {init.copy_id}: {text}")
        return None

    async def _receive(
        self,
        ctx: HandlerContext,
        init: CopyInit,
        *,
        session: DstSession,
        destination: Path,
        first_seen: float,
        events: trio.MemoryReceiveChannel[TargetEvent],
    ) -> tuple[bool, str]:
        """Pull, join and place the file within the copy's time: ``(ok, path or reason)``."""
        plan = init.plan
        pull = PullWindow(plan.count, window_for(init.chunk_size))
        remaining = first_seen + init.max_time - time.time() if init.max_time else math.inf
        with trio.move_on_after(max(remaining, 0.0)):
            await trio.to_thread.run_sync(session.discard_partial_writes, time.time() - 60)
            for index in await trio.to_thread.run_sync(session.verified):
                pull.received(index)
            self._progress[init.copy_id] = (init, pull, trio.current_time(), len(pull.have))
            aborted = await trio.to_thread.run_sync(session.aborted)
            if aborted is not None:
                return False, aborted
            while True:
                failure = await self._pull(ctx, init, session, pull, events)
                if failure is not None:
                    return False, failure
                try:
                    bad = await trio.to_thread.run_sync(session.assemble, init, destination)
                except AssemblyError as exc:
                    return False, str(exc)
                if not bad:
                    return True, str(destination)
                ctx.report(
                    "warning",
                    f"warning: copy {init.copy_id}: chunks {bad} were damaged on disk; "
                    "fetching them again",
                )
                pull.lost(bad)
        return False, (
            f"did not finish within maxTotalCopyTime={init.max_time}s ({len(pull.have)} of "
            f"{plan.count} chunks arrived); its temporary files are removed"
        )

    async def _pull(
        self,
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

    async def _send_result(
        self, services: NodeServices, init: CopyInit, ok: bool, text: str
    ) -> None:
        result = protocol_message(
            to_node=init.src_node,
            method=SUB_METHOD_SRC,
            ack_timeout=init.ack_timeout,
            retries=max(init.retries, protocol_retries(RESULT_SPAN, init.ack_timeout)),
            args=notice_args(Result(init.copy_id, ok, text)),
            msg_id=f"{services.node_name}:copy-{init.copy_id}-result",
        )
        await services.submit([result])

    async def sub_dst(self, ctx: HandlerContext, msg: Message) -> bytes | None:
        """Store a chunk that matches its hash (else have it asked for again), or an abort.

        Chunks of a copy that ended (or never started here) are ignored: late duplicates.
        """
        notice = parse_notice(msg.method_args)
        if not isinstance(notice, Chunk | Abort):
            raise HandlerError(f"copy {notice.copy_id}: {msg.method_args[0]!r} is not for a target")
        key = (str(ctx.services.home), notice.copy_id)
        session = DstSession(state_root(ctx.services.home), notice.copy_id)
        async with self._writing(key) as open_:
            loaded = await trio.to_thread.run_sync(session.load) if open_ else None
            if loaded is None:
                return None  # the copy ended (or never started here): a late duplicate
            init = loaded[0]
            check_peer(msg, init.src_node, init.copy_id)
            if isinstance(notice, Abort):
                await trio.to_thread.run_sync(session.abort, notice.text)
                self._notify(key, CopyAborted(notice.text))
                return None
            if not chunk_is_intact(init.plan, notice.index, msg.data, notice.digest):
                ctx.report(
                    "warning",
                    f"warning: copy {init.copy_id}: chunk {notice.index} from {msg.from_node} "
                    "arrived damaged (length or SHA-256 wrong); asking for it again",
                )
                self._notify(key, ChunkRejected(notice.index))
                return None
            try:
                await trio.to_thread.run_sync(
                    session.store_chunk, notice.index, notice.digest, msg.data
                )
            except FileNotFoundError:
                self._notify(key, ChunkRejected(notice.index))  # the folder was being swept
                return None
            self._notify(key, ChunkStored(notice.index))
        return None
