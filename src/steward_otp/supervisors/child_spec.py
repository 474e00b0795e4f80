"""ChildSpec: what a supervisor needs to know to start, restart and stop one child."""

from __future__ import annotations

import enum
import math
from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal, TypeAlias

import attrs

__all__ = [
    "BRUTAL_KILL",
    "BrutalKill",
    "ChildKind",
    "ChildSpec",
    "Restart",
    "Shutdown",
    "StartFunction",
    "validate_id",
]

StartFunction: TypeAlias = Callable[..., Awaitable[object]]
"""``async def start(*args, task_status=trio.TASK_STATUS_IGNORED) -> None``.

The supervisor calls it with ``task_status=`` only (use ``functools.partial`` or a closure to
bind arguments; a DynamicSupervisor appends the ``start_child`` arguments). The child is
*ready* when it calls ``task_status.started(value)``; returning normally is a *normal exit*,
raising is a *crash*.
"""


class Restart(enum.Enum):
    """When a child is restarted after it exits (OTP restart types)."""

    PERMANENT = "permanent"
    """Always restarted, whatever the exit."""
    TRANSIENT = "transient"
    """Restarted only after an abnormal exit (an exception); a normal return is final."""
    TEMPORARY = "temporary"
    """Never restarted, not even when a sibling's failure takes it down; once it has
    exited it is removed from its supervisor's children."""

    def restarts_after(self, *, crashed: bool) -> bool:
        """Whether a child of this restart type is restarted after exiting on its own."""
        if self is Restart.PERMANENT:
            return True
        if self is Restart.TRANSIENT:
            return crashed
        return False


class ChildKind(enum.Enum):
    """Whether a child is a worker or a supervisor (OTP child type)."""

    WORKER = "worker"
    SUPERVISOR = "supervisor"


class BrutalKill(enum.Enum):
    """Type of the :data:`BRUTAL_KILL` sentinel."""

    BRUTAL_KILL = "brutal_kill"


BRUTAL_KILL: Final = BrutalKill.BRUTAL_KILL
"""Shutdown without grace: the child is cancelled and its cleanup scopes are cancelled at once."""

Shutdown: TypeAlias = float | Literal[BrutalKill.BRUTAL_KILL]

DEFAULT_WORKER_SHUTDOWN: Final = 5.0
"""Grace seconds of a worker when its spec does not say (OTP's 5000 ms)."""


def validate_id(kind: str, value: object) -> str:
    """Check that ``value`` is a usable child or supervisor id and return it.

    An id is a non-empty string without ``/`` (``/`` joins ids into paths).

    Raises:
        ValueError: naming the offending value and what is allowed.
    """
    if not isinstance(value, str) or not value or "/" in value:
        raise ValueError(
            f"{kind} must be a non-empty string without '/', got {value!r} "
            "('/' separates the ids in a process path)"
        )
    return value


def _check_id(_instance: object, _attribute: object, value: Any) -> None:
    validate_id("ChildSpec.id", value)


def _to_shutdown(value: object) -> Shutdown:
    if value is BRUTAL_KILL:
        return BRUTAL_KILL
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(
            f"ChildSpec.shutdown must be a number of grace seconds >= 0 (math.inf to wait "
            f"forever) or BRUTAL_KILL, got {value!r}"
        )
    return float(value)


@attrs.frozen
class ChildSpec:
    """How to run one child: its id, its start function, and its restart and shutdown policy.

    ``shutdown`` is the grace, in seconds, the child gets to finish its cleanup after its
    supervisor cancels it (see ``ChildHandle.cleanup_scope``); ``math.inf`` waits for as long
    as the child takes, ``BRUTAL_KILL`` gives no grace at all. It defaults to 5 s for a worker
    and ``math.inf`` for a supervisor, whose own children have their own graces.

    Raises:
        ValueError: from the constructor, naming the bad field and what is allowed.
    """

    id: str = attrs.field(validator=_check_id)
    start: StartFunction = attrs.field(validator=attrs.validators.is_callable())
    restart: Restart = attrs.field(
        default=Restart.PERMANENT, kw_only=True, validator=attrs.validators.instance_of(Restart)
    )
    kind: ChildKind = attrs.field(
        default=ChildKind.WORKER, kw_only=True, validator=attrs.validators.instance_of(ChildKind)
    )
    shutdown: Shutdown = attrs.field(kw_only=True, converter=_to_shutdown)

    @shutdown.default
    def _default_shutdown(self) -> Shutdown:
        return math.inf if self.kind is ChildKind.SUPERVISOR else DEFAULT_WORKER_SHUTDOWN

    @property
    def grace(self) -> float:
        """The shutdown grace in seconds (``0.0`` for ``BRUTAL_KILL``)."""
        return 0.0 if self.shutdown is BRUTAL_KILL else self.shutdown

    def with_arguments(self, child_id: str, *args: Any) -> ChildSpec:
        """A copy of this spec with another id, whose start function receives ``args``
        before ``task_status`` (how a DynamicSupervisor instantiates its template)."""
        template_start = self.start

        async def start(**kwargs: Any) -> object:
            return await template_start(*args, **kwargs)

        return attrs.evolve(self, id=child_id, start=start)
