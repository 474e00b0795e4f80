"""The machinery Supervisor and DynamicSupervisor share: running, watching and stopping children.

How a supervisor runs (``SupervisorCore.run``):

* a *watcher* task sits in an ordinary (unshielded) nursery; when the supervisor is
  cancelled from outside, the watcher is cancelled and turns that into a stop request;
* everything else (the children's nursery and the control loop) runs inside a shielded
  scope, so an outside cancellation never reaches the children directly: the supervisor
  stops them itself, one at a time, in reverse start order, each within its grace. Under a
  parent supervisor that shielded scope is the parent's ``cleanup_scope()``, so the parent's
  hard stop still reaches the whole subtree;
* each child runs in its own task, inside its own cancel scope (the *soft stop*); the child
  task never lets an ``Exception`` escape: it reports its exit to the control loop through a
  channel, and the control loop decides (restart, remove, give up) one event at a time.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager, asynccontextmanager
from typing import Any, Final

import attrs
import trio

from .child_spec import BRUTAL_KILL, ChildKind, ChildSpec, Restart, validate_id
from .errors import (
    ChildStartError,
    NotRunning,
    SupervisorEscalation,
    UnknownChild,
    describe_failure,
)
from .handle import ChildHandle, _current, current_child_or_none
from .intensity import RestartIntensity
from .registry import Registry
from .snapshot import ChildCounts, ChildInfo, ChildState, FailureRecord, ProcessSnapshot

logger = logging.getLogger(__name__)


@attrs.define(eq=False)
class _Child:
    """A supervisor's bookkeeping for one child spec, across its incarnations."""

    spec: ChildSpec
    path: str
    state: ChildState = ChildState.STOPPED
    incarnation: _Incarnation | None = None
    restart_count: int = 0
    started_at: float | None = None
    last_failure: tuple[float, str] | None = None

    @property
    def last_failure_reason(self) -> str:
        return "" if self.last_failure is None else self.last_failure[1]


@attrs.define(eq=False)
class _Incarnation:
    """One run of a child's start function."""

    child: _Child
    handle: ChildHandle
    scope: trio.CancelScope = attrs.Factory(trio.CancelScope)
    exited: trio.Event = attrs.Factory(trio.Event)
    ready: bool = False
    stop_requested: bool = False
    registered: trio.MemorySendChannel[Any] | None = None

    @property
    def alive(self) -> bool:
        return self.ready and not self.exited.is_set()


@attrs.frozen
class _Started:
    value: Any


@attrs.frozen
class _StartFailed:
    reason: Exception


@attrs.frozen
class _Exited:
    incarnation: _Incarnation
    failure: Exception | None


class _StopSignal:
    pass


_STOP: Final = _StopSignal()

_Event = _Exited | _StopSignal


class _Aborted(Exception):
    """A start was abandoned because the supervisor is stopping."""


class _GiveUp(Exception):
    """The supervisor must give up because of ``child``."""

    def __init__(self, child: _Child, failure: Exception | None, reason: str) -> None:
        super().__init__(reason)
        self.child = child
        self.failure = failure
        self.reason = reason


class _ReadyStatus(trio.TaskStatus[Any]):
    """The ``task_status`` a child receives: reports readiness to its supervisor."""

    def __init__(
        self,
        core: SupervisorCore,
        incarnation: _Incarnation,
        outer: trio.TaskStatus[_Started | _StartFailed],
    ) -> None:
        self._core = core
        self._incarnation = incarnation
        self._outer = outer
        self._called = False

    def started(self, value: Any = None) -> None:
        if self._called:
            raise RuntimeError("called 'started' twice on the same task status")
        self._called = True
        self._core._child_ready(self._incarnation, value, self._outer)


