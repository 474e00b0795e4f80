"""A live supervision tree against a plain-Python reference model of OTP semantics.

Hypothesis drives one ``Supervisor`` (random strategy, intensity, period and children of
random restart types) through random sequences of child crashes, normal exits, children
that hang on their next stop until their shutdown grace runs out, and the passing of time.
After every step the live tree (``which_children``, ``count_children``, ``snapshot``
restart counts, the registry, the Trio clock) must match the model; when the supervisor
gives up, the escalation must name the child the model says, and no child task may be
left running. Every example ends by stopping the tree and checking again for leaks.

How Trio is driven from a ``RuleBasedStateMachine``: each example runs one ``trio.run`` in
a background thread, with a ``MockClock`` that never moves by itself. Rules are ordinary
synchronous methods that hand one coroutine at a time to that run with
``trio.from_thread.run`` and wait for it, so the tree lives across rules and the steps are
strictly sequential. Each step ends by *settling* the tree: wait until every task is
blocked (``trio.testing.wait_all_tasks_blocked``); if a child is still stopping, the only
thing it can be waiting for is its shutdown grace, which started at the current instant,
so jump the clock by exactly that grace and settle again. Time therefore passes only in
the model's units (graces and the ``wait`` rule), and the model can predict the restart
intensity decisions exactly. No real sleeping is involved.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import attrs
import trio
import trio.testing
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from steward_otp.supervisors import (
    ChildSpec,
    ChildState,
    Registry,
    Restart,
    Strategy,
    Supervisor,
    SupervisorEscalation,
    current_child,
)
from steward_otp.supervisors.strategy import restart_group

GRACE = 1.0
"""Shutdown grace of every child."""
HANG = 1000.0
"""How long a hanging child would take to clean up; far beyond GRACE."""

T = TypeVar("T")


class Boom(Exception):
    """A child's crash."""


# --------------------------------------------------------------------- reference model


@attrs.define
class ModelChild:
    id: str
    restart: Restart
    running: bool = True
    hangs: bool = False
    restart_count: int = 0


@attrs.define
class Model:
    """OTP supervisor semantics in plain Python, with time as a number."""

    strategy: Strategy
    intensity: int
    period: float
    config: list[tuple[str, Restart]]
    children: list[ModelChild] = attrs.Factory(list)
    now: float = 0.0
    restarts: list[float] = attrs.Factory(list)
    alive: bool = True
    failed_child: str | None = None

    def start(self) -> None:
        self.children = [ModelChild(cid, restart) for cid, restart in self.config]
        self.restarts = []
        self.alive = True
        self.failed_child = None

    def find(self, cid: str) -> ModelChild:
        return next(child for child in self.children if child.id == cid)

    def stop(self, child: ModelChild) -> None:
        if child.running and child.hangs:
            self.now += GRACE  # the grace runs out, then its cleanup is cancelled
        child.running = False
        child.hangs = False

    def child_exits(self, cid: str, *, crashed: bool) -> None:
        child = self.find(cid)
        child.running = False
        child.hangs = False
        if not child.restart.restarts_after(crashed=crashed):
            if child.restart is Restart.TEMPORARY:
                self.children.remove(child)
            return
        self.restarts = [t for t in self.restarts if self.now - t <= self.period]
        self.restarts.append(self.now)
        if len(self.restarts) > self.intensity:
            for other in reversed(self.children):
                self.stop(other)
            self.alive = False
            self.failed_child = cid
            return
        group = restart_group(self.strategy, self.children, self.children.index(child))
        for other in reversed(group):
            if other is not child:
                self.stop(other)
        for other in group:
            if other.restart is Restart.TEMPORARY and other is not child:
                self.children.remove(other)
            else:
                other.running = True
                other.restart_count += 1

    def shutdown(self) -> None:
        for child in reversed(self.children):
            self.stop(child)


# --------------------------------------------------------------------- the live tree


@attrs.define
class Probes:
    live: int = 0


