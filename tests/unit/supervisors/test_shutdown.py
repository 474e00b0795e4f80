"""Ordered start, reverse-order stop, shutdown graces and outside cancellation."""

import logging
import math
from typing import Any

import pytest
import trio

from steward_otp.supervisors import (
    BRUTAL_KILL,
    ChildSpec,
    Strategy,
    Supervisor,
    current_child,
)

from .probes import Journal, running, settle, spec


async def test_children_start_in_order_each_ready_before_the_next(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    sup = Supervisor(
        "sup",
        [
            spec(journal, "a", start_delay=1.0),
            spec(journal, "b", start_delay=2.0),
            spec(journal, "c"),
        ],
    )
    async with running(sup):
        assert journal.of("start") == ["a", "b", "c"]
        assert [journal.times[f"start:{n}"] for n in "abc"] == [1.0, 3.0, 3.0]


async def test_children_stop_in_reverse_start_order(autojump_clock: trio.abc.Clock) -> None:
    journal = Journal()
    sup = Supervisor("sup", [spec(journal, n, cleanup=1.0) for n in "abc"])
    async with running(sup):
        journal.entries.clear()
    assert journal.entries == [
        "stop:c",
        "cleaned:c",
        "stop:b",
        "cleaned:b",
        "stop:a",
        "cleaned:a",
    ]
    assert journal.live == 0


async def test_cleanup_that_fits_in_the_grace_completes(autojump_clock: trio.abc.Clock) -> None:
    journal = Journal()
    sup = Supervisor("sup", [spec(journal, "a", cleanup=2.0, shutdown=3.0)])
    async with running(sup):
        stopping_at = trio.current_time()
    assert journal.of("cleaned") == ["a"]
    assert trio.current_time() - stopping_at == 2.0


async def test_cleanup_longer_than_the_grace_is_cancelled_when_the_grace_ends(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    journal = Journal()
    sup = Supervisor("sup", [spec(journal, "a", cleanup=60.0, shutdown=3.0), spec(journal, "b")])
    async with running(sup):
        stopping_at = trio.current_time()
    assert journal.entries[-2:] == ["stop:b", "stop:a"]  # "cleaned:a" never came
    assert trio.current_time() - stopping_at == 3.0
    assert journal.live == 0
    assert "child sup/a did not stop within its shutdown grace of 3s" in caplog.text


async def test_brutal_kill_cancels_the_cleanup_at_once(autojump_clock: trio.abc.Clock) -> None:
    journal = Journal()
    sup = Supervisor("sup", [spec(journal, "a", cleanup=60.0, shutdown=BRUTAL_KILL)])
    async with running(sup):
        stopping_at = trio.current_time()
    assert journal.of("cleaned") == []
    assert trio.current_time() == stopping_at


async def test_infinite_grace_waits_for_the_whole_cleanup(autojump_clock: trio.abc.Clock) -> None:
    journal = Journal()
    sup = Supervisor("sup", [spec(journal, "a", cleanup=3600.0, shutdown=math.inf)])
    async with running(sup):
        stopping_at = trio.current_time()
    assert journal.of("cleaned") == ["a"]
    assert trio.current_time() - stopping_at == 3600.0


async def test_a_plain_shield_delays_shutdown_beyond_the_grace(
    autojump_clock: trio.abc.Clock,
) -> None:
    """The supervisor cannot pre-empt a task: a child's own shield is waited for."""
    done: list[float] = []

    async def stubborn(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(10.0)
                done.append(trio.current_time())

    sup = Supervisor("sup", [ChildSpec("s", stubborn, shutdown=1.0)])
    async with running(sup):
        pass
    assert done == [10.0]


async def test_stopping_state_is_visible_during_the_grace(autojump_clock: trio.abc.Clock) -> None:
    journal = Journal()
    sup = Supervisor("sup", [spec(journal, "a", cleanup=5.0, shutdown=10.0)])
    seen: list[str] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        sup.stop()
        await trio.sleep(1.0)
        seen.append(sup.which_children()[0].state.value)
        seen.append(sup.state.value)
    assert seen == ["stopping", "stopping"]
    assert sup.state.value == "stopped"


async def test_a_child_knows_it_is_being_stopped(autojump_clock: trio.abc.Clock) -> None:
    seen: list[bool] = []

    async def watcher(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        me = current_child()
        seen.append(me.stopping)
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            seen.append(me.stopping)

    async with running(Supervisor("sup", [ChildSpec("w", watcher)])):
        pass
    assert seen == [False, True]


async def test_outside_cancellation_stops_children_in_order_and_propagates(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    sup = Supervisor("sup", [spec(journal, n, cleanup=1.0) for n in "ab"])
    with trio.move_on_after(5.0) as scope:
        await sup.run()
    assert scope.cancelled_caught
    assert journal.entries == [
        "start:a",
        "start:b",
        "stop:b",
        "cleaned:b",
        "stop:a",
        "cleaned:a",
    ]
    assert trio.current_time() == 7.0


async def test_outside_cancellation_during_start_abandons_the_remaining_starts(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    sup = Supervisor("sup", [spec(journal, "a"), spec(journal, "slow", start_delay=10.0)])
    with trio.move_on_after(5.0):
        await sup.run()
    assert journal.entries == ["start:a", "stop:slow", "stop:a"]
    assert journal.live == 0


async def test_nested_supervisor_stops_its_children_first_in_the_global_reverse_order(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    inner = Supervisor("inner", [spec(journal, "x", cleanup=1.0), spec(journal, "y")])
    outer = Supervisor("outer", [spec(journal, "a"), inner.child_spec(), spec(journal, "b")])
    async with running(outer):
        assert journal.of("start") == ["a", "x", "y", "b"]
        journal.entries.clear()
    assert journal.entries == ["stop:b", "stop:y", "stop:x", "cleaned:x", "stop:a"]


async def test_a_sub_supervisor_hard_stop_reaches_its_children(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A sub-supervisor's grace bounds its whole subtree: when it ends, the children's
    cleanup scopes are cancelled too."""
    journal = Journal()
    inner = Supervisor("inner", [spec(journal, "x", cleanup=60.0, shutdown=30.0)])
    outer = Supervisor("outer", [inner.child_spec(shutdown=2.0)])
    async with running(outer):
        stopping_at = trio.current_time()
    assert journal.entries == ["start:x", "stop:x"]
    assert trio.current_time() - stopping_at == 2.0
    assert journal.live == 0


async def test_restart_of_one_for_all_group_respects_each_grace(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    sup = Supervisor(
        "sup",
        [spec(journal, "a", cleanup=60.0, shutdown=2.0), spec(journal, "b")],
        strategy=Strategy.ONE_FOR_ALL,
    )
    async with running(sup) as registry:
        crashed_at = trio.current_time()
        await registry.send("sup/b", "crash")
        await trio.sleep(10.0)
        assert journal.times["start:b"] - crashed_at == 2.0
        assert journal.of("start") == ["a", "b", "a", "b"]


async def test_stop_is_harmless_when_not_running() -> None:
    Supervisor("sup").stop()


async def test_an_object_runs_in_one_place_at_a_time(autojump_clock: trio.abc.Clock) -> None:
    sup = Supervisor("sup")
    async with running(sup):
        with pytest.raises(RuntimeError, match="already running"):
            await sup.run()


async def test_a_child_raising_while_stopping_is_logged_not_restarted(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    async def grumpy(task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            raise ValueError("cleanup failed")

    caplog.set_level(logging.WARNING)
    async with running(Supervisor("sup", [ChildSpec("g", grumpy)])):
        await settle()
    assert "child sup/g raised while stopping: ValueError: cleanup failed" in caplog.text
