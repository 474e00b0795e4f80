"""DynamicSupervisor: the idle reaper (every child stopped exactly when its idle time is up,
its work growing with the children that come due, not with all children) and start_children."""

from __future__ import annotations

import heapq
from typing import Any

import pytest
import trio

from steward_otp.supervisors import (
    ChildSpec,
    ChildStartError,
    DynamicSupervisor,
    NotRunning,
    Restart,
    current_child,
)
from steward_otp.supervisors import dynamic_supervisor as dynamic_module

from .probes import Boom, running, settle


class Workers:
    """Children that touch their handle on every message, crash on ``"crash"`` and take
    ``start_delay`` seconds to start when their name is ``"slow"``."""

    def __init__(self, start_delay: float = 0.0) -> None:
        self.start_delay = start_delay
        self.started: list[str] = []
        self.stopped_at: dict[str, list[float]] = {}

    async def start(
        self, name: str, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED
    ) -> None:
        if name == "slow":
            await trio.sleep(self.start_delay)
        send, inbox = trio.open_memory_channel[str](8)
        me = current_child()
        task_status.started(send)
        self.started.append(name)
        try:
            async for message in inbox:
                me.touch()
                if message == "crash":
                    raise Boom(f"{name} crashed")
        except trio.Cancelled:
            self.stopped_at.setdefault(name, []).append(trio.current_time())
            raise


def supervisor(workers: Workers, idle_timeout: float, **kwargs: Any) -> DynamicSupervisor:
    return DynamicSupervisor(
        "workers",
        ChildSpec("worker", workers.start, restart=kwargs.pop("restart", Restart.TRANSIENT)),
        idle_timeout=idle_timeout,
        **kwargs,
    )


class CountingHeap:
    """Stands in for the module's ``heapq``: counts the entries the reaper takes out."""

    def __init__(self) -> None:
        self.pops = 0

    def heappush(self, heap: list[Any], item: Any) -> None:
        heapq.heappush(heap, item)

    def heappop(self, heap: list[Any]) -> Any:
        self.pops += 1
        return heapq.heappop(heap)


async def test_each_child_is_reaped_exactly_when_its_own_idle_time_is_up(
    autojump_clock: trio.abc.Clock,
) -> None:
    workers = Workers()
    dyn = supervisor(workers, idle_timeout=20.0)
    async with running(dyn) as registry:
        for i in range(40):  # started at t = 0, 0.25, 0.5, ...
            await dyn.start_child(f"w{i}", f"w{i}")
            await trio.sleep(0.25)
        # t = 10: the even ones are touched now; the odd ones stay idle since their start
        for i in range(0, 40, 2):
            await registry.send(f"workers/w{i}", "ping")
        await settle()
        await trio.sleep(30.0)
        assert dyn.which_children() == []
    for i in range(40):
        expected = 30.0 if i % 2 == 0 else 0.25 * i + 20.0
        assert workers.stopped_at[f"w{i}"] == [pytest.approx(expected)], f"w{i}"


async def test_a_child_touched_while_the_reaper_waits_for_the_lock_is_not_reaped(
    autojump_clock: trio.abc.Clock,
) -> None:
    # "slow" holds the supervisor's lock from t=9.5 to t=10.5 while it starts; "a" comes
    # due at t=10, is touched at t=10.2, so it must live until t=20.2.
    workers = Workers(start_delay=1.0)
    dyn = supervisor(workers, idle_timeout=10.0)
    async with running(dyn) as registry:
        await dyn.start_child("a", "a")

        async def touch_a_at_10_2() -> None:
            await trio.sleep_until(10.2)
            await registry.send("workers/a", "ping")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(touch_a_at_10_2)
            await trio.sleep_until(9.5)
            await dyn.start_child("slow", "slow")
        assert trio.current_time() == pytest.approx(10.5)
        assert "a" in dyn
        await trio.sleep_until(30.0)
    assert workers.stopped_at["a"] == [pytest.approx(20.2)]
    assert workers.stopped_at["slow"] == [pytest.approx(20.5)]


async def test_a_restarted_child_gets_a_fresh_idle_deadline(
    autojump_clock: trio.abc.Clock,
) -> None:
    workers = Workers()
    dyn = supervisor(workers, idle_timeout=10.0, restart=Restart.PERMANENT)
    async with running(dyn) as registry:
        await dyn.start_child("a", "a")
        await trio.sleep(6.0)
        await registry.send("workers/a", "crash")  # restarted at t=6
        await settle()
        assert workers.started == ["a", "a"]
        await trio.sleep(9.0)
        assert "a" in dyn  # t=15: the first incarnation's deadline (10) does not count
        await trio.sleep(10.0)
        assert "a" not in dyn
    assert workers.stopped_at["a"] == [pytest.approx(16.0)]


async def test_a_child_started_again_after_reaping_is_reaped_again(
    autojump_clock: trio.abc.Clock,
) -> None:
    workers = Workers()
    dyn = supervisor(workers, idle_timeout=5.0)
    async with running(dyn):
        await dyn.start_child("a", "a")
        await trio.sleep(7.0)
        await dyn.start_child("a", "a")  # t=7, after its reaping at t=5
        await dyn.terminate_child("a")
        await dyn.start_child("a", "a")  # a stale entry of the terminated one must not count
        await trio.sleep(20.0)
    assert workers.stopped_at["a"] == [5.0, 7.0, 12.0]


