"""The typed errors of the supervision library, and the one-line failure descriptions they use."""

from __future__ import annotations

__all__ = [
    "AlreadyRegistered",
    "ChildRunning",
    "ChildStartError",
    "DuplicateChild",
    "NoProcess",
    "NotRunning",
    "SupervisionError",
    "SupervisorEscalation",
    "UnknownChild",
    "describe_failure",
]


def describe_failure(exc: BaseException | None) -> str:
    """Describe an exit reason in one line: ``"ValueError: bad port"``, or ``"normal exit"``.

    Only the first line of the exception text is kept, so the result fits a log line or a
    snapshot field.
    """
    if exc is None:
        return "normal exit"
    if isinstance(exc, BaseExceptionGroup):
        # A child that runs a nursery fails with a group; name what actually went wrong.
        leaves = leaf_exceptions(exc)
        if len(leaves) == 1:
            return describe_failure(leaves[0])
        return f"{len(leaves)} failures: " + "; ".join(describe_failure(e) for e in leaves)
    text = str(exc).strip().splitlines()
    name = type(exc).__name__
    return f"{name}: {text[0]}" if text else name


def leaf_exceptions(failure: BaseException) -> list[BaseException]:
    """The exceptions inside ``failure``, through nested groups, in order (``[failure]`` for
    a single exception)."""
    if not isinstance(failure, BaseExceptionGroup):
        return [failure]
    leaves: list[BaseException] = []
    for inner in failure.exceptions:
        leaves.extend(leaf_exceptions(inner))
    return leaves


class SupervisionError(Exception):
    """Base class of every error raised by ``steward_otp.supervisors``."""


class SupervisorEscalation(SupervisionError):
    """A supervisor gave up: one of its children failed more often than its intensity allows,
    or failed to start when the supervisor started.

    By the time this is raised the supervisor has stopped all its remaining children. It is
    the only exception a supervisor raises to its parent. ``__cause__`` is the child's own
    exception (``None`` when a permanent child kept exiting normally), which is itself a
    ``SupervisorEscalation`` when the child is a supervisor: the chain runs from the
    supervisor that gave up last down to the original failure.

    Attributes:
        path: the path of the supervisor that gave up, e.g. ``"node/outbound"``.
        child_path: the path of the child whose exit made it give up.
        reason: one line saying what that child did, e.g.
            ``"crashed (ValueError: boom); more than 3 restarts in 5s"``.
    """

    def __init__(self, path: str, child_path: str, reason: str) -> None:
        super().__init__(f"supervisor {path!r} gave up: child {child_path!r} {reason}")
        self.path = path
        self.child_path = child_path
        self.reason = reason

    @property
    def chain(self) -> tuple[SupervisorEscalation, ...]:
        """This escalation and the nested ones below it, outermost first."""
        links: list[SupervisorEscalation] = [self]
        cause = self.__cause__
        while isinstance(cause, SupervisorEscalation):
            links.append(cause)
            cause = cause.__cause__
        return tuple(links)

    @property
    def origin(self) -> SupervisorEscalation:
        """The innermost escalation: the one raised by the supervisor closest to the failure."""
        return self.chain[-1]

    @property
    def root_cause(self) -> BaseException | None:
        """The original failure at the bottom of the chain (``None`` for repeated normal exits)."""
        return self.origin.__cause__

    def describe(self) -> str:
        """One line naming the failing process, its reason and the supervisors it escalated
        through, e.g. ``"'node/outbound/router' crashed (ValueError: boom); more than 3
        restarts in 5s; escalated through 'node/outbound' -> 'node'"``."""
        origin = self.origin
        through = " -> ".join(repr(link.path) for link in reversed(self.chain))
        return f"{origin.child_path!r} {origin.reason}; escalated through {through}"


class ChildStartError(SupervisionError):
    """A child failed to start: its start function raised, or returned without calling
    ``task_status.started()``. ``__cause__`` holds the child's exception, if any."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"child {path!r} failed to start: {reason}")
        self.path = path
        self.reason = reason


class NoProcess(SupervisionError, LookupError):
    """Nothing is registered under a path (or the process there stopped receiving)."""

    def __init__(self, path: str, detail: str = "no process is registered under this path") -> None:
        super().__init__(f"{path!r}: {detail}")
        self.path = path


class AlreadyRegistered(SupervisionError):
    """A different inbox is already registered under this path."""

    def __init__(self, path: str) -> None:
        super().__init__(
            f"{path!r} is already registered to another inbox; unregister it first, "
            "or give the process a different path"
        )
        self.path = path


class NotRunning(SupervisionError):
    """An operation needs a running supervisor, and this one is not running (not started
    yet, stopping, or stopped)."""

    def __init__(self, path: str, detail: str = "is not running") -> None:
        super().__init__(f"supervisor {path!r} {detail}")
        self.path = path


class UnknownChild(SupervisionError, LookupError):
    """A supervisor has no child with this id."""

    def __init__(self, path: str, child_id: str) -> None:
        super().__init__(f"supervisor {path!r} has no child {child_id!r}")
        self.path = path
        self.child_id = child_id


class DuplicateChild(SupervisionError, ValueError):
    """Two children of one supervisor would share an id (ids must be unique per supervisor)."""

    def __init__(self, path: str, child_id: str) -> None:
        super().__init__(
            f"supervisor {path!r} already has a child {child_id!r}; child ids must be unique"
        )
        self.path = path
        self.child_id = child_id


class ChildRunning(SupervisionError):
    """The operation needs a stopped child (``restart_child``, ``delete_child``), and the
    child is running or being restarted; call ``terminate_child`` first."""

    def __init__(self, path: str, state: str) -> None:
        super().__init__(f"child {path!r} is {state}; terminate it first")
        self.path = path
        self.state = state