class SupervisorCore:
    """What Supervisor and DynamicSupervisor have in common; not used directly."""

    def __init__(self, id: str, *, intensity: int, period: float) -> None:
        self._id = validate_id("supervisor id", id)
        self._intensity = RestartIntensity(intensity, period)
        self._path = id
        self._registry: Registry | None = None
        self._parent: ChildHandle | None = None
        self._children: list[_Child] = []
        self._state = ChildState.STOPPED
        self._active = False
        self._accepting = False
        self._stop_requested = False
        self._started_at: float | None = None
        self._failure: tuple[float, str] | None = None
        self._start_scopes: set[trio.CancelScope] = set()
        self._nursery: trio.Nursery | None = None
        self._lock = trio.Lock()
        self._events_in: trio.MemorySendChannel[_Event] | None = None
        self._events_out: trio.MemoryReceiveChannel[_Event] | None = None

    # ----------------------------------------------------------------- public surface

    @property
    def id(self) -> str:
        """The supervisor's id (the last component of its path)."""
        return self._id

    @property
    def path(self) -> str:
        """Its path: its id at the root, ``parent path/id`` under a parent supervisor."""
        return self._path

    @property
    def intensity(self) -> int:
        """At most this many restarts within :attr:`period` seconds."""
        return self._intensity.intensity

    @property
    def period(self) -> float:
        """The window, in seconds, of the restart intensity."""
        return self._intensity.period

    @property
    def strategy_name(self) -> str:
        """The strategy as shown in snapshots."""
        raise NotImplementedError

    @property
    def registry(self) -> Registry | None:
        """The registry of the tree it runs in (``None`` before its first run)."""
        return self._registry

    @property
    def running(self) -> bool:
        """Whether it has started all its children and is not stopping."""
        return self._accepting

    @property
    def state(self) -> ChildState:
        """The supervisor's own state."""
        return self._state

    def child_spec(
        self, *, restart: Restart = Restart.PERMANENT, shutdown: float = math.inf
    ) -> ChildSpec:
        """A spec that runs this supervisor as a child (kind ``supervisor``) of another."""
        return ChildSpec(
            self._id, self.run, restart=restart, kind=ChildKind.SUPERVISOR, shutdown=shutdown
        )

    async def run(
        self,
        *,
        registry: Registry | None = None,
        task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Start the children in order, supervise them until stopped, then stop them.

        Calls ``task_status.started(self)`` once every initial child is ready, so it can be
        a child of another supervisor or be started with ``nursery.start``. Under a parent
        supervisor it takes its path and registry from the parent; at the root its path is
        its id and it uses ``registry`` (a new private one if ``None``).

        Returns normally after :meth:`stop`. On cancellation it stops its children in
        reverse start order, each within its shutdown grace, then lets ``trio.Cancelled``
        propagate (a parent's hard stop cuts this short and cancels everything below).

        Raises:
            SupervisorEscalation: when it gives up (restart intensity exceeded, or a child
                failed to start), after all its children have stopped.
            RuntimeError: if this object is already running.
            ValueError: if ``registry`` differs from the parent's.
        """
        parent = self._begin_run(registry)
        escalation: SupervisorEscalation | None = None
        body: AbstractContextManager[object] = (
            trio.CancelScope(shield=True) if parent is None else parent.cleanup_scope()
        )
        try:
            async with trio.open_nursery() as guard:
                guard.start_soon(self._stop_when_cancelled)
                with body:
                    escalation = await self._supervise(task_status)
                guard.cancel_scope.cancel()
        finally:
            self._end_run(parent, escalation)
        if escalation is not None:
            raise escalation
        # Re-raise the cancellation that asked us to stop, if that is why we stopped.
        await trio.lowlevel.checkpoint()

    def stop(self) -> None:
        """Ask the supervisor to stop: its children are stopped in reverse start order, each
        within its grace, and :meth:`run` returns normally. Does nothing when not running."""
        if self._active:
            self._request_stop()

    def which_children(self) -> list[ChildInfo]:
        """Its children in start order: id, running handle (or ``None``), kind, restart type
        and state. Synchronous; reads bookkeeping only."""
        return [
            ChildInfo(
                id=child.spec.id,
                handle=self._live_handle(child),
                kind=child.spec.kind,
                restart=child.spec.restart,
                state=child.state,
            )
            for child in self._children
        ]

    def count_children(self) -> ChildCounts:
        """How many children it has, how many are running, how many of each kind."""
        supervisors = sum(1 for c in self._children if c.spec.kind is ChildKind.SUPERVISOR)
        return ChildCounts(
            specs=len(self._children),
            active=sum(1 for c in self._children if self._live_handle(c) is not None),
            supervisors=supervisors,
            workers=len(self._children) - supervisors,
        )

    def snapshot(self) -> ProcessSnapshot:
        """The whole tree below this supervisor, as of now.

        Synchronous and cheap: it reads bookkeeping and the children's live info, never
        waits for a child. This supervisor's own entry has ``restart=None`` and
        ``restart_count=0``; seen from a parent, those come from the parent's entry.
        """
        now = trio.current_time()
        return ProcessSnapshot(
            path=self._path,
            id=self._id,
            kind=ChildKind.SUPERVISOR.value,
            strategy=self.strategy_name,
            restart=None,
            state=self._state.value,
            restart_count=0,
            uptime=None if self._started_at is None else now - self._started_at,
            last_failure=_failure_record(self._failure, now),
            info={},
            children=self.children_snapshot(now),
        )

    def children_snapshot(self, now: float) -> tuple[ProcessSnapshot, ...]:
        """Snapshot entries of its children, in start order (used by the parent's snapshot)."""
        return tuple(self._child_snapshot(child, now) for child in self._children)

    # ----------------------------------------------------------------- hooks

    async def _start_initial_children(self) -> None:
        """Start the children the supervisor begins with; raise _GiveUp on failure."""

    async def _handle_exit(self, incarnation: _Incarnation, failure: Exception | None) -> None:
        """React to a child that exited on its own (called with the lock held)."""
        raise NotImplementedError

    def _after_start(self, nursery: trio.Nursery) -> None:
        """Start the supervisor's own helper tasks, once it is running."""

    def _reset(self) -> None:
        """Prepare the bookkeeping for a new run."""

    # ----------------------------------------------------------------- run skeleton

    def _begin_run(self, registry: Registry | None) -> ChildHandle | None:
        if self._active:
            raise RuntimeError(
                f"supervisor {self._path!r} is already running; one Supervisor object "
                "runs in one place at a time"
            )
        parent = current_child_or_none()
        if parent is not None and parent._subtree is not None:
            parent = None  # a supervisor running inside a supervised supervisor: standalone
        if parent is not None:
            if registry is not None and registry is not parent.registry:
                raise ValueError(
                    f"supervisor {self._id!r} runs under {parent.path!r} and shares its "
                    "registry; do not pass another one"
                )
            parent._subtree = self
            self._path = parent.path
            self._registry = parent.registry
        else:
            self._path = self._id
            self._registry = registry if registry is not None else Registry()
        self._parent = parent
        self._active = True
        self._accepting = False
        self._stop_requested = False
        self._state = ChildState.STARTING
        self._started_at = None
        self._failure = None
        self._intensity.reset()
        self._lock = trio.Lock()
        self._events_in, self._events_out = trio.open_memory_channel[_Event](math.inf)
        self._reset()
        return parent

    def _end_run(self, parent: ChildHandle | None, escalation: SupervisorEscalation | None) -> None:
        self._active = False
        self._accepting = False
        self._nursery = None
        self._started_at = None
        self._state = ChildState.FAILED if escalation is not None else ChildState.STOPPED
        if parent is not None:
            parent._subtree = None
        if self._events_in is not None:
            self._events_in.close()

    async def _stop_when_cancelled(self) -> None:
        try:
            await trio.sleep_forever()
        finally:
            self._request_stop()

    def _request_stop(self) -> None:
        if self._stop_requested or not self._active:
            return
        self._stop_requested = True
        self._accepting = False
        for scope in self._start_scopes:
            scope.cancel()
        if self._events_in is not None:
            self._events_in.send_nowait(_STOP)

    async def _supervise(self, task_status: trio.TaskStatus[Any]) -> SupervisorEscalation | None:
        escalation: SupervisorEscalation | None = None
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                await self._start_initial_children()
                if not self._stop_requested:
                    self._state = ChildState.RUNNING
                    self._accepting = True
                    self._started_at = trio.current_time()
                    task_status.started(self)
                    self._after_start(nursery)
                    await self._serve()
            except _GiveUp as give_up:
                escalation = self._escalation(give_up)
            except _Aborted:
                pass
            finally:
                await self._stop_all_children()
            nursery.cancel_scope.cancel()  # the supervisor's own helper tasks
        return escalation

    async def _serve(self) -> None:
        assert self._events_out is not None
        async for event in self._events_out:
            if isinstance(event, _StopSignal):
                return
            async with self._lock:
                if self._stop_requested:
                    return
                await self._handle_exit(event.incarnation, event.failure)

    async def _stop_all_children(self) -> None:
        self._accepting = False
        if self._state is not ChildState.FAILED:
            self._state = ChildState.STOPPING
        for scope in self._start_scopes:
            scope.cancel()
        try:
            async with self._lock:
                for child in reversed(self._children):
                    await self._stop_child(child)
                for child in self._children:
                    if child.state is not ChildState.FAILED:
                        child.state = ChildState.STOPPED
        except BaseException:
            # Our own grace ran out (the parent's hard stop): no more waiting, cut everything.
            self._hard_stop_all()
            raise

    def _hard_stop_all(self) -> None:
        for scope in self._start_scopes:
            scope.cancel()
        for child in self._children:
            incarnation = child.incarnation
            if incarnation is not None:
                incarnation.stop_requested = True
                incarnation.scope.cancel()
                incarnation.handle._hard_stop()

    def _escalation(self, give_up: _GiveUp) -> SupervisorEscalation:
        give_up.child.state = ChildState.FAILED
        self._state = ChildState.FAILED
        escalation = SupervisorEscalation(self._path, give_up.child.path, give_up.reason)
        escalation.__cause__ = give_up.failure
        self._failure = (trio.current_time(), f"{give_up.child.path} {give_up.reason}")
        logger.error(
            "supervisor %s giving up: child %s %s; stopping its other children",
            self._path,
            give_up.child.path,
            give_up.reason,
        )
        return escalation

    # ----------------------------------------------------------------- one child

    def _child_path(self, child_id: str) -> str:
        return f"{self._path}/{child_id}"

    def _require_accepting(self) -> None:
        if not self._accepting:
            raise NotRunning(self._path)

    @asynccontextmanager
    async def _exclusive(self) -> AsyncIterator[None]:
        """Hold the lock for an operation requested from outside; the supervisor must be up."""
        self._require_accepting()
        async with self._lock:
            self._require_accepting()
            try:
                yield
            except _Aborted:
                raise NotRunning(self._path, "stopped while the operation was running") from None

    def _find(self, child_id: str) -> _Child:
        for child in self._children:
            if child.spec.id == child_id:
                return child
        raise UnknownChild(self._path, child_id)

    def _check_intensity(self, child: _Child, failure: Exception | None) -> None:
        """Count one restart of ``child``; raise _GiveUp if that is one too many."""
        if not self._intensity.record(trio.current_time()):
            if failure is None:
                what = "exited"
            elif isinstance(failure, SupervisorEscalation):
                what = "gave up"  # the details are further down the chain
            else:
                what = f"crashed ({describe_failure(failure)})"
            raise _GiveUp(
                child,
                failure,
                f"{what}; more than {self.intensity} restarts in {self.period:g}s",
            )

    async def _start(self, child: _Child, *, restarting: bool) -> _Started | _StartFailed:
        """Start one incarnation of ``child`` and wait until it is ready or has failed.

        Raises _Aborted if the supervisor is stopping (the child is then not running).
        """
        if self._stop_requested or self._nursery is None:
            raise _Aborted
        assert self._registry is not None
        now = trio.current_time()
        handle = ChildHandle(
            id=child.spec.id,
            path=child.path,
            kind=child.spec.kind,
            registry=self._registry,
            now=now,
        )
        incarnation = _Incarnation(child, handle)
        child.incarnation = incarnation
        child.state = ChildState.RESTARTING if restarting else ChildState.STARTING
        if restarting:
            child.restart_count += 1
            logger.info("supervisor %s restarting child %s", self._path, child.path)
        result: _Started | _StartFailed | None = None
        try:
            with trio.CancelScope() as scope:
                self._start_scopes.add(scope)
                try:
                    result = await self._nursery.start(self._run_child, incarnation)
                finally:
                    self._start_scopes.discard(scope)
        finally:
            if not incarnation.ready and child.incarnation is incarnation:
                child.incarnation = None
                child.state = ChildState.RESTARTING if restarting else ChildState.STOPPED
        if incarnation.ready:
            return _Started(handle.value)
        if result is None:
            raise _Aborted
        assert isinstance(result, _StartFailed)
        child.last_failure = (trio.current_time(), describe_failure(result.reason))
        logger.error(
            "supervisor %s: child %s failed to start: %s",
            self._path,
            child.path,
            describe_failure(result.reason),
            exc_info=result.reason,
        )
        return result

    async def _run_child(
        self, incarnation: _Incarnation, task_status: trio.TaskStatus[_Started | _StartFailed]
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
            task_status.started(_StartFailed(failure))
            return
        self._child_exited(incarnation, failure)

    def _child_ready(
        self,
        incarnation: _Incarnation,
        value: Any,
        outer: trio.TaskStatus[_Started | _StartFailed],
    ) -> None:
        assert self._registry is not None
        child = incarnation.child
        inbox = value if isinstance(value, trio.MemorySendChannel) else None
        if inbox is not None:
            # Before started(): a path conflict is then a start failure, not a crash.
            self._registry.register(child.path, inbox)
            incarnation.registered = inbox
        outer.started(_Started(value))
        if trio.lowlevel.current_task().parent_nursery is not self._nursery:
            return  # the start was cancelled meanwhile: the child is about to be cancelled
        now = trio.current_time()
        incarnation.ready = True
        incarnation.handle._ready(value, inbox, now)
        child.state = ChildState.RUNNING
        child.started_at = now

    def _forget(self, incarnation: _Incarnation) -> None:
        inbox = incarnation.registered
        if inbox is not None:
            if self._registry is not None:
                self._registry.unregister(incarnation.child.path, inbox)
            # The inbox dies with its process: senders blocked on it, or holding it,
            # get ClosedResourceError (NoProcess through the registry), not a silent hang.
            inbox.close()
        incarnation.exited.set()

    def _child_exited(self, incarnation: _Incarnation, failure: Exception | None) -> None:
        child = incarnation.child
        if incarnation.stop_requested:
            if failure is not None:
                logger.warning(
                    "supervisor %s: child %s raised while stopping: %s",
                    self._path,
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
                self._path,
                child.path,
                restart.value,
                describe_failure(failure),
                exc_info=failure,
            )
        else:
            logger.info(
                "supervisor %s: child %s (%s) exited normally",
                self._path,
                child.path,
                restart.value,
            )
        restarts = restart.restarts_after(crashed=failure is not None)
        child.state = ChildState.RESTARTING if restarts else ChildState.STOPPED
        assert self._events_in is not None
        self._events_in.send_nowait(_Exited(incarnation, failure))

    async def _stop_child(self, child: _Child) -> None:
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
                        self._path,
                        child.path,
                        grace,
                    )
                incarnation.handle._hard_stop()
                await incarnation.exited.wait()
        if child.incarnation is incarnation:
            child.incarnation = None
        child.state = ChildState.STOPPED

    def _live_handle(self, child: _Child) -> ChildHandle | None:
        incarnation = child.incarnation
        if incarnation is None or not incarnation.alive:
            return None
        return incarnation.handle

    def _child_snapshot(self, child: _Child, now: float) -> ProcessSnapshot:
        handle = self._live_handle(child)
        strategy: str | None = None
        children: tuple[ProcessSnapshot, ...] = ()
        if handle is not None and handle._subtree is not None:
            strategy = handle._subtree.strategy_name
            children = handle._subtree.children_snapshot(now)
        running = handle is not None and child.started_at is not None
        return ProcessSnapshot(
            path=child.path,
            id=child.spec.id,
            kind=child.spec.kind.value,
            strategy=strategy,
            restart=child.spec.restart.value,
            state=child.state.value,
            restart_count=child.restart_count,
            uptime=now - child.started_at if running and child.started_at is not None else None,
            last_failure=_failure_record(child.last_failure, now),
            info={} if handle is None else handle.snapshot_info(),
            children=children,
        )


def _failure_record(failure: tuple[float, str] | None, now: float) -> FailureRecord | None:
    if failure is None:
        return None
    at, reason = failure
    return FailureRecord(at=at, seconds_ago=now - at, reason=reason)
