"""ChildHandle: a supervised child's view of itself (path, live info, activity, cleanup scope)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import trio

from .child_spec import ChildKind, Restart
from .errors import describe_failure
from .registry import Registry
from .snapshot import ChildState, json_safe

if TYPE_CHECKING:
    from .snapshot import ProcessSnapshot

__all__ = ["ChildHandle", "ChildInfo", "current_child"]

InfoProvider = Callable[[], Mapping[str, object]]


class Subtree(Protocol):
    """What a supervisor running as a child exposes to its parent's snapshot."""

    @property
    def strategy_name(self) -> str: ...

    def children_snapshot(self, now: float) -> tuple[ProcessSnapshot, ...]: ...


_current: ContextVar[ChildHandle | None] = ContextVar(
    "steward_otp.supervisors.current_child", default=None
)


def current_child() -> ChildHandle:
    """The handle of the supervised child the calling task belongs to.

    Works in the child's start function and in every task it spawns. Each incarnation
    gets a fresh handle: after a restart, info, activity and cleanup scopes start over.

    Raises:
        RuntimeError: when called outside a child started by a Supervisor or
            DynamicSupervisor.
    """
    handle = _current.get()
    if handle is None:
        raise RuntimeError(
            "current_child() was called outside a supervised child; start this code "
            "through a ChildSpec under a Supervisor or DynamicSupervisor"
        )
    return handle


def current_child_or_none() -> ChildHandle | None:
    """Like :func:`current_child`, but ``None`` outside a supervised child."""
    return _current.get()


class ChildHandle:
    """One incarnation of a supervised child: what the child sees of its supervisor, and
    what ``which_children()`` returns as the child's "pid".

    A child gets its own with :func:`current_child`. Through it a child can:

    * attach live info to its snapshot entry: update ``handle.info`` (a plain dict) or set
      ``handle.info_provider`` to a function returning a mapping, called whenever a snapshot
      is taken (it must be quick and must not block); values are made JSON-safe;
    * report activity with :meth:`touch` (a DynamicSupervisor with ``idle_timeout`` stops
      children that stay idle that long), or set ``handle.busy`` to a function saying
      whether it has work in hand: the idle reaper asks it (quick, must not block) before
      stopping the child and counts a busy child as active just then, so a child that only
      waits for something it is owed needs no timer of its own to stay alive;
    * run shutdown cleanup inside :meth:`cleanup_scope`, protected from the soft stop and
      bounded by the shutdown grace;
    * reach other processes through ``handle.registry``.
    """

    def __init__(
        self, *, id: str, path: str, kind: ChildKind, registry: Registry, now: float
    ) -> None:
        self.id = id
        self.path = path
        self.kind = kind
        self.registry = registry
        self.info: dict[str, object] = {}
        self.info_provider: InfoProvider | None = None
        self.busy: Callable[[], bool] | None = None
        self._value: Any = None
        self._inbox: trio.MemorySendChannel[Any] | None = None
        self._last_activity = now
        self._stopping = False
        self._hard_deadline = math.inf
        self._cleanup_scopes: set[trio.CancelScope] = set()
        self._subtree: Subtree | None = None

    @property
    def value(self) -> Any:
        """What the child passed to ``task_status.started()`` (``None`` until then)."""
        return self._value

    @property
    def inbox(self) -> trio.MemorySendChannel[Any] | None:
        """The inbox registered for this incarnation, if it passed one to ``started()``."""
        return self._inbox

    @property
    def stopping(self) -> bool:
        """Whether the supervisor has asked this incarnation to stop."""
        return self._stopping

    @property
    def last_activity(self) -> float:
        """Trio time of the last :meth:`touch` (or of the start)."""
        return self._last_activity

    def touch(self) -> None:
        """Record activity now, postponing idle reaping. Cheap; call it freely."""
        self._last_activity = trio.current_time()

    def idle_since(self) -> float:
        """Trio time since which the child counts as idle: now while ``busy()`` says it has
        work in hand (which counts as activity), else its last activity."""
        if self.busy is not None and self.busy():
            self.touch()
        return self._last_activity

    @contextmanager
    def cleanup_scope(self) -> Iterator[trio.CancelScope]:
        """A shielded cancel scope for shutdown cleanup, bounded by the shutdown grace.

        Code inside is protected from the supervisor's soft stop (the cancellation of the
        child), so it can flush, close and say goodbye. When the grace of the stop runs out
        (at once for ``BRUTAL_KILL``), the scope is cancelled: the cleanup gets
        ``trio.Cancelled`` at its next checkpoint. Entered after the stop began, the scope
        gets the remaining grace. A plain ``trio.CancelScope(shield=True)`` is not bounded
        this way: the supervisor cannot end it and waits for it, however long it takes.
        """
        scope = trio.CancelScope(shield=True, deadline=self._hard_deadline)
        self._cleanup_scopes.add(scope)
        try:
            with scope:
                yield scope
        finally:
            self._cleanup_scopes.discard(scope)

    def snapshot_info(self) -> dict[str, Any]:
        """The child's live info, JSON-safe: ``info`` updated with ``info_provider()``.

        Never raises: a failing provider is reported as ``{"info_error": ...}``.
        """
        merged: dict[str, object] = dict(self.info)
        if self.info_provider is not None:
            try:
                merged.update(self.info_provider())
            except Exception as exc:
                merged["info_error"] = describe_failure(exc)
        safe: dict[str, Any] = json_safe(merged)
        return safe

    def __repr__(self) -> str:
        return f"<ChildHandle {self.path!r}>"

    # Used by the supervisor that owns this incarnation.

    def _ready(self, value: Any, inbox: trio.MemorySendChannel[Any] | None, now: float) -> None:
        self._value = value
        self._inbox = inbox
        self._last_activity = now

    def _begin_shutdown(self, hard_deadline: float) -> None:
        self._stopping = True
        self._hard_deadline = min(self._hard_deadline, hard_deadline)
        for scope in self._cleanup_scopes:
            scope.deadline = min(scope.deadline, hard_deadline)

    def _hard_stop(self) -> None:
        self._stopping = True
        self._hard_deadline = -math.inf
        for scope in self._cleanup_scopes:
            scope.cancel()


@attrs.frozen
class ChildInfo:
    """One entry of ``which_children()`` (OTP's ``{Id, Child, Type, Modules}``).

    ``handle`` is the running incarnation (OTP's pid): ``None`` while the child is not
    running (stopped, or restarting: check ``state``).
    """

    id: str
    handle: ChildHandle | None
    kind: ChildKind
    restart: Restart
    state: ChildState
