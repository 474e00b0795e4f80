"""The destination side of a file copy: REQCopyDst (the pull) and REQSUBCopyDst (chunks in).

REQCopyDst's handler runs for the whole copy. It asks the source for a window of missing
chunks, waits for news from the chunk handler (stored, damaged, aborted), asks for more,
and at the end joins, verifies and renames the file into place and sends the result to the
source. Its message stays unfinished in the node's inbox until then, so after a restart the
node runs it again and it continues from the verified chunks on disk.

REQSUBCopyDst's handler checks each chunk against its SHA-256, stores it (idempotently) and
tells the running pull, if there is one on this node. Without one (between a restart and
the pull's start) the chunk is still stored; the pull finds it on disk.

Both run in the copy's session, a process of its own under the node's ``copies``
DynamicSupervisor (``node/copies/<copy id>``), which owns the copy's state on this node:
the handlers start it on demand, hand it their message through its inbox and wait for its
answer.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, Final

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
from steward_otp.supervisors import ChildSpec, DynamicSupervisor, Restart, current_child

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


SESSION_IDLE: Final = 60.0
"""A copy session that pulls nothing and writes nothing is stopped after this many seconds."""


@attrs.define(eq=False, kw_only=True)
class _Request:
    """A handler's request to a copy session, answered by setting ``done``.

    ``retry``: the session stopped before it took the request; ask the next one.
    """

    ctx: HandlerContext
    done: trio.Event = attrs.field(factory=trio.Event)
    error: Exception | None = None
    retry: bool = False


@attrs.define(eq=False, kw_only=True)
class PullRequest(_Request):
    """REQCopyDst's request: run the pull; ``outcome`` is ``(ok, text)``, or None when a
    pull of this copy runs already (or was cancelled through ``scope``)."""

    init: CopyInit
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    outcome: tuple[bool, str] | None = None


@attrs.define(eq=False, kw_only=True)
class ChunkRequest(_Request):
    """REQSUBCopyDst's request: check and store a chunk, or record an abort."""

    msg: Message
    notice: Chunk | Abort


class CopySessions:
    """The ``copies`` DynamicSupervisor: one :class:`CopySession` per copy being received.

    A session is started on demand (by the pull or by a chunk) and owns the copy's state on
    this node: the channel from chunk arrivals to its running pull, and the chunk writes
    under way. It ends when its pull has ended, or after :data:`SESSION_IDLE` seconds
    without a pull or a write. One instance serves one node.
    """

    def __init__(self, *, idle_timeout: float = SESSION_IDLE) -> None:
        self.supervisor = DynamicSupervisor(
            "copies",
            ChildSpec("copy", self._run_session, restart=Restart.TEMPORARY, shutdown=10.0),
            intensity=10,
            period=10.0,
            idle_timeout=idle_timeout,
        )

    def child_spec(self) -> ChildSpec:
        """The spec that runs the ``copies`` supervisor in the node's tree."""
        return self.supervisor.child_spec()

    async def _run_session(
        self, copy_id: str, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED
    ) -> None:
        await CopySession(copy_id, self).run(task_status=task_status)

    async def ask(self, copy_id: str, request: _Request) -> None:
        """Hand ``request`` to the session of ``copy_id`` (started if there is none) and wait
        for its answer. Cancelled while a pull runs for it, the pull is cancelled too.
        """
        while True:
            request.retry = False
            inbox = self.supervisor.whereis(copy_id)
            if inbox is None:
                inbox = await self.supervisor.start_child(copy_id, copy_id)
            try:
                inbox.send_nowait(request)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                await trio.lowlevel.checkpoint()
                continue  # the session has just ended: the next one takes it
            try:
                await request.done.wait()
            finally:
                if not request.done.is_set() and isinstance(request, PullRequest):
                    # The handler is cancelled: so is its pull, as when it ran in the handler.
                    request.scope.cancel()
                    with trio.CancelScope(shield=True):
                        await request.done.wait()
            if not request.retry:
                return
            request.done = trio.Event()

    def _infos(self) -> dict[str, dict[str, Any]]:
        return {
            child.id: child.handle.snapshot_info()
            for child in self.supervisor.which_children()
            if child.handle is not None
        }

    def pulling(self) -> set[str]:
        """The copies whose pull runs on this node."""
        return {copy_id for copy_id, info in self._infos().items() if info.get("pulling")}

    def progress(self) -> dict[str, object]:
        """The copies being received, with how many chunks are verified."""
        return {
            copy_id: {key: info[key] for key in _PROGRESS_KEYS}
            for copy_id, info in self._infos().items()
            if "chunks" in info
        }


