"""One copy on the destination side: the process ``node/copies/<copy id>`` and its requests.

A :class:`CopySession` owns the state of one copy on this node, so that the pull and the
chunk writes of the copy never race: it takes the handlers' requests from its inbox
(:class:`PullRequest` from REQCopyDst, :class:`ChunkRequest` from REQSUBCopyDst) and
answers each through its ``done`` event.

* The pull runs once per session; a second pull request of the same copy is answered at
  once (it runs already). The pull resumes from the verified chunks on disk, joins,
  verifies and renames the file into place within the copy's time, and sends the result;
  a copy that had ended sends its result again.
* A chunk is stored only when its SHA-256 and length match; a damaged one is asked for
  again. Chunks of a copy that ended, or never started here, are ignored.
* The copy's folder is removed only once no chunk write is under way; the session ends
  with its pull, and a request it did not take is handed back (``retry``) for the next
  session of the copy.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import trio

from steward_otp.handlers.base import HandlerContext
from steward_otp.handlers.copy.arguments import CopyArgsError, resolve_copy_path
from steward_otp.handlers.copy.files import (
    AssemblyError,
    DstSession,
    describe,
    state_root,
    sweep_destination,
)
from steward_otp.handlers.copy.plan import PullWindow, chunk_is_intact, window_for
from steward_otp.handlers.copy.protocol import (
    Abort,
    Chunk,
    CopyInit,
    ProtocolError,
    check_peer,
)
from steward_otp.handlers.copy.pull import (
    ChunkRejected,
    ChunkStored,
    CopyAborted,
    TargetEvent,
    pull_chunks,
    send_result,
)
from steward_otp.handlers.paths import UnsafePath, refuse_own_folder
from steward_otp.message import Message
from steward_otp.supervisors import current_child

if TYPE_CHECKING:
    from steward_otp.handlers.copy.session_supervisor import CopySessions


@attrs.define(eq=False, kw_only=True)
class SessionRequest:
    """A handler's request to a copy session, answered by setting ``done``.

    ``retry``: the session stopped before it took the request; ask the next one.
    """

    ctx: HandlerContext
    done: trio.Event = attrs.field(factory=trio.Event)
    error: Exception | None = None
    retry: bool = False


@attrs.define(eq=False, kw_only=True)
class PullRequest(SessionRequest):
    """REQCopyDst's request: run the pull; ``outcome`` is ``(ok, text)``, or None when a
    pull of this copy runs already (or was cancelled through ``scope``)."""

    init: CopyInit
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    outcome: tuple[bool, str] | None = None


@attrs.define(eq=False, kw_only=True)
class ChunkRequest(SessionRequest):
    """REQSUBCopyDst's request: check and store a chunk, or record an abort."""

    msg: Message
    notice: Chunk | Abort


