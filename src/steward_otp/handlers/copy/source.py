"""The source side of a file copy: REQCopySrc (start) and REQSUBCopySrc (serve, finish).

The source never pushes: it hashes the file once, records the copy under
``<home>/var/copy/src-<id>.json`` and then only answers the destination, one ``want`` at a
time, reading exactly the chunks asked for (memory: one chunk per want being served). A
change of the file's size or modification time, noticed on any read, ends the copy with an
error; so does the destination's failure or the copy's time running out.

Progress: at most every :data:`PROGRESS_INTERVAL` seconds while it serves a copy, the source
tells the requester how far it is (``info: copy <id>: 40/100 chunks sent (40 %), 1.2 MB/s``,
in ``<fileName>.copyreply``), and the REQSUBCopySrc subscriber's tree info lists the copies
being served. These counts live in memory (after a restart they count again from zero); the
copy itself does not depend on them.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Final

import attrs
import trio

from steward_otp.handlers.base import HandlerContext, HandlerError, NodeServices
from steward_otp.handlers.copy.arguments import CopyArgsError, parse_copy_args, resolve_copy_path
from steward_otp.handlers.copy.files import (
    SourceChanged,
    SourceRecord,
    describe,
    expired_sources,
    hash_source,
    load_source,
    read_chunk,
    remove_source,
    save_source,
    state_root,
)
from steward_otp.handlers.copy.plan import chunk_digest
from steward_otp.handlers.copy.protocol import (
    COPY_METHOD_DST,
    DEFAULT_ACK_TIMEOUT,
    DRIVER_GRACE,
    SUB_METHOD_DST,
    Abort,
    Chunk,
    CopyInit,
    Result,
    Want,
    check_peer,
    copy_id_for,
    copy_reply,
    driver_method_timeout,
    notice_args,
    parse_notice,
    protocol_message,
    protocol_retries,
)
from steward_otp.handlers.paths import UnsafePath, refuse_own_folder
from steward_otp.message import Message, wire_errors

log = logging.getLogger(__name__)

PROGRESS_INTERVAL: Final = 10.0
"""Seconds between two progress replies of one copy."""


@attrs.define
class SourceProgress:
    """What the source has sent of one copy since it (or this node) started serving it."""

    chunks: int
    started: float
    sent: set[int] = attrs.field(factory=set)
    bytes_sent: int = 0
    reported: float = 0.0

    def rate(self, now: float) -> float:
        """Bytes per second sent so far."""
        elapsed = now - self.started
        return self.bytes_sent / elapsed if elapsed > 0 else 0.0

    def as_info(self, now: float) -> dict[str, object]:
        """The tree-info form."""
        return {
            "chunks_sent": len(self.sent),
            "chunks": self.chunks,
            "bytes_per_second": round(self.rate(now)),
        }


def progress_text(copy_id: str, progress: SourceProgress, now: float) -> str:
    """The progress line a copy's requester gets."""
    done = len(progress.sent)
    percent = 100 * done // max(progress.chunks, 1)
    return (
        f"info: copy {copy_id}: {done}/{progress.chunks} chunks sent ({percent} %), "
        f"{progress.rate(now) / 1e6:.2f} MB/s\n"
    )


def started_text(init: CopyInit) -> str:
    """The first line a copy's requester gets."""
    return (
        f"info: copy {init.copy_id}: started: {init.src_node}:{init.src_path} -> "
        f"{init.dst_node}:{init.dst_path}, {init.size} bytes in {init.plan.count} chunks of "
        f"{init.chunk_size} bytes, sha256 {init.sha256}\n"
    )


async def _reply(
    services: NodeServices, request: Message, copy_id: str, text: str, *, error: bool, tag: str
) -> None:
    reply = copy_reply(request, services.node_name, copy_id, text, error=error, tag=tag)
    if reply is None:
        return
    problems = wire_errors(reply)
    if problems:  # the request alone fills a message, or names a node that cannot be answered
        log.error("%s: copy %s: reply not sent: %s", request.method, copy_id, problems[0])
        return
    await services.submit([reply])


