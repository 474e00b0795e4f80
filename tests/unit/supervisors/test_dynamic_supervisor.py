"""DynamicSupervisor: children of one template started on demand, restarted, reaped when idle."""

from typing import Any

import pytest
import trio

from steward_otp.supervisors import (
    ChildSpec,
    ChildStartError,
    DynamicSupervisor,
    NotRunning,
    Restart,
    Supervisor,
    UnknownChild,
    current_child,
)

from .probes import Boom, escalates, running, settle


class Publishers:
    """A template child like a publisher: started with (node, method), obeys commands,
    touches its handle on every message."""

    def __init__(self) -> None:
        self.started: list[tuple[str, str]] = []
        self.stopped: list[str] = []
        self.stopped_at: dict[str, float] = {}
        self.live = 0

    async def start(
        self, node: str, method: str, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED
    ) -> None:
        self.live += 1
        try:
            if node == "unreachable":
                raise Boom(f"cannot reach {node}")
            send, inbox = trio.open_memory_channel[str](8)
            me = current_child()
            task_status.started(send)
            self.started.append((node, method))
            async for message in inbox:
                me.touch()
                me.info["last"] = message
                if message == "crash":
                    raise Boom(f"{node}.{method} crashed")
                if message == "exit":
                    return
        except trio.Cancelled:
            self.stopped.append(f"{node}.{method}")
            self.stopped_at[f"{node}.{method}"] = trio.current_time()
            raise
        finally:
            self.live -= 1


def publishers(
    pubs: Publishers,
    *,
    restart: Restart = Restart.PERMANENT,
    idle_timeout: float | None = None,
    intensity: int = 3,
) -> DynamicSupervisor:
    return DynamicSupervisor(
        "publishers",
        ChildSpec("publisher", pubs.start, restart=restart),
        idle_timeout=idle_timeout,
        intensity=intensity,
    )


async def test_start_child_returns_once_ready_with_its_inbox(
    autojump_clock: trio.abc.Clock,
) -> None:
    pubs = Publishers()
    dyn = publishers(pubs)
    async with running(dyn) as registry:
        inbox = await dyn.start_child("ship1.REQCliCommand", "ship1", "REQCliCommand")
        assert pubs.started == [("ship1", "REQCliCommand")]
        assert dyn.whereis("ship1.REQCliCommand") is inbox
        assert registry.whereis("publishers/ship1.REQCliCommand") is inbox
        assert "ship1.REQCliCommand" in dyn
        assert dyn.whereis("ship2.REQCliCommand") is None


async def test_start_child_for_a_running_id_returns_the_existing_child(
    autojump_clock: trio.abc.Clock,
) -> None:
    pubs = Publishers()
    dyn = publishers(pubs)
    async with running(dyn):
        first = await dyn.start_child("ship1.m", "ship1", "m")
        again = await dyn.start_child("ship1.m", "other", "args")
        assert again is first
        assert pubs.started == [("ship1", "m")]
        assert dyn.count_children().active == 1


async def test_concurrent_start_child_for_one_id_starts_it_once(
    autojump_clock: trio.abc.Clock,
) -> None:
    pubs = Publishers()
    dyn = publishers(pubs)
    results: list[object] = []

    async def start() -> None:
        results.append(await dyn.start_child("ship1.m", "ship1", "m"))

    async with running(dyn):
        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(start)
        assert len(set(map(id, results))) == 1
        assert pubs.started == [("ship1", "m")]


async def test_terminate_child_stops_and_removes_it(autojump_clock: trio.abc.Clock) -> None:
    pubs = Publishers()
    dyn = publishers(pubs)
    async with running(dyn) as registry:
        await dyn.start_child("a", "a", "m")
        await dyn.start_child("b", "b", "m")
        await dyn.terminate_child("a")
        assert pubs.stopped == ["a.m"]
        assert [info.id for info in dyn.which_children()] == ["b"]
        assert "publishers/a" not in registry
        with pytest.raises(UnknownChild, match="has no child 'a'"):
            await dyn.terminate_child("a")


async def test_a_child_that_fails_to_start_is_not_kept(autojump_clock: trio.abc.Clock) -> None:
    pubs = Publishers()
    dyn = publishers(pubs, intensity=0)
    async with running(dyn):
        with pytest.raises(ChildStartError, match="cannot reach unreachable") as caught:
            await dyn.start_child("u", "unreachable", "m")
        assert isinstance(caught.value.__cause__, Boom)
        assert dyn.which_children() == []
        assert dyn.running  # start failures do not count against the intensity