class CopySession:
    """One copy on the destination side: a process under ``copies`` (``node/copies/<copy
    id>``) that runs the pull and the chunk writes of that copy, and owns their state."""

    def __init__(self, copy_id: str, sessions: CopySessions) -> None:
        self.copy_id = copy_id
        self._sessions = sessions
        self._events: trio.MemorySendChannel[TargetEvent] | None = None
        self._pulled = False
        self._writes = 0
        self._closing = False
        self._idle = trio.Event()
        self._progress: tuple[CopyInit, PullWindow, float, int] | None = None

    def info(self) -> dict[str, object]:
        """Whether the pull runs, and how many chunks are verified (tree info)."""
        shown: dict[str, object] = {"pulling": self._events is not None}
        if self._progress is not None:
            init, pull, started, had = self._progress
            fetched = max(len(pull.have) - had, 0)  # what arrived since this run began
            elapsed = trio.current_time() - started
            fetched_bytes = min(fetched * init.chunk_size, init.size)
            shown.update(
                {
                    "from": init.src_node,
                    "chunks_verified": len(pull.have),
                    "chunks": init.plan.count,
                    "bytes_per_second": round(fetched_bytes / elapsed) if elapsed > 0 else 0,
                }
            )
        return shown

    def busy(self) -> bool:
        """A running pull or a chunk write keeps the session from being reaped."""
        return self._events is not None or self._writes > 0

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """Take requests until the pull has ended (or the session is stopped)."""
        handle = current_child()
        handle.info_provider = self.info
        handle.busy = self.busy
        send, receive = trio.open_memory_channel[SessionRequest](math.inf)
        try:
            async with trio.open_nursery() as nursery:
                with trio.CancelScope() as taking:
                    task_status.started(send)
                    async for request in receive:
                        handle.touch()
                        if taking.cancel_called:  # the copy ended here: the next session
                            request.retry = True
                            request.done.set()
                        elif isinstance(request, ChunkRequest):
                            nursery.start_soon(self._answer_chunk, request)
                        elif isinstance(request, PullRequest):
                            if self._pulled:
                                request.done.set()  # this copy runs already on this node
                            else:
                                self._pulled = True
                                nursery.start_soon(self._answer_pull, request, taking)
        finally:
            # Requests it did not take go to the next session of this copy.
            while True:
                try:
                    left = receive.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
                left.retry = True
                left.done.set()
            receive.close()

    async def _answer_pull(self, request: PullRequest, taking: trio.CancelScope) -> None:
        try:
            with request.scope:
                request.outcome = await self._copy(request.ctx, request.init)
        except Exception as exc:
            request.error = exc
        finally:
            request.done.set()
            taking.cancel()  # the copy has ended here: so does the session

    async def _answer_chunk(self, request: ChunkRequest) -> None:
        try:
            await self._chunk(request.ctx, request.msg, request.notice)
        except Exception as exc:
            request.error = exc
        finally:
            request.done.set()

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[bool]:
        """Around a write into the copy's folder: yields False when the copy is ending."""
        if self._closing:
            yield False
            return
        if self._writes == 0:
            self._idle = trio.Event()
        self._writes += 1
        try:
            yield True
        finally:
            self._writes -= 1
            if self._writes == 0:
                self._idle.set()

    async def _finish(self, session: DstSession, ok: bool, text: str) -> None:
        """Record the result and remove the chunks, once no chunk write is under way."""
        self._closing = True
        if self._writes:
            await self._idle.wait()
        await trio.to_thread.run_sync(session.finish, ok, text, time.time())

    @contextmanager
    def _listen(self) -> Iterator[trio.MemoryReceiveChannel[TargetEvent]]:
        send, receive = trio.open_memory_channel[TargetEvent](math.inf)
        self._events = send
        try:
            yield receive
        finally:
            self._events = None
            send.close()

    def _notify(self, event: TargetEvent) -> None:
        if self._events is not None:
            self._events.send_nowait(event)

    async def _copy(self, ctx: HandlerContext, init: CopyInit) -> tuple[bool, str] | None:
        """The destination side of the copy, to its end: ``(ok, text)``, or None when it had
        ended before (its result is sent again)."""
        home = ctx.services.home
        root = state_root(home)
        session = DstSession(root, init.copy_id)
        with self._listen() as events:
            running = self._sessions.pulling()
            await trio.to_thread.run_sync(sweep_destination, root, time.time(), running)
            finished = await trio.to_thread.run_sync(session.result)
            if finished is not None:
                await send_result(ctx.services, init, *finished)
                return None
            try:
                destination = resolve_copy_path(init.dst_path, ctx.data_dir, "dstPath")
                # Never over the node's configuration, keys, store or sockets.
                refuse_own_folder(
                    destination,
                    data_dir=ctx.data_dir,
                    home=home,
                    field="methodArgs[2] (dstPath)",
                    value=init.dst_path,
                )
                first_seen = await trio.to_thread.run_sync(session.open, init, time.time())
            except (CopyArgsError, UnsafePath, ProtocolError, OSError) as exc:
                ok, text = False, describe(exc)
            else:
                try:
                    ok, text = await self._receive(
                        ctx,
                        init,
                        session=session,
                        destination=destination,
                        first_seen=first_seen,
                        events=events,
                    )
                finally:
                    self._progress = None
            await self._finish(session, ok, text)
            await send_result(ctx.services, init, ok, text)
        return ok, text

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
            self._progress = (init, pull, trio.current_time(), len(pull.have))
            aborted = await trio.to_thread.run_sync(session.aborted)
            if aborted is not None:
                return False, aborted
            while True:
                failure = await pull_chunks(ctx, init, session, pull, events)
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

    async def _chunk(self, ctx: HandlerContext, msg: Message, notice: Chunk | Abort) -> None:
        """Store a chunk that matches its hash (else have it asked for again), or an abort."""
        session = DstSession(state_root(ctx.services.home), notice.copy_id)
        async with self._writing() as open_:
            loaded = await trio.to_thread.run_sync(session.load) if open_ else None
            if loaded is None:
                return  # the copy ended (or never started here): a late duplicate
            init = loaded[0]
            check_peer(msg, init.src_node, init.copy_id)
            if isinstance(notice, Abort):
                await trio.to_thread.run_sync(session.abort, notice.text)
                self._notify(CopyAborted(notice.text))
                return
            if not chunk_is_intact(init.plan, notice.index, msg.data, notice.digest):
                ctx.report(
                    "warning",
                    f"warning: copy {init.copy_id}: chunk {notice.index} from {msg.from_node} "
                    "arrived damaged (length or SHA-256 wrong); asking for it again",
                )
                self._notify(ChunkRejected(notice.index))
                return
            try:
                await trio.to_thread.run_sync(
                    session.store_chunk, notice.index, notice.digest, msg.data
                )
            except FileNotFoundError:
                self._notify(ChunkRejected(notice.index))  # the folder was being swept
                return
            self._notify(ChunkStored(notice.index))