def probe(probes: Probes) -> Callable[..., Awaitable[None]]:
    async def start(task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        probes.live += 1
        hangs = False
        try:
            send, inbox = trio.open_memory_channel[str](math.inf)
            task_status.started(send)
            async for command in inbox:
                if command == "crash":
                    raise Boom("told to crash")
                if command == "exit":
                    return
                if command == "hang":
                    hangs = True
        except trio.Cancelled:
            if hangs:
                with current_child().cleanup_scope():
                    await trio.sleep(HANG)
            raise
        finally:
            probes.live -= 1

    return start


class LiveTree:
    """One trio.run in a background thread holding the supervisor under test."""

    def __init__(self, supervisor: Supervisor, probes: Probes) -> None:
        self.supervisor = supervisor
        self.probes = probes
        self.registry = Registry()
        self.clock = trio.testing.MockClock()
        self.escalation: SupervisorEscalation | None = None
        self.tree_running = False
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._finish: trio.Event | None = None
        self._ready = threading.Event()
        self._crash: BaseException | None = None
        self._thread = threading.Thread(target=self._thread_main, daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._crash is not None:
            raise self._crash

    def _thread_main(self) -> None:
        try:
            trio.run(self._main, clock=self.clock)
        except BaseException as exc:
            self._crash = exc
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._finish = trio.Event()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._ready.set()
            await self._finish.wait()
            nursery.cancel_scope.cancel()

    def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn()`` in the trio thread and return its result (or raise its error)."""
        if self._crash is not None:
            raise self._crash
        return trio.from_thread.run(fn, trio_token=self._token)

    def close(self) -> None:
        if self._finish is not None and self._crash is None and self._thread.is_alive():
            trio.from_thread.run_sync(self._finish.set, trio_token=self._token)
        self._thread.join(timeout=30)
        if self._crash is not None:
            raise self._crash

    async def _run_tree(self, task_status: trio.TaskStatus[None]) -> None:
        self.tree_running = True
        try:
            await self.supervisor.run(registry=self.registry, task_status=task_status)
        except SupervisorEscalation as exc:
            self.escalation = exc
        finally:
            self.tree_running = False

    async def start_tree(self) -> None:
        assert self._nursery is not None
        self.escalation = None
        await self._nursery.start(self._run_tree)
        await self.settle()

    async def send(self, cid: str, command: str) -> None:
        await self.registry.send(f"sup/{cid}", command)
        await self.settle()

    async def wait(self, seconds: float) -> None:
        self.clock.jump(seconds)
        await self.settle()

    async def stop_tree(self) -> None:
        self.supervisor.stop()
        await self.settle()

    def _busy(self) -> bool:
        if not self.tree_running:
            return False
        busy = {ChildState.STARTING, ChildState.STOPPING, ChildState.RESTARTING}
        return self.supervisor.state in busy or any(
            info.state in busy for info in self.supervisor.which_children()
        )

    async def settle(self) -> None:
        for _ in range(1000):
            await trio.testing.wait_all_tasks_blocked()
            if not self._busy():
                return
            # Blocked yet busy: a child is inside a shutdown grace that began just now.
            self.clock.jump(GRACE)
        raise AssertionError("the supervision tree never settled")

    async def observe(self) -> dict[str, Any]:
        snapshot = self.supervisor.snapshot()
        return {
            "now": trio.current_time(),
            "running": self.tree_running,
            "ids": [info.id for info in self.supervisor.which_children()],
            "states": [info.state.value for info in self.supervisor.which_children()],
            "restart_counts": [entry.restart_count for entry in snapshot.children],
            "active": self.supervisor.count_children().active,
            "live": self.probes.live,
            "registered": self.registry.paths(),
        }


# --------------------------------------------------------------------- the state machine


class SupervisionModel(RuleBasedStateMachine):
    """Random child events against a live Supervisor and the reference model."""

    def __init__(self) -> None:
        super().__init__()
        self.model: Model | None = None
        self.tree: LiveTree | None = None

    @initialize(
        strategy=st.sampled_from(Strategy),
        intensity=st.integers(0, 3),
        period=st.sampled_from([1.0, 2.0, 5.0]),
        restarts=st.lists(st.sampled_from(Restart), min_size=1, max_size=5),
    )
    def build(
        self, strategy: Strategy, intensity: int, period: float, restarts: list[Restart]
    ) -> None:
        config = [(f"c{i}", restart) for i, restart in enumerate(restarts)]
        probes = Probes()
        specs = [
            ChildSpec(cid, probe(probes), restart=restart, shutdown=GRACE)
            for cid, restart in config
        ]
        supervisor = Supervisor("sup", specs, strategy=strategy, intensity=intensity, period=period)
        self.model = Model(strategy, intensity, period, config)
        self.model.start()
        self.tree = LiveTree(supervisor, probes)
        self.tree.call(self.tree.start_tree)

    # -- helpers

    def _running_child(self, pick: int) -> str | None:
        assert self.model is not None
        running = [child.id for child in self.model.children if child.running]
        return running[pick % len(running)] if running else None

    def _alive(self) -> bool:
        return self.model is not None and self.model.alive

    def _has_running_child(self) -> bool:
        return self._alive() and any(c.running for c in self.model.children)  # type: ignore[union-attr]

    # -- rules

    @precondition(lambda self: self._has_running_child())
    @rule(pick=st.integers(0, 7))
    def crash(self, pick: int) -> None:
        assert self.model is not None and self.tree is not None
        cid = self._running_child(pick)
        assert cid is not None
        self.model.child_exits(cid, crashed=True)
        self.tree.call(lambda: self.tree.send(cid, "crash"))  # type: ignore[union-attr]

    @precondition(lambda self: self._has_running_child())
    @rule(pick=st.integers(0, 7))
    def exit_normally(self, pick: int) -> None:
        assert self.model is not None and self.tree is not None
        cid = self._running_child(pick)
        assert cid is not None
        self.model.child_exits(cid, crashed=False)
        self.tree.call(lambda: self.tree.send(cid, "exit"))  # type: ignore[union-attr]

    @precondition(lambda self: self._has_running_child())
    @rule(pick=st.integers(0, 7))
    def hang_on_next_stop(self, pick: int) -> None:
        """The child will ignore its next stop until the grace runs out."""
        assert self.model is not None and self.tree is not None
        cid = self._running_child(pick)
        assert cid is not None
        self.model.find(cid).hangs = True
        self.tree.call(lambda: self.tree.send(cid, "hang"))  # type: ignore[union-attr]

    @precondition(lambda self: self._alive())
    @rule(seconds=st.sampled_from([0.5, 1.0, 2.0, 5.0, 6.0]))
    def time_passes(self, seconds: float) -> None:
        assert self.model is not None and self.tree is not None
        self.model.now += seconds
        self.tree.call(lambda: self.tree.wait(seconds))  # type: ignore[union-attr]

    @precondition(lambda self: self.model is not None and not self.model.alive)
    @rule()
    def start_again(self) -> None:
        """After giving up, the same Supervisor object can run again from its specs."""
        assert self.model is not None and self.tree is not None
        self.model.start()
        self.tree.call(self.tree.start_tree)

    # -- checks

    @invariant()
    def tree_matches_model(self) -> None:
        if self.model is None or self.tree is None:
            return
        model = self.model
        seen = self.tree.call(self.tree.observe)
        assert seen["now"] == model.now
        assert seen["running"] is model.alive
        assert seen["ids"] == [child.id for child in model.children]
        if model.alive:
            assert seen["states"] == [
                "running" if child.running else "stopped" for child in model.children
            ]
            assert seen["restart_counts"] == [child.restart_count for child in model.children]
            running = [child for child in model.children if child.running]
            assert seen["active"] == len(running)
            assert seen["live"] == len(running)
            assert seen["registered"] == sorted(f"sup/{child.id}" for child in running)
        else:
            escalation = self.tree.escalation
            assert escalation is not None
            assert escalation.child_path == f"sup/{model.failed_child}"
            assert seen["states"] == [
                "failed" if child.id == model.failed_child else "stopped"
                for child in model.children
            ]
            assert seen["live"] == 0
            assert seen["registered"] == []

    def teardown(self) -> None:
        if self.tree is None:
            return
        try:
            if self.model is not None and self.model.alive:
                self.model.shutdown()
                self.tree.call(self.tree.stop_tree)
                seen = self.tree.call(self.tree.observe)
                assert seen["running"] is False
                assert seen["now"] == self.model.now
                assert seen["live"] == 0, "child tasks leaked past the supervisor's stop"
                assert seen["registered"] == []
        finally:
            self.tree.close()


SupervisionModel.TestCase.settings = settings(
    max_examples=75,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestSupervisionModel = SupervisionModel.TestCase