class CopySource:
    """The source side's handlers. A copy's state is its record file; only the progress
    counts (see the module docstring) are kept in memory."""

    def __init__(self) -> None:
        self._progress: dict[str, SourceProgress] = {}

    def info(self) -> dict[str, object]:
        """The copies being served, with their progress (the subscriber's tree info)."""
        now = trio.current_time()
        return {"copies": {c: p.as_info(now) for c, p in self._progress.items()}}

    async def copy_src(self, ctx: HandlerContext, msg: Message) -> bytes | None:
        """Start a copy: check the arguments, hash the file, send REQCopyDst. Never blocks long.

        Errors (bad arguments, unreadable file) go to ``<fileName>.copyerror`` and the
        central error log. Run again for the same message (after a crash), it continues the
        same copy instead of starting another.
        """
        root = state_root(ctx.services.home)
        await self._expire(ctx.services, root)
        copy_id = copy_id_for(msg.id)
        try:
            request = parse_copy_args(msg.method_args, method_seconds=ctx.seconds_left)
            source = resolve_copy_path(request.src_path, ctx.data_dir, "methodArgs[0] (srcPath)")
            resolve_copy_path(request.dst_path, Path("/"), "methodArgs[2] (dstPath)")
            # Never the node's configuration, keys, store or sockets.
            refuse_own_folder(
                source,
                data_dir=ctx.data_dir,
                home=ctx.services.home,
                field="methodArgs[0] (srcPath)",
                value=request.src_path,
            )
        except (CopyArgsError, UnsafePath) as exc:
            await self._request_failed(ctx, msg, copy_id, str(exc))
            return None
        record = await trio.to_thread.run_sync(load_source, root, copy_id)
        if record is None:
            try:
                found = await trio.to_thread.run_sync(hash_source, source)
            except (OSError, SourceChanged) as exc:
                text = f"cannot read {source}: {describe(exc)}"
                await self._request_failed(ctx, msg, copy_id, text)
                return None
            ack = msg.ack_timeout if msg.ack_timeout >= 1 else DEFAULT_ACK_TIMEOUT
            init = CopyInit(
                copy_id=copy_id,
                src_node=ctx.node_name,
                dst_node=request.dst_node,
                src_path=str(source),
                dst_path=request.dst_path,
                size=found.size,
                mtime_ns=found.mtime_ns,
                chunk_size=request.chunk_size,
                sha256=found.sha256,
                file_mode=found.mode,
                folder_permission=request.folder_permission,
                max_time=request.max_time,
                ack_timeout=ack,
                retries=protocol_retries(request.max_time, ack),
            )
            expires = time.time() + init.max_time + 2 * DRIVER_GRACE if init.max_time else None
            record = SourceRecord(init=init, request=msg, expires_at=expires)
            await trio.to_thread.run_sync(save_source, root, record)
        init = record.init
        start = protocol_message(
            to_node=init.dst_node,
            method=COPY_METHOD_DST,
            ack_timeout=init.ack_timeout,
            retries=init.retries,
            data=init.to_bytes(),
            msg_id=f"{ctx.node_name}:copy-{copy_id}-init",
            method_timeout=driver_method_timeout(init.max_time),
        )
        await ctx.services.submit([start])
        await _reply(ctx.services, msg, copy_id, started_text(init), error=False, tag="started")
        return None

    async def sub_src(self, ctx: HandlerContext, msg: Message) -> bytes | None:
        """Serve the destination: send the chunks it wants, or pass its result on.

        A ``want`` for a copy this node does not know (finished, expired) is answered with
        ``abort``; a duplicate ``result`` is ignored.
        """
        notice = parse_notice(msg.method_args)
        root = state_root(ctx.services.home)
        record = await trio.to_thread.run_sync(load_source, root, notice.copy_id)
        if isinstance(notice, Result):
            if record is not None:
                check_peer(msg, record.init.dst_node, notice.copy_id)
                await self._done(ctx.services, root, record, notice.ok, notice.text)
            return None
        if not isinstance(notice, Want):
            raise HandlerError(f"copy {notice.copy_id}: {msg.method_args[0]!r} is not for a source")
        if record is None:
            await ctx.services.submit([_unknown_copy(msg, notice.copy_id, ctx.node_name)])
            return None
        init = record.init
        check_peer(msg, init.dst_node, init.copy_id)
        if record.expires_at is not None and record.expires_at < time.time():
            await self._give_up(ctx.services, root, record, "the copy's time is over")
            return None
        for index in notice.indices:
            try:
                data = await trio.to_thread.run_sync(read_chunk, Path(init.src_path), init, index)
            except IndexError as exc:
                raise HandlerError(f"copy {init.copy_id}: {exc}") from None
            except (OSError, SourceChanged) as exc:
                await self._give_up(ctx.services, root, record, describe(exc))
                return None
            chunk = protocol_message(
                to_node=init.dst_node,
                method=SUB_METHOD_DST,
                ack_timeout=init.ack_timeout,
                retries=init.retries,
                args=notice_args(Chunk(init.copy_id, index, chunk_digest(data))),
                data=data,
            )
            await ctx.services.submit([chunk])
            self._sent(init, index, len(data))
        await self._report_progress(ctx.services, record)
        return None

    def _sent(self, init: CopyInit, index: int, size: int) -> None:
        progress = self._progress.get(init.copy_id)
        if progress is None:
            progress = SourceProgress(init.plan.count, trio.current_time())
            progress.reported = progress.started  # the first report after one interval
            self._progress[init.copy_id] = progress
        if index not in progress.sent:
            progress.sent.add(index)
            progress.bytes_sent += size

    async def _report_progress(self, services: NodeServices, record: SourceRecord) -> None:
        """Tell the requester how far the copy is, at most every PROGRESS_INTERVAL s."""
        copy_id = record.init.copy_id
        progress = self._progress.get(copy_id)
        now = trio.current_time()
        if progress is None or now - progress.reported < PROGRESS_INTERVAL:
            return
        progress.reported = now
        text = progress_text(copy_id, progress, now)
        tag = f"progress-{len(progress.sent)}"  # one reply per point, however often it runs
        await _reply(services, record.request, copy_id, text, error=False, tag=tag)

    async def _give_up(
        self, services: NodeServices, root: Path, record: SourceRecord, why: str
    ) -> None:
        init = record.init
        services.report("error", f"error: copy {init.copy_id}: {why}")
        abort = protocol_message(
            to_node=init.dst_node,
            method=SUB_METHOD_DST,
            ack_timeout=init.ack_timeout,
            retries=init.retries,
            args=notice_args(Abort(init.copy_id, why)),
            msg_id=f"{services.node_name}:copy-{init.copy_id}-abort",
        )
        await services.submit([abort])
        await self._done(services, root, record, False, why)

    async def _done(
        self, services: NodeServices, root: Path, record: SourceRecord, ok: bool, text: str
    ) -> None:
        """Tell the requester how the copy ended and forget it (once, whoever comes first)."""
        init = record.init
        self._progress.pop(init.copy_id, None)
        if not await trio.to_thread.run_sync(remove_source, root, init.copy_id):
            return
        if ok:
            line = f"copyDstDone,{init.src_path},{text}\n"
            await _reply(services, record.request, init.copy_id, line, error=False, tag="done")
        else:
            line = f"error: copy {init.copy_id}: {text}\n"
            await _reply(services, record.request, init.copy_id, line, error=True, tag="failed")

    async def _expire(self, services: NodeServices, root: Path) -> None:
        """End the copies whose time is over without a result from their destination."""
        for record in await trio.to_thread.run_sync(expired_sources, root, time.time()):
            init = record.init
            why = f"no result from {init.dst_node} within maxTotalCopyTime={init.max_time}s"
            services.report("error", f"error: copy {init.copy_id}: {why}")
            await self._done(services, root, record, False, why)

    async def _request_failed(
        self, ctx: HandlerContext, msg: Message, copy_id: str, text: str
    ) -> None:
        ctx.report("error", f"error: {msg.method}: {text}")
        await _reply(ctx.services, msg, copy_id, f"error: {text}\n", error=True, tag="failed")


def _unknown_copy(msg: Message, copy_id: str, node: str) -> Message:
    text = f"copy {copy_id} is not known on {node} (finished, expired, or never started)"
    return protocol_message(
        to_node=msg.from_node,
        method=SUB_METHOD_DST,
        ack_timeout=msg.ack_timeout,
        retries=msg.retries,
        args=notice_args(Abort(copy_id, text)),
    )
