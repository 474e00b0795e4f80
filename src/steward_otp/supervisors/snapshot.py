"""Inspection records: child states, which_children/count_children entries, the tree snapshot."""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Iterator, Mapping
from typing import Any

import attrs

__all__ = [
    "ChildCounts",
    "ChildState",
    "FailureRecord",
    "ProcessSnapshot",
    "json_safe",
]


class ChildState(enum.Enum):
    """Where a process is in its life, as inspection reports it."""

    STARTING = "starting"
    """Being started for the first time; not ready yet."""
    RUNNING = "running"
    """Ready (it called ``task_status.started()``) and not asked to stop."""
    RESTARTING = "restarting"
    """Exited (or taken down with a sibling) and about to be started again."""
    STOPPING = "stopping"
    """Cancelled by its supervisor, inside its shutdown grace."""
    STOPPED = "stopped"
    """Not running, and not going to be restarted unless asked (its spec is kept)."""
    FAILED = "failed"
    """Its failure made its supervisor give up."""


def json_safe(value: object) -> Any:
    """``value`` made JSON-serialisable: containers are converted recursively, floats that
    JSON cannot carry become strings, anything else unknown becomes its ``repr``."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, enum.Enum):
        return json_safe(value.value)
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(item) for item in value]
    return repr(value)


@attrs.frozen
class FailureRecord:
    """The last abnormal exit of a process.

    ``at`` is on the Trio clock (``trio.current_time()``); ``seconds_ago`` is measured when
    the snapshot is taken.
    """

    at: float
    seconds_ago: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the record."""
        return {"at": self.at, "seconds_ago": self.seconds_ago, "reason": self.reason}


@attrs.frozen
class ProcessSnapshot:
    """One process in a supervision-tree snapshot, with its children (for a supervisor).

    Fields:
        path: stable address, e.g. ``"node/inbound/REQCliCommand"``.
        id: the last component of the path.
        kind: ``"worker"`` or ``"supervisor"``.
        strategy: the supervisor's strategy (``"one_for_one"``, ``"one_for_all"``,
            ``"rest_for_one"``, ``"simple_one_for_one"`` for a DynamicSupervisor), or
            ``None`` for a worker.
        restart: ``"permanent"``/``"transient"``/``"temporary"``; ``None`` for the root.
        state: a :class:`ChildState` value.
        restart_count: how many times its supervisor restarted it since the supervisor
            started (each attempt counts, including group restarts).
        uptime: seconds since it last became ready, ``None`` when not running.
        last_failure: its last abnormal exit, if any.
        info: the live info the process attached (see ``ChildHandle.info``), JSON-safe.
        children: the snapshots of its children, in start order.
    """

    path: str
    id: str
    kind: str
    strategy: str | None
    restart: str | None
    state: str
    restart_count: int
    uptime: float | None
    last_failure: FailureRecord | None
    info: dict[str, Any]
    children: tuple[ProcessSnapshot, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of this entry and, recursively, its children."""
        return {
            "path": self.path,
            "id": self.id,
            "kind": self.kind,
            "strategy": self.strategy,
            "restart": self.restart,
            "state": self.state,
            "restart_count": self.restart_count,
            "uptime": self.uptime,
            "last_failure": None if self.last_failure is None else self.last_failure.to_dict(),
            "info": self.info,
            "children": [child.to_dict() for child in self.children],
        }

    def to_json(self, *, indent: int | None = None) -> str:
        """:meth:`to_dict` as a JSON string."""
        return json.dumps(self.to_dict(), indent=indent)

    def walk(self) -> Iterator[ProcessSnapshot]:
        """This entry, then every entry below it, depth first in start order."""
        yield self
        for child in self.children:
            yield from child.walk()

    def find(self, path: str) -> ProcessSnapshot | None:
        """The entry with this path in this subtree, or ``None``."""
        return next((entry for entry in self.walk() if entry.path == path), None)


@attrs.frozen
class ChildCounts:
    """The result of ``count_children()``, as OTP's: ``specs`` children in all, ``active`` of
    them running, ``supervisors`` and ``workers`` by kind (running or not)."""

    specs: int
    active: int
    supervisors: int
    workers: int

    def to_dict(self) -> dict[str, int]:
        """The counts as a dict."""
        return attrs.asdict(self)