async def test_a_crashed_child_is_restarted_with_the_same_arguments(
    autojump_clock: trio.abc.Clock,
) -> None:
    pubs = Publishers()
    dyn = publishers(pubs)
    async with running(dyn) as registry:
        first = await dyn.start_child("a", "a", "m")
        await registry.send("publishers/a", "crash")
        await settle()
        assert pubs.started == [("a", "m"), ("a", "m")]
        assert dyn.whereis("a") is not first
        assert dyn.snapshot().children[0].restart_count == 1


async def test_a_transient_child_that_exits_normally_is_removed(
    autojump_clock: trio.abc.Clock,
) -> None:
    pubs = Publishers()
    dyn = publishers(pubs, restart=Restart.TRANSIENT)
    async with running(dyn) as registry:
        await dyn.start_child("a", "a", "m")
        await registry.send("publishers/a", "exit")
        await settle()
        assert dyn.which_children() == []
        await dyn.start_child("a", "a", "m")  # and can be started again
        assert len(pubs.started) == 2


async def test_too_many_restarts_escalate(autojump_clock: trio.abc.Clock) -> None:
    pubs = Publishers()
    dyn = publishers(pubs, intensity=1)
    with escalates() as caught:
        async with running(dyn) as registry:
            await dyn.start_child("a", "a", "m")
            await dyn.start_child("b", "b", "m")
            await registry.send("publishers/a", "crash")
            await settle()
            await registry.send("publishers/b", "crash")
            await trio.sleep_forever()
    assert caught[0].child_path == "publishers/b"
    assert pubs.live == 0


async def test_idle_children_are_reaped_after_idle_timeout(autojump_clock: trio.abc.Clock) -> None:
    pubs = Publishers()
    dyn = publishers(pubs, idle_timeout=10.0)
    async with running(dyn) as registry:
        await dyn.start_child("quiet", "quiet", "m")
        await dyn.start_child("busy", "busy", "m")
        for _ in range(5):
            await trio.sleep(4.0)
            await registry.send("publishers/busy", "ping")
        # quiet was idle from t=0 and stopped at t=10; busy is touched every 4 s
        assert pubs.stopped == ["quiet.m"]
        assert pubs.stopped_at["quiet.m"] == 10.0
        assert [info.id for info in dyn.which_children()] == ["busy"]
        await trio.sleep(11.0)
        assert pubs.stopped == ["quiet.m", "busy.m"]
        assert pubs.stopped_at["busy.m"] == 30.0  # 10 s after its last message at t=20
        assert dyn.which_children() == []
        await dyn.start_child("quiet", "quiet", "m")  # on demand again after reaping
        assert dyn.count_children().active == 1


async def test_reaping_happens_exactly_at_the_idle_timeout(autojump_clock: trio.abc.Clock) -> None:
    pubs = Publishers()
    dyn = publishers(pubs, idle_timeout=7.0)
    async with running(dyn):
        await trio.sleep(3.0)
        await dyn.start_child("a", "a", "m")
        await trio.sleep(20.0)
        assert "a" not in dyn
        assert pubs.stopped_at["a.m"] == 3.0 + 7.0


async def test_operations_need_a_running_supervisor() -> None:
    dyn = publishers(Publishers())
    with pytest.raises(NotRunning, match="'publishers' is not running"):
        await dyn.start_child("a", "a", "m")
    with pytest.raises(NotRunning):
        await dyn.terminate_child("a")


async def test_invalid_child_ids_are_rejected(autojump_clock: trio.abc.Clock) -> None:
    dyn = publishers(Publishers())
    async with running(dyn):
        with pytest.raises(ValueError, match="child id must be a non-empty string"):
            await dyn.start_child("a/b", "a", "m")


async def test_under_a_parent_children_get_the_full_path(autojump_clock: trio.abc.Clock) -> None:
    pubs = Publishers()
    dyn = publishers(pubs)
    outbound = Supervisor("outbound", [dyn.child_spec()])
    async with running(outbound) as registry:
        await dyn.start_child("ship1.m", "ship1", "m")
        assert registry.paths() == ["outbound/publishers/ship1.m"]
        entry = outbound.snapshot().find("outbound/publishers/ship1.m")
        assert entry is not None and entry.state == "running"
        assert outbound.snapshot().children[0].strategy == "simple_one_for_one"


def test_idle_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="idle_timeout"):
        DynamicSupervisor("d", ChildSpec("t", Publishers().start), idle_timeout=0)