_PROGRESS_KEYS: Final = ("from", "chunks_verified", "chunks", "bytes_per_second")


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
        send, receive = trio.open_memory_channel[_Request](math.inf)
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
                await _send_result(ctx.services, init, *finished)
                return None
            try:
                destination = resolve_copy_path(init.dst_path, ctx.data_dir, "dstPath")
                first_seen = await trio.to_thread.run_sync(session.open, init, time.time())
            except (CopyArgsError, ProtocolError, OSError) as exc:
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
            await _send_result(ctx.services, init, ok, text)
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


async def _send_result(services: NodeServices, init: CopyInit, ok: bool, text: str) -> None:
    result = protocol_message(
        to_node=init.src_node,
        method=SUB_METHOD_SRC,
        ack_timeout=init.ack_timeout,
        retries=max(init.retries, protocol_retries(RESULT_SPAN, init.ack_timeout)),
        args=notice_args(Result(init.copy_id, ok, text)),
        msg_id=f"{services.node_name}:copy-{init.copy_id}-result",
    )
    await services.submit([result])


class CopyTarget:
    """The destination side's handlers: each hands its message to the copy's session
    (:class:`CopySession`, under the node's ``copies`` supervisor)."""

    def __init__(self, sessions: CopySessions | None = None) -> None:
        self.sessions = sessions if sessions is not None else CopySessions()

    def info(self) -> dict[str, object]:
        """The copies being received, with how many chunks are verified (tree info)."""
        return {"copies": self.sessions.progress()}

    async def copy_dst(self, ctx: HandlerContext, msg: Message) -> bytes | None:
        """Run the destination side of a copy until it ends (or its time is over).

        The copy's session runs it; this waits for it. Runs again after a restart and
        continues from the verified chunks on disk; run for a copy that already ended, it
        sends the same result again. Ends by sending the result to the source; a failed copy
        also raises HandlerError (to the central error log). Cancellation (the node stops)
        cancels the pull and leaves the chunks on disk for the next run.
        """
        init = CopyInit.from_bytes(msg.data)
        check_peer(msg, init.src_node, init.copy_id)
        request = PullRequest(ctx=ctx, init=init)
        await self.sessions.ask(init.copy_id, request)
        if request.error is not None:
            raise request.error
        if request.outcome is None:
            return None  # this copy runs already on this node, or had ended
        ok, text = request.outcome
        if not ok:
            raise HandlerError(f"copy {init.copy_id}: {text}")
        return None

    async def sub_dst(self, ctx: HandlerContext, msg: Message) -> bytes | None:
        """Store a chunk that matches its hash (else have it asked for again), or an abort.

        The copy's session does it. Chunks of a copy that ended (or never started here) are
        ignored: late duplicates.
        """
        notice = parse_notice(msg.method_args)
        if not isinstance(notice, Chunk | Abort):
            raise HandlerError(f"copy {notice.copy_id}: {msg.method_args[0]!r} is not for a target")
        request = ChunkRequest(ctx=ctx, msg=msg, notice=notice)
        await self.sessions.ask(notice.copy_id, request)
        if request.error is not None:
            raise request.error
        return None
