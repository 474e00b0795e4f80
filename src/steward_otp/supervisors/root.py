"""run_root: run a supervisor as the root of a process and turn its fate into an exit status."""

from __future__ import annotations

import logging
from typing import Any

import trio

from .dynamic_supervisor import DynamicSupervisor
from .errors import SupervisorEscalation
from .registry import Registry
from .supervisor import Supervisor

__all__ = ["EXIT_ESCALATED", "EXIT_OK", "run_root"]

logger = logging.getLogger(__name__)

EXIT_OK = 0
"""Exit status after a normal stop."""
EXIT_ESCALATED = 1
"""Exit status after the root supervisor gave up."""


async def run_root(
    root: Supervisor | DynamicSupervisor,
    *,
    registry: Registry | None = None,
    stop: trio.Event | None = None,
    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
) -> int:
    """Run ``root`` as the root of a supervision tree; return the process exit status.

    ``task_status`` is handed to the root: it reports started (with the root) once every
    initial child is ready, so a caller can learn when the whole tree is up.

    The tree runs until ``stop`` is set (then every process is stopped in reverse start
    order, each within its grace, and this returns ``0``) or until the root gives up. Then
    every process has already stopped; one line naming the failing path, its reason and the
    supervisors it escalated through is logged at CRITICAL on this module's logger, and
    this returns ``1``. Callers end the process with ``raise SystemExit(status)`` and leave
    restarting the whole process to their service manager.

    If ``stop`` is already set, nothing is started and this returns ``0``; set while the
    root is starting, the remaining starts are abandoned. On cancellation the tree is
    stopped as for ``stop`` and ``trio.Cancelled`` propagates.
    """
    if stop is not None and stop.is_set():
        await trio.lowlevel.checkpoint()
        return EXIT_OK
    escalation: SupervisorEscalation | None = None
    async with trio.open_nursery() as nursery:
        if stop is not None:
            nursery.start_soon(_stop_when_set, root, stop)
        try:
            await root.run(registry=registry, task_status=task_status)
        except SupervisorEscalation as exc:
            escalation = exc
        finally:
            nursery.cancel_scope.cancel()
    if escalation is None:
        return EXIT_OK
    logger.critical(
        "supervision tree %r stopped: %s; exiting with status %d",
        root.path,
        escalation.describe(),
        EXIT_ESCALATED,
    )
    return EXIT_ESCALATED


async def _stop_when_set(root: Supervisor | DynamicSupervisor, stop: trio.Event) -> None:
    await stop.wait()
    root.stop()
