"""The bookkeeping records a supervisor keeps per child and per incarnation, and the
snapshot entry it builds from them."""

from __future__ import annotations

from typing import Any, Final

import attrs
import trio

from .child_spec import ChildSpec
from .handle import ChildHandle
from .snapshot import ChildState, FailureRecord, ProcessSnapshot


@attrs.define(eq=False)
class Child:
    """A supervisor's bookkeeping for one child spec, across its incarnations."""

    spec: ChildSpec
    path: str
    state: ChildState = ChildState.STOPPED
    incarnation: Incarnation | None = None
    restart_count: int = 0
    started_at: float | None = None
    last_failure: tuple[float, str] | None = None

    @property
    def last_failure_reason(self) -> str:
        return "" if self.last_failure is None else self.last_failure[1]

    @property
    def live_handle(self) -> ChildHandle | None:
        """The handle of the running incarnation, if any (OTP's pid)."""
        incarnation = self.incarnation
        if incarnation is None or not incarnation.alive:
            return None
        return incarnation.handle

    def snapshot(self, now: float) -> ProcessSnapshot:
        """This child's snapshot entry; a supervisor child contributes its subtree."""
        handle = self.live_handle
        strategy: str | None = None
        children: tuple[ProcessSnapshot, ...] = ()
        if handle is not None and handle._subtree is not None:
            strategy = handle._subtree.strategy_name
            children = handle._subtree.children_snapshot(now)
        uptime = None
        if handle is not None and self.started_at is not None:
            uptime = now - self.started_at
        return ProcessSnapshot(
            path=self.path,
            id=self.spec.id,
            kind=self.spec.kind.value,
            strategy=strategy,
            restart=self.spec.restart.value,
            state=self.state.value,
            restart_count=self.restart_count,
            uptime=uptime,
            last_failure=failure_record(self.last_failure, now),
            info={} if handle is None else handle.snapshot_info(),
            children=children,
        )


@attrs.define(eq=False)
class Incarnation:
    """One run of a child's start function."""

    child: Child
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
class Started:
    """A start that succeeded, with the value the child passed to ``started()``."""

    value: Any


@attrs.frozen
class StartFailed:
    """A start that failed, and why."""

    reason: Exception


@attrs.frozen
class Exited:
    """Control-loop event: an incarnation exited on its own."""

    incarnation: Incarnation
    failure: Exception | None


class StopSignal:
    """Control-loop event: the supervisor must stop."""


STOP: Final = StopSignal()

ControlEvent = Exited | StopSignal


class Aborted(Exception):
    """A start was abandoned because the supervisor is stopping."""


class GiveUp(Exception):
    """The supervisor must give up because of ``child``."""

    def __init__(self, child: Child, failure: Exception | None, reason: str) -> None:
        super().__init__(reason)
        self.child = child
        self.failure = failure
        self.reason = reason


def failure_record(failure: tuple[float, str] | None, now: float) -> FailureRecord | None:
    """The snapshot form of a ``(time, reason)`` failure, aged as of ``now``."""
    if failure is None:
        return None
    at, reason = failure
    return FailureRecord(at=at, seconds_ago=now - at, reason=reason)
