"""OTP-style supervision trees on Trio: supervisors, restart strategies, intensity, shutdown
graces, a path registry and whole-tree snapshots.

A general library: it depends only on the standard library, ``trio`` and ``attrs``. The
semantics are described in ``docs/supervision.md``.
"""

from .child_spec import BRUTAL_KILL, BrutalKill, ChildKind, ChildSpec, Restart, StartFunction
from .dynamic_supervisor import DynamicSupervisor
from .errors import (
    AlreadyRegistered,
    ChildRunning,
    ChildStartError,
    DuplicateChild,
    NoProcess,
    NotRunning,
    SupervisionError,
    SupervisorEscalation,
    UnknownChild,
    describe_failure,
)
from .handle import ChildHandle, ChildInfo, current_child
from .intensity import RestartIntensity
from .registry import Registry
from .root import EXIT_ESCALATED, EXIT_OK, run_root
from .snapshot import ChildCounts, ChildState, FailureRecord, ProcessSnapshot
from .strategy import Strategy
from .supervisor import Supervisor

__all__ = [
    "BRUTAL_KILL",
    "EXIT_ESCALATED",
    "EXIT_OK",
    "AlreadyRegistered",
    "BrutalKill",
    "ChildCounts",
    "ChildHandle",
    "ChildInfo",
    "ChildKind",
    "ChildRunning",
    "ChildSpec",
    "ChildStartError",
    "ChildState",
    "DuplicateChild",
    "DynamicSupervisor",
    "FailureRecord",
    "NoProcess",
    "NotRunning",
    "ProcessSnapshot",
    "Registry",
    "Restart",
    "RestartIntensity",
    "StartFunction",
    "Strategy",
    "SupervisionError",
    "Supervisor",
    "SupervisorEscalation",
    "UnknownChild",
    "current_child",
    "describe_failure",
    "run_root",
]
