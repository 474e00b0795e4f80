"""The destination side of a file copy: REQCopyDst (the pull) and REQSUBCopyDst (chunks in).

REQCopyDst's handler runs for the whole copy. It asks the source for a window of missing
chunks, waits for news from the chunk handler (stored, damaged, aborted), asks for more,
and at the end joins, verifies and renames the file into place and sends the result to the
source. Its message stays unfinished in the node's inbox until then, so after a restart the
node runs it again and it continues from the verified chunks on disk.

REQSUBCopyDst's handler checks each chunk against its SHA-256, stores it (idempotently) and
tells the running pull, if there is one on this node. Without one (between a restart and
the pull's start) the chunk is still stored; the pull finds it on disk.

Both run in the copy's session (:mod:`.session`), a process of its own under the node's
``copies`` DynamicSupervisor (``node/copies/<copy id>``, :mod:`.session_supervisor`), which
owns the copy's state on this node: the handlers start it on demand, hand it their message
through its inbox and wait for its answer.
"""

from __future__ import annotations

from steward_otp.handlers.base import HandlerContext, HandlerError
from steward_otp.handlers.copy.protocol import Abort, Chunk, CopyInit, check_peer, parse_notice
from steward_otp.handlers.copy.session import ChunkRequest, PullRequest
from steward_otp.handlers.copy.session_supervisor import CopySessions
from steward_otp.message import Message


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
