"""ChildRunner: starts one incarnation of a child, reports its readiness and its exit, and
stops it within its shutdown grace."""

from __future__ import annotations

import logging
from typing import Any

import trio

from ._records import STOP, Aborted, Child, ControlEvent, Exited, Incarnation, Started, StartFailed
from .child_spec import BRUTAL_KILL
from .errors import ChildStartError, describe_failure
from .handle import ChildHandle, _current
from .registry import Registry
from .snapshot import ChildState

logger = logging.getLogger(__name__)


class _ReadyStatus(trio.TaskStatus[Any]):
    """The ``task_status`` a child receives: reports its readiness to the runner."""

    def __init__(
        self,
        runner: ChildRunner,
        incarnation: Incarnation,
        outer: trio.TaskStatus[Started | StartFailed],
    ) -> None:
        self._runner = runner
        self._incarnation = incarnation
        self._outer = outer
        self._called = False

    def started(self, value: Any = None) -> None:
        if self._called:
            raise RuntimeError("called 'started' twice on the same task status")
        self._called = True
        self._runner._ready(self._incarnation, value, self._outer)


class ChildRunner:
    """The children's side of one supervisor run.

    Each incarnation runs in its own task in ``nursery``, inside its own cancel scope (the
    soft stop). That task never lets an ``Exception`` escape: a failure before readiness
    is the result of :meth:`start`; an exit after it is posted to ``events`` for the
    supervisor's control loop (unless the supervisor asked for it).
    """

    def __init__(
        self,
        supervisor_path: str,
        registry: Registry,
        events: trio.MemorySendChannel[ControlEvent],
    ) -> None:
        self.supervisor_path = supervisor_path
        self.registry = registry
        self.nursery: trio.Nursery | None = None
        self._events = events
        self._stopping = False
        self._start_scopes: set[trio.CancelScope] = set()

    def request_stop(self) -> None:
        """Abandon starts in progress, refuse new ones, and tell the control loop to stop."""
        if self._stopping:
            return
        self._stopping = True
        for scope in self._start_scopes:
            scope.cancel()
        self._events.send_nowait(STOP)

    def close(self) -> None:
        """No more events: the run is over."""
        self._events.close()

    async def start(self, child: Child, *, restarting: bool) -> Started | StartFailed:
        """Start one incarnation of ``child``; return once it is ready or has failed.

        Raises ``Aborted`` if the supervisor is stopping (the child is then not running).
        On cancellation the child is not running either.
        """
        if self._stopping or self.nursery is None:
            raise Aborted
        handle = ChildHandle(
            id=child.spec.id,
            path=child.path,
            kind=child.spec.kind,
            registry=self.registry,
            now=trio.current_time(),
        )
        incarnation = Incarnation(child, handle)
        child.incarnation = incarnation
        child.state = ChildState.RESTARTING if restarting else ChildState.STARTING
        if restarting:
            child.restart_count += 1
            logger.info("supervisor %s restarting child %s", self.supervisor_path, child.path)
        result: Started | StartFailed | None = None
        try:
            with trio.CancelScope() as scope:
                self._start_scopes.add(scope)
                try:
                    result = await self.nursery.start(self._run, incarnation)
                finally:
                    self._start_scopes.discard(scope)
        finally:
            if not incarnation.ready and child.incarnation is incarnation:
                child.incarnation = None
                child.state = ChildState.RESTARTING if restarting else ChildState.STOPPED
        if incarnation.ready:
            return Started(handle.value)
        if result is None:
            raise Aborted
        assert isinstance(result, StartFailed)
        reason = describe_failure(result.reason)
        child.last_failure = (trio.current_time(), reason)
        logger.error(
            "supervisor %s: child %s failed to start: %s",
            self.supervisor_path,
            child.path,
            reason,
            exc_info=result.reason,
        )
        return result

    async def stop(self, child: Child) -> None:
        """Stop ``child`` if it runs: cancel it, wait up to its grace, then cancel its
        cleanup scopes and wait for it to finish. The child ends up STOPPED."""
        incarnation = child.incarnation
        if incarnation is None:
            return
        incarnation.stop_requested = True
        if not incarnation.exited.is_set():
            child.state = ChildState.STOPPING
            grace = child.spec.grace
            hard_deadline = trio.current_time() + grace
            incarnation.handle._begin_shutdown(hard_deadline)
            incarnation.scope.cancel()
            with trio.move_on_at(hard_deadline) as grace_scope:
                await incarnation.exited.wait()
            if grace_scope.cancelled_caught:
                # The grace ran out (its cleanup scopes expired at this same instant).
                if child.spec.shutdown is not BRUTAL_KILL:
                    logger.warning(
                        "supervisor %s: child %s did not stop within its shutdown grace of "
                        "%gs; its cleanup is cancelled",
                        self.supervisor_path,
                        child.path,
                        grace,
                    )
                incarnation.handle._hard_stop()
                await incarnation.exited.wait()
        if child.incarnation is incarnation:
            child.incarnation = None
        child.state = ChildState.STOPPED

    def hard_stop(self, children: list[Child]) -> None:
        """Cancel every start, child and cleanup scope at once, without waiting."""
        for scope in self._start_scopes:
            scope.cancel()
        for child in children:
            incarnation = child.incarnation
            if incarnation is not None:
                incarnation.stop_requested = True
                incarnation.scope.cancel()
                incarnation.handle._hard_stop()

    async def _run(
        self, incarnation: Incarnation, task_status: trio.TaskStatus[Started | StartFailed]
    ) -> None:
        """The task of one incarnation: runs the start function and reports how it ended."""
        _current.set(incarnation.handle)
        status = _ReadyStatus(self, incarnation, task_status)
        failure: Exception | None = None
        try:
            with incarnation.scope:
                await incarnation.child.spec.start(task_status=status)
        except Exception as exc:
            failure = exc
        finally:
            self._forget(incarnation)
        if not incarnation.ready:
            if failure is None:
                failure = ChildStartError(
                    incarnation.child.path,
                    "its start function returned without calling task_status.started(); "
                    "a child must call task_status.started() once it is ready",
                )
            task_status.started(StartFailed(failure))
            return
        self._exited(incarnation, failure)

    def _ready(
        self,
        incarnation: Incarnation,
        value: Any,
        outer: trio.TaskStatus[Started | StartFailed],
    ) -> None:
        child = incarnation.child
        inbox = value if isinstance(value, trio.MemorySendChannel) else None
        if inbox is not None:
            # Before started(): a path conflict is then a start failure, not a crash.
            self.registry.register(child.path, inbox)
            incarnation.registered = inbox
        outer.started(Started(value))
        if trio.lowlevel.current_task().parent_nursery is not self.nursery:
            return  # the start was cancelled meanwhile: the child is about to be cancelled
        now = trio.current_time()
        incarnation.ready = True
        incarnation.handle._ready(value, inbox, now)
        child.state = ChildState.RUNNING
        child.started_at = now

    def _forget(self, incarnation: Incarnation) -> None:
        inbox = incarnation.registered
        if inbox is not None:
            self.registry.unregister(incarnation.child.path, inbox)
            # The inbox dies with its process: senders blocked on it, or holding it,
            # get ClosedResourceError (NoProcess through the registry), not a silent hang.
            inbox.close()
        incarnation.exited.set()

    def _exited(self, incarnation: Incarnation, failure: Exception | None) -> None:
        child = incarnation.child
        if incarnation.stop_requested:
            if failure is not None:
                logger.warning(
                    "supervisor %s: child %s raised while stopping: %s",
                    self.supervisor_path,
                    child.path,
                    describe_failure(failure),
                    exc_info=failure,
                )
            return
        restart = child.spec.restart
        if failure is not None:
            child.last_failure = (trio.current_time(), describe_failure(failure))
            logger.error(
                "supervisor %s: child %s (%s) crashed: %s",
                self.supervisor_path,
                child.path,
                restart.value,
                describe_failure(failure),
                exc_info=failure,
            )
        else:
            logger.info(
                "supervisor %s: child %s (%s) exited normally",
                self.supervisor_path,
                child.path,
                restart.value,
            )
        restarts = restart.restarts_after(crashed=failure is not None)
        child.state = ChildState.RESTARTING if restarts else ChildState.STOPPED
        self._events.send_nowait(Exited(incarnation, failure))
