"""The ``copies`` DynamicSupervisor of a node: one copy session per copy being received.

:class:`CopySessions` starts the session of a copy on demand (for its pull or for a chunk)
and hands it a handler's request, waiting for the answer; a request a session did not take
goes to the next session of the copy. A handler cancelled while its pull runs cancels the
pull. A session that pulls nothing and writes nothing for :data:`SESSION_IDLE` seconds is
stopped; the sessions' tree info gives the progress of each copy being received.
"""

from __future__ import annotations

from typing import Any, Final

import trio

from steward_otp.handlers.copy.session import CopySession, PullRequest, SessionRequest
from steward_otp.supervisors import ChildSpec, DynamicSupervisor, Restart

SESSION_IDLE: Final = 60.0
"""A copy session that pulls nothing and writes nothing is stopped after this many seconds."""


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

    async def ask(self, copy_id: str, request: SessionRequest) -> None:
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
