"""Test children that record what happens to them, and helpers to run a supervisor."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import attrs
import trio
import trio.testing

from steward_otp.supervisors import (
    ChildSpec,
    DynamicSupervisor,
    Registry,
    StartFunction,
    Supervisor,
    SupervisorEscalation,
    current_child,
)

settle = trio.testing.wait_all_tasks_blocked
"""Let every task run until all are blocked: the supervisor has reacted to what we did."""


class Boom(Exception):
    """The crash our probes raise on command."""


@attrs.define
class Journal:
    """What happened to the probes, in order, plus how many probe tasks are alive."""

    entries: list[str] = attrs.Factory(list)
    live: int = 0
    times: dict[str, float] = attrs.Factory(dict)

    def record(self, entry: str) -> None:
        self.entries.append(entry)
        self.times[entry] = trio.current_time()

    def of(self, kind: str) -> list[str]:
        """Entries of one kind (``"start"``, ``"stop"``...), as the probe names."""
        return [e.split(":", 1)[1] for e in self.entries if e.startswith(kind + ":")]


def probe(
    journal: Journal,
    name: str,
    *,
    start_delay: float = 0.0,
    fail_start: bool = False,
    cleanup: float = 0.0,
) -> StartFunction:
    """A child that registers an inbox and obeys ``"crash"`` and ``"exit"`` messages.

    On cancellation it records ``stop:<name>`` and, with ``cleanup``, spends that long in
    its cleanup scope before recording ``cleaned:<name>``.
    """

    async def start(task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        journal.live += 1
        try:
            if start_delay:
                await trio.sleep(start_delay)
            if fail_start:
                raise Boom(f"{name} cannot start")
            send, inbox = trio.open_memory_channel[str](16)
            task_status.started(send)
            journal.record(f"start:{name}")
            async for command in inbox:
                if command == "crash":
                    journal.record(f"crash:{name}")
                    raise Boom(f"{name} was told to crash")
                if command == "exit":
                    journal.record(f"exit:{name}")
                    return
        except trio.Cancelled:
            journal.record(f"stop:{name}")
            if cleanup:
                with current_child().cleanup_scope():
                    await trio.sleep(cleanup)
                    journal.record(f"cleaned:{name}")
            raise
        finally:
            journal.live -= 1

    return start


def spec(journal: Journal, name: str, **kwargs: Any) -> ChildSpec:
    """A ChildSpec for a probe; ``restart``, ``shutdown`` and ``kind`` go to the spec."""
    spec_fields = {k: kwargs.pop(k) for k in ("restart", "shutdown", "kind") if k in kwargs}
    return ChildSpec(name, probe(journal, name, **kwargs), **spec_fields)


@asynccontextmanager
async def running(
    supervisor: Supervisor | DynamicSupervisor, registry: Registry | None = None
) -> AsyncIterator[Registry]:
    """Run ``supervisor`` in a nursery for the block; stop it at the end. Yields its registry."""
    async with trio.open_nursery() as nursery:
        await nursery.start(functools.partial(supervisor.run, registry=registry))
        assert supervisor.registry is not None
        yield supervisor.registry
        supervisor.stop()


def states(supervisor: Supervisor | DynamicSupervisor) -> dict[str, str]:
    """Child id -> state value, from which_children()."""
    return {info.id: info.state.value for info in supervisor.which_children()}


@contextmanager
def escalates() -> Iterator[list[SupervisorEscalation]]:
    """Expect the block to end with one SupervisorEscalation (bare or in exception groups
    from the nurseries around it); the list receives it."""
    caught: list[SupervisorEscalation] = []
    try:
        yield caught
    except SupervisorEscalation as exc:
        caught.append(exc)
    except BaseExceptionGroup as group:
        match, rest = group.split(SupervisorEscalation)
        if match is None or rest is not None:
            raise
        while isinstance(match, BaseExceptionGroup):
            assert len(match.exceptions) == 1, match
            match = match.exceptions[0]  # type: ignore[assignment]
        assert isinstance(match, SupervisorEscalation)
        caught.append(match)
    assert caught, "expected a SupervisorEscalation"
