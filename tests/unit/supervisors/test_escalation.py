"""Restart intensity, giving up, escalation through levels, and the root exit status."""

import logging
from typing import Any

import pytest
import trio

from steward_otp.supervisors import (
    ChildSpec,
    Restart,
    Supervisor,
    SupervisorEscalation,
    run_root,
)

from .probes import Boom, Journal, escalates, running, settle, spec, states


async def crash_repeatedly(registry: Any, path: str, times: int, every: float) -> None:
    for _ in range(times):
        await registry.send(path, "crash")
        await settle()
        await trio.sleep(every)


async def test_exceeding_the_intensity_stops_everything_and_escalates(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    sup = Supervisor("sup", [spec(journal, "a"), spec(journal, "b")], intensity=2, period=5.0)
    with escalates() as caught:
        async with running(sup) as registry:
            await crash_repeatedly(registry, "sup/b", times=3, every=1.0)
            await trio.sleep_forever()  # the escalation ends the block
    [escalation] = caught
    assert escalation.path == "sup"
    assert escalation.child_path == "sup/b"
    assert "more than 2 restarts in 5s" in escalation.reason
    assert isinstance(escalation.__cause__, Boom)
    assert journal.entries[-1] == "stop:a"
    assert journal.live == 0
    assert sup.state.value == "failed"
    assert states(sup) == {"a": "stopped", "b": "failed"}
    assert len(registry) == 0


async def test_restarts_spread_beyond_the_period_do_not_escalate(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    sup = Supervisor("sup", [spec(journal, "a")], intensity=1, period=5.0)
    async with running(sup) as registry:
        await crash_repeatedly(registry, "sup/a", times=6, every=5.5)
        assert states(sup) == {"a": "running"}
        assert sup.snapshot().children[0].restart_count == 6


async def test_intensity_is_per_supervisor_not_per_child(autojump_clock: trio.abc.Clock) -> None:
    journal = Journal()
    sup = Supervisor("sup", [spec(journal, "a"), spec(journal, "b")], intensity=1, period=5.0)
    with escalates() as caught:
        async with running(sup) as registry:
            await registry.send("sup/a", "crash")
            await settle()
            await registry.send("sup/b", "crash")
            await trio.sleep_forever()
    assert caught[0].child_path == "sup/b"


async def test_a_restart_that_fails_to_start_counts_against_intensity(
    autojump_clock: trio.abc.Clock,
) -> None:
    starts = 0

    async def flaky(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal starts
        starts += 1
        if starts > 1:
            raise Boom(f"start #{starts} failed")
        task_status.started()
        raise Boom("crashed after start")

    sup = Supervisor("sup", [ChildSpec("flaky", flaky)], intensity=3, period=5.0)
    with pytest.raises(SupervisorEscalation) as caught:
        await sup.run()
    # the crash, then 3 failed restarts: the 4th restart in 0 s is one too many
    assert starts == 4
    assert str(caught.value.__cause__) == "start #4 failed"


async def test_a_child_failing_its_initial_start_stops_the_started_ones_and_escalates(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    sup = Supervisor(
        "sup",
        [spec(journal, "a"), spec(journal, "bad", fail_start=True), spec(journal, "c")],
    )
    with pytest.raises(SupervisorEscalation) as caught:
        await sup.run()
    assert caught.value.child_path == "sup/bad"
    assert caught.value.reason.startswith("failed to start (Boom: bad cannot start)")
    assert journal.entries == ["start:a", "stop:a"]
    assert journal.live == 0


async def test_a_child_returning_before_started_is_a_start_failure() -> None:
    async def forgetful(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        return

    with pytest.raises(SupervisorEscalation) as caught:
        await Supervisor("sup", [ChildSpec("f", forgetful)]).run()
    assert "without calling task_status.started()" in caught.value.reason


def two_levels(journal: Journal) -> tuple[Supervisor, Supervisor]:
    inner = Supervisor("outbound", [spec(journal, "router")], intensity=0)
    root = Supervisor("node", [spec(journal, "store"), inner.child_spec()], intensity=0)
    return root, inner


async def test_escalation_through_two_levels_carries_the_cause_chain(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    root, _ = two_levels(journal)
    with escalates() as caught:
        async with running(root) as registry:
            await registry.send("node/outbound/router", "crash")
            await trio.sleep_forever()
    [outer] = caught
    assert (outer.path, outer.child_path) == ("node", "node/outbound")
    inner = outer.__cause__
    assert isinstance(inner, SupervisorEscalation)
    assert (inner.path, inner.child_path) == ("node/outbound", "node/outbound/router")
    assert isinstance(inner.__cause__, Boom)
    assert outer.chain == (outer, inner)
    assert outer.origin is inner
    assert outer.root_cause is inner.__cause__
    assert outer.describe() == (
        "'node/outbound/router' crashed (Boom: router was told to crash); "
        "more than 0 restarts in 5s; escalated through 'node/outbound' -> 'node'"
    )
    assert journal.live == 0


async def test_a_restarted_sub_supervisor_contains_the_failure(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    inner = Supervisor("outbound", [spec(journal, "router")], intensity=0)
    root = Supervisor("node", [spec(journal, "store"), inner.child_spec()], intensity=3)
    async with running(root) as registry:
        await registry.send("node/outbound/router", "crash")
        await settle()
        assert journal.of("start") == ["store", "router", "router"]
        [store, outbound] = root.snapshot().children
        assert (store.restart_count, outbound.restart_count) == (0, 1)
        assert outbound.last_failure is not None
        assert "gave up" in outbound.last_failure.reason
        assert outbound.children[0].state == "running"


async def test_run_root_returns_0_when_stopped_before_it_started(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    root = Supervisor("node", [spec(journal, "a"), spec(journal, "b")])
    stop = trio.Event()
    stop.set()
    assert await run_root(root, stop=stop) == 0
    assert journal.entries == []


async def test_run_root_stops_in_order_when_asked_while_running(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    root = Supervisor("node", [spec(journal, "a"), spec(journal, "b")])
    stop = trio.Event()
    status: list[int] = []

    async def run() -> None:
        status.append(await run_root(root, stop=stop))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        await settle()
        assert root.running
        stop.set()
    assert status == [0]
    assert journal.entries == ["start:a", "start:b", "stop:b", "stop:a"]


async def test_run_root_returns_1_and_logs_one_line_on_escalation(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    journal = Journal()
    root, _ = two_levels(journal)

    async def crash_router() -> None:
        await settle()
        assert root.registry is not None
        await root.registry.send("node/outbound/router", "crash")

    caplog.set_level(logging.INFO)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(crash_router)
        status = await run_root(root)
    assert status == 1
    lines = [r for r in caplog.records if r.name == "steward_otp.supervisors.root"]
    assert len(lines) == 1
    assert lines[0].levelno == logging.CRITICAL
    assert lines[0].getMessage() == (
        "supervision tree 'node' stopped: 'node/outbound/router' crashed "
        "(Boom: router was told to crash); more than 0 restarts in 5s; "
        "escalated through 'node/outbound' -> 'node'; exiting with status 1"
    )


async def test_permanent_child_exiting_normally_too_often_escalates_without_cause(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    sup = Supervisor("sup", [spec(journal, "p", restart=Restart.PERMANENT)], intensity=0)
    with escalates() as caught:
        async with running(sup) as registry:
            await registry.send("sup/p", "exit")
            await trio.sleep_forever()
    assert caught[0].__cause__ is None
    assert caught[0].reason == "exited; more than 0 restarts in 5s"