async def test_starting_many_children_wakes_the_reaper_once(
    autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    counting = CountingHeap()
    monkeypatch.setattr(dynamic_module, "heapq", counting)
    wakeups = 0
    due_children = DynamicSupervisor._due_children

    def counted(self: DynamicSupervisor, now: float, idle_timeout: float) -> Any:
        nonlocal wakeups
        wakeups += 1
        return due_children(self, now, idle_timeout)

    monkeypatch.setattr(DynamicSupervisor, "_due_children", counted)
    workers = Workers()
    dyn = supervisor(workers, idle_timeout=60.0)
    async with running(dyn):
        for i in range(500):
            await dyn.start_child(f"w{i}", f"w{i}")
            await trio.sleep(0.01)
        # once at its start and once for the first child; no child was due yet
        assert wakeups <= 2
        assert counting.pops == 0
        await trio.sleep(70.0)
        assert dyn.which_children() == []
    assert counting.pops == 500  # each child's entry taken out once, when it came due


async def test_busy_children_cost_the_reaper_one_look_per_idle_period(
    autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 200 children touched every second for 60 s with a 10 s idle timeout: a reaper that
    # looked at every child whenever the earliest deadline passed would look at all 200
    # about every 1/200 s; the heap takes each child out once per 9 to 10 s (its deadline,
    # then its last touch plus the idle timeout), so at most 7 times in those 60 s.
    counting = CountingHeap()
    monkeypatch.setattr(dynamic_module, "heapq", counting)
    workers = Workers()
    dyn = supervisor(workers, idle_timeout=10.0)
    children = 200
    async with running(dyn) as registry:
        for i in range(children):
            await dyn.start_child(f"w{i}", f"w{i}")
            await trio.sleep(1.0 / children)
        for _ in range(60):
            for i in range(children):
                await registry.send(f"workers/w{i}", "ping")
            await trio.sleep(1.0)
        assert dyn.count_children().active == children
        assert not workers.stopped_at
        assert counting.pops <= children * 7
        await trio.sleep(11.0)
        assert dyn.which_children() == []


# ------------------------------------------------------------------ start_children


async def test_start_children_starts_them_together_and_returns_each_value(
    autojump_clock: trio.abc.Clock,
) -> None:
    workers = Workers(start_delay=1.0)
    dyn = supervisor(workers, idle_timeout=10.0)
    async with running(dyn) as registry:
        first = await dyn.start_child("a", "a")
        started_at = trio.current_time()
        values = await dyn.start_children(
            [("a", ("ignored",)), ("slow", ("slow",)), ("b", ("b",)), ("b", ("again",))]
        )
        assert trio.current_time() == started_at + 1.0  # "slow" took its 1 s, not more
        assert values["a"] is first  # running already: not started again
        assert values["b"] is registry.whereis("workers/b")
        assert values["slow"] is registry.whereis("workers/slow")
        assert workers.started == ["a", "b", "slow"]  # "b" once, "slow" when it was ready
        assert [info.id for info in dyn.which_children()] == ["a", "slow", "b"]
        await trio.sleep(20.0)
        assert dyn.which_children() == []  # all watched by the idle reaper
    assert workers.stopped_at == {"a": [10.0], "b": [10.0], "slow": [11.0]}  # idle from ready


async def test_start_children_returns_a_failed_start_and_keeps_the_others(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def start(name: str, task_status: trio.TaskStatus[Any]) -> None:
        if name == "bad":
            raise Boom("cannot start")
        task_status.started(name)
        await trio.sleep_forever()

    dyn = DynamicSupervisor("d", ChildSpec("t", start), intensity=0)
    async with running(dyn):
        values = await dyn.start_children([("x", ("x",)), ("bad", ("bad",)), ("y", ("y",))])
        assert values["x"] == "x" and values["y"] == "y"
        error = values["bad"]
        assert isinstance(error, ChildStartError)
        assert isinstance(error.__cause__, Boom)
        assert "bad" not in dyn
        assert [info.id for info in dyn.which_children()] == ["x", "y"]
        # not counted against the restart intensity (0 here): the supervisor runs on
        assert dyn.running


async def test_start_children_checks_every_id_before_starting_any(
    autojump_clock: trio.abc.Clock,
) -> None:
    workers = Workers()
    dyn = supervisor(workers, idle_timeout=10.0)
    async with running(dyn):
        with pytest.raises(ValueError, match="child id"):
            await dyn.start_children([("ok", ("ok",)), ("a/b", ("a/b",))])
        assert workers.started == []
        assert await dyn.start_children([]) == {}


async def test_start_children_needs_a_running_supervisor() -> None:
    dyn = supervisor(Workers(), idle_timeout=10.0)
    with pytest.raises(NotRunning):
        await dyn.start_children([("a", ("a",))])


async def test_a_child_whose_busy_says_so_is_kept_and_reaped_once_it_is_idle(
    autojump_clock: trio.abc.Clock,
) -> None:
    # No touch at all: "holder" only says it has work in hand until t=25.
    stopped: list[float] = []
    work_until = 25.0

    async def holder(task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        me = current_child()
        me.busy = lambda: trio.current_time() < work_until
        task_status.started()
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            stopped.append(trio.current_time())
            raise

    dyn = DynamicSupervisor(
        "holders", ChildSpec("holder", holder, restart=Restart.TRANSIENT), idle_timeout=10.0
    )
    async with running(dyn):
        await dyn.start_child("h")
        await trio.sleep(100.0)
        assert "h" not in dyn
    # Busy when the reaper looked at t=10 and t=20 (each counts as activity then); idle
    # at t=30, so reaped then -- within one idle period of its work ending.
    assert stopped == [pytest.approx(30.0)]
