"""The registry on its own, and as supervisors keep it up to date."""

from typing import Any

import pytest
import trio

from steward_otp.supervisors import (
    AlreadyRegistered,
    ChildSpec,
    NoProcess,
    Registry,
    Restart,
    Supervisor,
    current_child,
)

from .probes import Journal, escalates, running, settle, spec


def test_register_lookup_and_unregister() -> None:
    registry = Registry()
    send, _ = trio.open_memory_channel[Any](1)
    registry.register("node/a", send)
    registry.register("node/a", send)  # same inbox again: fine
    assert registry.lookup("node/a") is send
    assert registry.whereis("node/a") is send
    assert "node/a" in registry and len(registry) == 1
    assert registry.paths() == ["node/a"]
    other, _ = trio.open_memory_channel[Any](1)
    with pytest.raises(AlreadyRegistered, match="'node/a' is already registered"):
        registry.register("node/a", other)
    assert registry.unregister("node/a", other) is False  # not the registered one
    assert registry.unregister("node/a") is True
    assert registry.whereis("node/a") is None
    with pytest.raises(NoProcess, match="'node/a': no process is registered"):
        registry.lookup("node/a")


async def test_send_delivers_and_raises_no_process_when_nothing_listens() -> None:
    registry = Registry()
    send, receive = trio.open_memory_channel[Any](1)
    registry.register("p", send)
    await registry.send("p", "hello")
    assert receive.receive_nowait() == "hello"
    registry.send_nowait("p", "again")
    with pytest.raises(trio.WouldBlock):
        registry.send_nowait("p", "full")
    assert receive.receive_nowait() == "again"
    with pytest.raises(NoProcess):
        await registry.send("nobody", "hello")
    await receive.aclose()
    with pytest.raises(NoProcess, match="stopped receiving"):
        await registry.send("p", "hello")
    with pytest.raises(NoProcess, match="stopped receiving"):
        registry.send_nowait("p", "hello")


async def test_supervisor_replaces_the_entry_on_restart_and_removes_it_on_stop(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    registry = Registry()
    sup = Supervisor("node", [spec(journal, "a"), spec(journal, "t", restart=Restart.TRANSIENT)])
    async with running(sup, registry):
        before = registry.lookup("node/a")
        await registry.send("node/a", "crash")
        await settle()
        after = registry.lookup("node/a")
        assert after is not before
        assert sup.which_children()[0].handle is not None
        assert sup.which_children()[0].handle.inbox is after  # type: ignore[union-attr]
        await registry.send("node/t", "exit")
        await settle()
        assert "node/t" not in registry
    assert len(registry) == 0


async def test_a_child_without_an_inbox_is_not_registered(autojump_clock: trio.abc.Clock) -> None:
    async def no_inbox(task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started(42)
        await trio.sleep_forever()

    sup = Supervisor("node", [ChildSpec("n", no_inbox)])
    async with running(sup) as registry:
        assert len(registry) == 0
        [info] = sup.which_children()
        assert info.handle is not None and info.handle.value == 42


async def test_a_path_taken_by_someone_else_is_a_start_failure(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    registry = Registry()
    squatter, _ = trio.open_memory_channel[Any](1)
    registry.register("node/a", squatter)
    sup = Supervisor("node", [spec(journal, "a")])
    with escalates() as caught:
        await sup.run(registry=registry)
    assert "AlreadyRegistered" in caught[0].reason


async def test_children_reach_the_registry_through_their_handle(
    autojump_clock: trio.abc.Clock,
) -> None:
    got: list[str] = []

    async def echo(task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        send, inbox = trio.open_memory_channel[str](4)
        task_status.started(send)
        async for message in inbox:
            got.append(message)

    async def caller(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await current_child().registry.send("node/echo", "hi from caller")
        await trio.sleep_forever()

    sup = Supervisor("node", [ChildSpec("echo", echo), ChildSpec("caller", caller)])
    async with running(sup):
        await settle()
    assert got == ["hi from caller"]


async def test_a_sender_blocked_on_a_full_inbox_is_released_when_the_process_dies(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def deaf(task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        send, _inbox = trio.open_memory_channel[str](1)
        task_status.started(send)
        await trio.sleep(10.0)
        raise RuntimeError("gave up listening")

    sup = Supervisor("node", [ChildSpec("deaf", deaf, restart=Restart.TEMPORARY)])
    async with running(sup) as registry:
        stale = registry.lookup("node/deaf")
        await registry.send("node/deaf", "fills the inbox")
        with pytest.raises(NoProcess, match="stopped receiving"):
            await registry.send("node/deaf", "blocks until the process dies")
        assert trio.current_time() == 10.0
        with pytest.raises(trio.ClosedResourceError):
            stale.send_nowait("to a dead inbox")
