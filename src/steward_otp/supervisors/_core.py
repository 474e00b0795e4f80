"""SupervisorCore: the run skeleton and inspection that Supervisor and DynamicSupervisor share.

How a supervisor runs (:meth:`SupervisorCore.run`):

* a *watcher* task sits in an ordinary (unshielded) nursery; when the supervisor is
  cancelled from outside, the watcher is cancelled and turns that into a stop request;
* everything else (the children's nursery and the control loop) runs inside a shielded
  scope, so an outside cancellation never reaches the children directly: the supervisor
  stops them itself, one at a time, in reverse start order, each within its grace. Under a
  parent supervisor that shielded scope is the parent's ``cleanup_scope()``, so the parent's
  hard stop still reaches the whole subtree;
* the children run and report their exits through a ``ChildRunner``; the control loop
  decides (restart, remove, give up) one event at a time, holding the lock that also
  serialises the operations requested from outside (``start_child``...).
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager, asynccontextmanager
from typing import Any

import trio

from ._records import (
    Aborted,
    Child,
    ControlEvent,
    GiveUp,
    Incarnation,
    Started,
    StartFailed,
    StopSignal,
    failure_record,
)
from ._runner import ChildRunner
from .child_spec import ChildKind, ChildSpec, Restart, validate_id
from .errors import NotRunning, SupervisorEscalation, UnknownChild, describe_failure
from .handle import ChildHandle, ChildInfo, current_child_or_none
from .intensity import RestartIntensity
from .registry import Registry
from .snapshot import ChildCounts, ChildState, ProcessSnapshot

logger = logging.getLogger(__name__)


class SupervisorCore:
    """What Supervisor and DynamicSupervisor have in common; not used directly."""

    def __init__(self, id: str, *, intensity: int, period: float) -> None:
        self._id = validate_id("supervisor id", id)
        self._intensity = RestartIntensity(intensity, period)
        self._path = id
        self._registry: Registry | None = None
        self._parent: ChildHandle | None = None
        self._children: list[Child] = []
        self._state = ChildState.STOPPED
        self._active = False
        self._accepting = False
        self._stop_requested = False
        self._started_at: float | None = None
        self._failure: tuple[float, str] | None = None
        self._runner: ChildRunner | None = None
        self._events: trio.MemoryReceiveChannel[ControlEvent] | None = None
        self._lock = trio.Lock()

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
                handle=child.live_handle,
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
            active=sum(1 for c in self._children if c.live_handle is not None),
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
            last_failure=failure_record(self._failure, now),
            info={},
            children=self.children_snapshot(now),
        )

    def children_snapshot(self, now: float) -> tuple[ProcessSnapshot, ...]:
        """Snapshot entries of its children, in start order (used by the parent's snapshot)."""
        return tuple(child.snapshot(now) for child in self._children)

    # ----------------------------------------------------------------- hooks

    async def _start_initial_children(self) -> None:
        """Start the children the supervisor begins with; raise GiveUp on failure."""

    async def _handle_exit(self, incarnation: Incarnation, failure: Exception | None) -> None:
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
            parent = None  # this child already hosts a supervisor: run as a separate root
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
        events_in, self._events = trio.open_memory_channel[ControlEvent](math.inf)
        self._runner = ChildRunner(self._path, self._registry, events_in)
        self._parent = parent
        self._active = True
        self._accepting = False
        self._stop_requested = False
        self._state = ChildState.STARTING
        self._started_at = None
        self._failure = None
        self._intensity.reset()
        self._lock = trio.Lock()
        self._reset()
        return parent

    def _end_run(self, parent: ChildHandle | None, escalation: SupervisorEscalation | None) -> None:
        self._active = False
        self._accepting = False
        self._started_at = None
        self._state = ChildState.FAILED if escalation is not None else ChildState.STOPPED
        if parent is not None:
            parent._subtree = None
        if self._runner is not None:
            self._runner.close()

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
        if self._runner is not None:
            self._runner.request_stop()

    async def _supervise(self, task_status: trio.TaskStatus[Any]) -> SupervisorEscalation | None:
        assert self._runner is not None
        escalation: SupervisorEscalation | None = None
        async with trio.open_nursery() as nursery:
            self._runner.nursery = nursery
            try:
                await self._start_initial_children()
                if not self._stop_requested:
                    self._state = ChildState.RUNNING
                    self._accepting = True
                    self._started_at = trio.current_time()
                    task_status.started(self)
                    self._after_start(nursery)
                    await self._serve()
            except GiveUp as give_up:
                escalation = self._escalation(give_up)
            except Aborted:
                pass
            finally:
                await self._stop_all_children()
            nursery.cancel_scope.cancel()  # the supervisor's own helper tasks
        return escalation

    async def _serve(self) -> None:
        assert self._events is not None
        async for event in self._events:
            if isinstance(event, StopSignal):
                return
            async with self._lock:
                if self._stop_requested:
                    return
                await self._handle_exit(event.incarnation, event.failure)

    async def _stop_all_children(self) -> None:
        assert self._runner is not None
        self._accepting = False
        self._runner.request_stop()  # no start may begin (or go on) from now on
        if self._state is not ChildState.FAILED:
            self._state = ChildState.STOPPING
        try:
            async with self._lock:
                for child in reversed(self._children):
                    await self._runner.stop(child)
                for child in self._children:
                    if child.state is not ChildState.FAILED:
                        child.state = ChildState.STOPPED
        except BaseException:
            # Our own grace ran out (the parent's hard stop): no more waiting, cut everything.
            self._runner.hard_stop(self._children)
            raise

    def _escalation(self, give_up: GiveUp) -> SupervisorEscalation:
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

    # ----------------------------------------------------------------- for the subclasses

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
            except Aborted:
                raise NotRunning(self._path, "stopped while the operation was running") from None

    def _find(self, child_id: str) -> Child:
        for child in self._children:
            if child.spec.id == child_id:
                return child
        raise UnknownChild(self._path, child_id)

    def _check_intensity(self, child: Child, failure: Exception | None) -> None:
        """Count one restart of ``child``; raise GiveUp if that is one too many."""
        if not self._intensity.record(trio.current_time()):
            if failure is None:
                what = "exited"
            elif isinstance(failure, SupervisorEscalation):
                what = "gave up"  # the details are further down the chain
            else:
                what = f"crashed ({describe_failure(failure)})"
            raise GiveUp(
                child,
                failure,
                f"{what}; more than {self.intensity} restarts in {self.period:g}s",
            )

    async def _start(self, child: Child, *, restarting: bool) -> Started | StartFailed:
        """Start an incarnation of ``child`` (raises Aborted when the supervisor stops)."""
        if self._runner is None:
            raise Aborted
        return await self._runner.start(child, restarting=restarting)

    async def _stop_child(self, child: Child) -> None:
        """Stop ``child`` within its grace (nothing to do if it is not running)."""
        if self._runner is not None:
            await self._runner.stop(child)
