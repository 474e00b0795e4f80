"""DynamicSupervisor: children of one template, started on demand and reaped when idle."""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Iterable, Sequence
from typing import Any

import trio

from ._core import SupervisorCore, logger
from ._records import Aborted, Child, Incarnation, Started, StartFailed
from .child_spec import ChildSpec, validate_id
from .errors import ChildStartError, UnknownChild
from .handle import ChildHandle
from .snapshot import ChildState

__all__ = ["DynamicSupervisor"]

_IdleEntry = tuple[float, int, Child, ChildHandle]
"""The reaper's heap entry: (idle deadline, tie-breaker, child, the incarnation's handle)."""


class DynamicSupervisor(SupervisorCore):
    """A supervisor whose children are started at run time from one template (OTP's
    ``simple_one_for_one``, Elixir's ``DynamicSupervisor``).

    Each child has an id chosen by the caller and runs ``template.start(*args,
    task_status=...)`` with the arguments given to :meth:`start_child`; its restart type and
    shutdown grace come from the template. Restarts are one-for-one and count against the
    supervisor's restart intensity (more than ``intensity`` within ``period`` seconds and it
    gives up: it stops all its children in reverse start order and ``run`` raises
    ``SupervisorEscalation``). A child that is not restarted (temporary, or transient after
    a normal exit) is removed.

    With ``idle_timeout`` set, a child whose handle saw no activity (``touch()``, its
    start, or its ``busy()`` saying it has work in hand when the reaper looks) for that many
    seconds is stopped within its grace, as a normal shutdown, and
    removed; the next :meth:`start_child` for its id starts it afresh. The reaper keeps the
    running children in a heap by idle deadline and looks only at those whose deadline has
    come (a child touched since is put back with its new deadline), so starting, touching
    and reaping cost O(log n) per child and idle period, however many children there are.

    Raises:
        ValueError: from the constructor, for a bad id, intensity, period or idle timeout.
    """

    def __init__(
        self,
        id: str,
        template: ChildSpec,
        *,
        intensity: int = 3,
        period: float = 5.0,
        idle_timeout: float | None = None,
    ) -> None:
        super().__init__(id, intensity=intensity, period=period)
        if idle_timeout is not None and not idle_timeout > 0:
            raise ValueError(f"idle_timeout must be None or seconds > 0, got {idle_timeout!r}")
        self._template = template
        self._idle_timeout = idle_timeout
        self._by_id: dict[str, Child] = {}
        self._idle_heap: list[_IdleEntry] = []
        self._idle_order = itertools.count()
        self._reaper_wakeup = trio.Event()
        self._reaper_next_due = math.inf

    @property
    def strategy_name(self) -> str:
        """The strategy as shown in snapshots: ``"simple_one_for_one"``."""
        return "simple_one_for_one"

    @property
    def template(self) -> ChildSpec:
        """The spec every child is made from."""
        return self._template

    @property
    def idle_timeout(self) -> float | None:
        """Seconds of inactivity after which a child is stopped, or ``None``."""
        return self._idle_timeout

    def whereis(self, child_id: str) -> trio.MemorySendChannel[Any] | None:
        """The inbox of the running child ``child_id`` (``None`` if it is not running or
        registered no inbox). One dict lookup; safe to call per message."""
        child = self._by_id.get(child_id)
        handle = None if child is None else child.live_handle
        return None if handle is None else handle.inbox

    def __contains__(self, child_id: object) -> bool:
        """Whether a child with this id exists (running or being restarted)."""
        return child_id in self._by_id

    async def start_child(self, child_id: str, *args: Any) -> Any:
        """Start a child ``child_id`` with ``args``; return once it is ready, with what it
        passed to ``task_status.started()``.

        If a child with that id already exists, nothing is started: this waits for any
        restart of it in progress and returns its current ``started()`` value (``args``
        are then ignored). So callers may call it per message to get a child that runs.
        A child that fails to start is not kept, and the failure does not count against
        the restart intensity.

        On cancellation the child is not started (or keeps running, if it already was).

        Raises:
            ChildStartError: if the child failed to start (its exception is the cause).
            NotRunning: if the supervisor is not running, or stops meanwhile.
            ValueError: for an id that is empty or contains ``/``.
        """
        existing = self._by_id.get(child_id)
        live = None if existing is None else existing.live_handle
        if live is not None:
            # Take the value before the checkpoint: the child may stop during it.
            value = live.value
            await trio.lowlevel.checkpoint()
            return value
        validate_id("child id", child_id)
        async with self._exclusive():
            existing = self._by_id.get(child_id)
            if existing is not None and existing.incarnation is not None:
                return existing.incarnation.handle.value
            spec = self._template.with_arguments(child_id, *args)
            child = Child(spec, self._child_path(child_id))
            self._add(child)
            try:
                result = await self._start(child, restarting=False)
            finally:
                if child.incarnation is None:
                    self._remove(child)
            if not isinstance(result, Started):
                raise ChildStartError(child.path, child.last_failure_reason) from result.reason
            self._watch_idle(child)
            return result.value

    async def start_children(
        self, requests: Iterable[tuple[str, Sequence[Any]]]
    ) -> dict[str, Any | ChildStartError]:
        """Start a child for each ``(child_id, args)`` of ``requests`` that does not exist
        yet, all at the same time; return once each is ready or has failed.

        The result maps every requested id to what :meth:`start_child` would have returned
        for it -- the child's ``started()`` value (an existing child's current one; the
        ``args`` of a later request for the same id are ignored) -- or to the
        :class:`ChildStartError` it would have raised (returned here, so that one failure
        does not hide the children that did start). Children are added in request order.
        The starts run concurrently under one hold of the supervisor's lock, so starting
        n children takes a few scheduler passes instead of a few per child. As with
        :meth:`start_child`, a child that fails to start is not kept, and the failure does
        not count against the restart intensity.

        On cancellation the children not yet ready are not started.

        Raises:
            NotRunning: if the supervisor is not running, or stops meanwhile.
            ValueError: for an id that is empty or contains ``/`` (nothing is started).
        """
        results: dict[str, Any | ChildStartError] = {}
        wanted: dict[str, Sequence[Any]] = {}
        for child_id, args in requests:
            if child_id in results or child_id in wanted:
                continue
            existing = self._by_id.get(child_id)
            live = None if existing is None else existing.live_handle
            if live is not None:
                results[child_id] = live.value
            else:
                validate_id("child id", child_id)
                wanted[child_id] = args
        if not wanted:
            await trio.lowlevel.checkpoint()
            return results
        async with self._exclusive():
            starting: list[Child] = []
            for child_id, args in wanted.items():
                existing = self._by_id.get(child_id)
                if existing is not None and existing.incarnation is not None:
                    results[child_id] = existing.incarnation.handle.value
                    continue
                spec = self._template.with_arguments(child_id, *args)
                child = Child(spec, self._child_path(child_id))
                self._add(child)
                starting.append(child)
            outcomes: dict[str, Started | StartFailed | Aborted] = {}
            try:
                async with trio.open_nursery() as nursery:
                    for child in starting:
                        nursery.start_soon(self._start_into, child, outcomes)
            finally:
                for child in starting:
                    if child.incarnation is None:
                        self._remove(child)
            for child in starting:
                outcome = outcomes[child.spec.id]
                if isinstance(outcome, Aborted):
                    raise outcome
                if isinstance(outcome, Started):
                    results[child.spec.id] = outcome.value
                else:
                    error = ChildStartError(child.path, child.last_failure_reason)
                    error.__cause__ = outcome.reason
                    results[child.spec.id] = error
        return results

    async def _start_into(
        self, child: Child, outcomes: dict[str, Started | StartFailed | Aborted]
    ) -> None:
        try:
            outcome = await self._start(child, restarting=False)
        except Aborted as aborted:
            outcomes[child.spec.id] = aborted
            return
        if isinstance(outcome, Started):
            self._watch_idle(child)  # at once: it runs on even if the caller is cancelled
        outcomes[child.spec.id] = outcome

    async def terminate_child(self, child_id: str) -> None:
        """Stop the child ``child_id`` within its grace and remove it.

        Cancellation while waiting leaves the child cancelled and stopping.

        Raises:
            UnknownChild: if there is no such child.
            NotRunning: if the supervisor is not running.
        """
        async with self._exclusive():
            child = self._by_id.get(child_id)
            if child is None:
                raise UnknownChild(self._path, child_id)
            await self._stop_child(child)
            self._remove(child)

    # ----------------------------------------------------------------- supervision

    def _reset(self) -> None:
        self._children = []
        self._by_id = {}
        self._idle_heap = []
        self._reaper_wakeup = trio.Event()
        self._reaper_next_due = math.inf

    def _add(self, child: Child) -> None:
        self._children.append(child)
        self._by_id[child.spec.id] = child

    def _remove(self, child: Child) -> None:
        if self._by_id.get(child.spec.id) is child:
            del self._by_id[child.spec.id]
            self._children.remove(child)

    def _after_start(self, nursery: trio.Nursery) -> None:
        if self._idle_timeout is not None:
            nursery.start_soon(self._reap_idle_children, self._idle_timeout)

    async def _handle_exit(self, incarnation: Incarnation, failure: Exception | None) -> None:
        child = incarnation.child
        if child.incarnation is not incarnation or self._by_id.get(child.spec.id) is not child:
            return  # terminated meanwhile
        child.incarnation = None
        if not child.spec.restart.restarts_after(crashed=failure is not None):
            child.state = ChildState.STOPPED
            self._remove(child)
            return
        self._check_intensity(child, failure)
        while True:
            result = await self._start(child, restarting=True)
            if isinstance(result, Started):
                self._watch_idle(child)
                return
            self._check_intensity(child, result.reason)

    def _watch_idle(self, child: Child) -> None:
        """Put the running incarnation of ``child`` under the reaper's watch (O(log n))."""
        if self._idle_timeout is None:
            return
        handle = child.live_handle
        if handle is None:
            return  # exited already: its exit is handled (and a restart watched) on its own
        deadline = handle.last_activity + self._idle_timeout
        heapq.heappush(self._idle_heap, (deadline, next(self._idle_order), child, handle))
        if deadline < self._reaper_next_due:
            self._reaper_wakeup.set()

    def _due_children(self, now: float, idle_timeout: float) -> list[tuple[Child, ChildHandle]]:
        """Take from the heap the running children idle for ``idle_timeout`` s as of ``now``.

        Each running incarnation has exactly one entry. An entry whose incarnation no longer
        runs (stopped, restarted, removed) is dropped; a child touched since its entry was
        made goes back with its new deadline.
        """
        heap = self._idle_heap
        due: list[tuple[Child, ChildHandle]] = []
        while heap and heap[0][0] <= now:
            _, _, child, handle = heapq.heappop(heap)
            if child.live_handle is not handle or self._by_id.get(child.spec.id) is not child:
                continue
            deadline = handle.idle_since() + idle_timeout
            if deadline <= now:
                due.append((child, handle))
            else:
                heapq.heappush(heap, (deadline, next(self._idle_order), child, handle))
        return due

    async def _reap_idle_children(self, idle_timeout: float) -> None:
        """Stop children idle for ``idle_timeout`` seconds; sleeps until the next one is due."""
        while self._accepting:
            due = self._due_children(trio.current_time(), idle_timeout)
            if due:
                await self._reap(due, idle_timeout)
                continue
            self._reaper_next_due = self._idle_heap[0][0] if self._idle_heap else math.inf
            with trio.move_on_at(self._reaper_next_due):
                await self._reaper_wakeup.wait()
            self._reaper_wakeup = trio.Event()

    async def _reap(self, due: list[tuple[Child, ChildHandle]], idle_timeout: float) -> None:
        async with self._lock:
            for child, handle in due:
                if not self._accepting:
                    return
                if child.live_handle is not handle or self._by_id.get(child.spec.id) is not child:
                    continue  # stopped, removed or restarted meanwhile (a restart is watched)
                deadline = handle.idle_since() + idle_timeout
                if deadline > trio.current_time():
                    # Touched meanwhile: watch its new deadline.
                    heapq.heappush(
                        self._idle_heap, (deadline, next(self._idle_order), child, handle)
                    )
                    continue
                logger.info(
                    "supervisor %s: child %s idle for %gs; stopping it",
                    self._path,
                    child.path,
                    idle_timeout,
                )
                await self._stop_child(child)
                self._remove(child)
