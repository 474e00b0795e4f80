"""Supervisor: a fixed list of children, restarted by strategy within a restart intensity."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._core import SupervisorCore
from ._records import Child, GiveUp, Incarnation, Started
from .child_spec import ChildSpec, Restart
from .errors import ChildRunning, ChildStartError, DuplicateChild
from .snapshot import ChildState
from .strategy import Strategy, restart_group

__all__ = ["Supervisor"]


class Supervisor(SupervisorCore):
    """An OTP supervisor: starts ``children`` in order and keeps them running.

    When a child exits on its own, its restart type decides whether it is restarted
    (``permanent``: always; ``transient``: only after a crash; ``temporary``: never, and it is
    removed). A restart takes down, in reverse start order, the siblings ``strategy`` names
    (none for ``one_for_one``, all for ``one_for_all``, the later ones for ``rest_for_one``),
    then starts the group again in start order. Siblings taken down that are ``temporary``
    are removed instead of restarted; stopped non-temporary siblings in the group are
    started again, as in OTP.

    Every restart, including a retry after a restart that failed to start, counts against
    the supervisor's restart intensity: more than ``intensity`` restarts within ``period``
    seconds and the supervisor gives up. It stops its remaining children in reverse start
    order and :meth:`run` raises ``SupervisorEscalation`` to its parent. A child that fails
    during the initial start makes it give up at once.

    The supervisor object holds its configuration; each :meth:`run` starts from it again
    with fresh bookkeeping (children added with :meth:`start_child` do not survive a
    restart of the supervisor, as in OTP).

    Raises:
        ValueError: from the constructor, for a bad id, duplicate child ids (as
            ``DuplicateChild``), a negative intensity or a non-positive period.
    """

    def __init__(
        self,
        id: str,
        children: Sequence[ChildSpec] = (),
        *,
        strategy: Strategy = Strategy.ONE_FOR_ONE,
        intensity: int = 3,
        period: float = 5.0,
    ) -> None:
        super().__init__(id, intensity=intensity, period=period)
        if not isinstance(strategy, Strategy):
            raise ValueError(f"strategy must be a Strategy, got {strategy!r}")
        seen: set[str] = set()
        for spec in children:
            if spec.id in seen:
                raise DuplicateChild(id, spec.id)
            seen.add(spec.id)
        self._strategy = strategy
        self._specs: tuple[ChildSpec, ...] = tuple(children)
        self._children = [Child(spec, self._child_path(spec.id)) for spec in self._specs]

    @property
    def strategy(self) -> Strategy:
        """Its restart strategy."""
        return self._strategy

    @property
    def strategy_name(self) -> str:
        """The strategy as shown in snapshots."""
        return self._strategy.value

    @property
    def specs(self) -> tuple[ChildSpec, ...]:
        """The child specs it starts with."""
        return self._specs

    def get_childspec(self, child_id: str) -> ChildSpec:
        """The spec of the child ``child_id``.

        Raises:
            UnknownChild: if it has no such child.
        """
        return self._find(child_id).spec

    async def start_child(self, spec: ChildSpec) -> Any:
        """Add ``spec`` as its last child and start it; return what the child passed to
        ``task_status.started()``. A child that fails to start is not added. A start failure
        does not count against the restart intensity.

        On cancellation the child is not started and not added.

        Raises:
            DuplicateChild: if a child with that id exists.
            ChildStartError: if the child failed to start (its exception is the cause).
            NotRunning: if the supervisor is not running or stops meanwhile.
        """
        async with self._exclusive():
            if any(child.spec.id == spec.id for child in self._children):
                raise DuplicateChild(self._path, spec.id)
            child = Child(spec, self._child_path(spec.id))
            self._children.append(child)
            try:
                result = await self._start(child, restarting=False)
            finally:
                if child.incarnation is None:
                    self._children.remove(child)
            if not isinstance(result, Started):
                raise ChildStartError(child.path, child.last_failure_reason) from result.reason
            return result.value

    async def terminate_child(self, child_id: str) -> None:
        """Stop the child ``child_id`` within its grace. Its spec is kept (state
        ``stopped``; see :meth:`restart_child`), except a temporary child's, which is removed.
        Stopping a stopped child does nothing.

        Cancellation while waiting leaves the child cancelled and stopping.

        Raises:
            UnknownChild: if it has no such child.
            NotRunning: if the supervisor is not running.
        """
        async with self._exclusive():
            child = self._find(child_id)
            await self._stop_child(child)
            if child.spec.restart is Restart.TEMPORARY:
                self._children.remove(child)

    async def restart_child(self, child_id: str) -> Any:
        """Start the stopped child ``child_id`` again; return its ``started()`` value.

        Does not count against the restart intensity.

        Raises:
            UnknownChild: if it has no such child.
            ChildRunning: if the child is not stopped.
            ChildStartError: if it failed to start (it stays stopped).
            NotRunning: if the supervisor is not running.
        """
        async with self._exclusive():
            child = self._find(child_id)
            if child.incarnation is not None or child.state is not ChildState.STOPPED:
                raise ChildRunning(child.path, child.state.value)
            result = await self._start(child, restarting=False)
            if not isinstance(result, Started):
                raise ChildStartError(child.path, child.last_failure_reason) from result.reason
            return result.value

    async def delete_child(self, child_id: str) -> None:
        """Remove the spec of the stopped child ``child_id``.

        Raises:
            UnknownChild: if it has no such child.
            ChildRunning: if the child is not stopped.
            NotRunning: if the supervisor is not running.
        """
        async with self._exclusive():
            child = self._find(child_id)
            if child.incarnation is not None or child.state is not ChildState.STOPPED:
                raise ChildRunning(child.path, child.state.value)
            self._children.remove(child)

    # ----------------------------------------------------------------- supervision

    def _reset(self) -> None:
        self._children = [Child(spec, self._child_path(spec.id)) for spec in self._specs]

    async def _start_initial_children(self) -> None:
        for child in self._children:
            result = await self._start(child, restarting=False)
            if not isinstance(result, Started):
                raise GiveUp(
                    child,
                    result.reason,
                    f"failed to start ({child.last_failure_reason})",
                )

    async def _handle_exit(self, incarnation: Incarnation, failure: Exception | None) -> None:
        child = incarnation.child
        if child.incarnation is not incarnation or child not in self._children:
            return  # already taken down with a sibling, or terminated meanwhile
        child.incarnation = None
        if not child.spec.restart.restarts_after(crashed=failure is not None):
            child.state = ChildState.STOPPED
            if child.spec.restart is Restart.TEMPORARY:
                self._children.remove(child)
            return
        self._check_intensity(child, failure)
        group = restart_group(self._strategy, self._children, self._children.index(child))
        for sibling in reversed(group):
            if sibling is not child:
                await self._stop_child(sibling)
        for sibling in group:
            if sibling.spec.restart is Restart.TEMPORARY and sibling is not child:
                self._children.remove(sibling)
        to_start = [sibling for sibling in group if sibling in self._children]
        for sibling in to_start:
            sibling.state = ChildState.RESTARTING
        await self._restart_group(to_start)

    async def _restart_group(self, group: list[Child]) -> None:
        """Start ``group`` in order; a member that fails to start counts as one more
        restart, and the group is retried (all of it for one_for_all, from the failed
        member on otherwise) until it starts or the intensity is exceeded."""
        while True:
            for index, child in enumerate(group):
                result = await self._start(child, restarting=True)
                if isinstance(result, Started):
                    continue
                self._check_intensity(child, result.reason)
                if self._strategy is Strategy.ONE_FOR_ALL:
                    for started in reversed(group[:index]):
                        await self._stop_child(started)
                else:
                    group = group[index:]
                for member in group:
                    member.state = ChildState.RESTARTING
                break
            else:
                return
