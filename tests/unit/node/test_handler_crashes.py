"""A handler with a bug: the crashing run ends with an error reply and is counted; the
subscriber is not restarted, so its other runs are neither cancelled nor run twice."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from steward_otp.handlers import HandlerContext, handler
from steward_otp.inbound import handler_runs
from steward_otp.message import Message
from steward_otp.node import Node
from steward_otp.schedule import Schedule, message_schedule
from tests.unit.handlers.loopback_nodes import LoopbackNet, file_text, message, wait_for


@handler("REQBuggy", description="crashes on 'boom'; otherwise records its run")
async def buggy(ctx: HandlerContext, msg: Message) -> bytes | None:
    if msg.data == b"boom":
        raise ZeroDivisionError("bug in a handler")
    marker = Path(msg.method_args[0])
    with marker.open("a") as f:
        f.write("start\n")
    # In flight until the crash of the other run has been answered.
    crashed = Path(msg.method_args[1])
    with trio.fail_after(20):
        while not crashed.exists():
            await trio.sleep(0.02)
    with marker.open("a") as f:
        f.write("done\n")
    return b"slow run done\n"


async def test_a_crashing_run_ends_alone_and_the_other_runs_carry_on(tmp_path: Path) -> None:
    net = LoopbackNet(tmp_path)
    central = net.node("central", handlers=[buggy], is_central_error_logger=True)
    ship1 = net.node("ship1", handlers=[buggy])
    marker = tmp_path / "runs.txt"
    error_reply = net.result("out", "out.txt.error")
    async with central, ship1:
        await central.submit([message("REQBuggy", [str(marker), str(error_reply)])])
        await wait_for(lambda: file_text(marker) == "start\n")
        await central.submit([message("REQBuggy", ["-", "-"], data=b"boom")])

        await wait_for(lambda: file_text(net.result("out", "out.txt")) == "slow run done\n")
        entry = ship1.snapshot().find("node/inbound/REQBuggy")
        assert entry is not None
        assert entry.restart_count == 0 and entry.last_failure is None
        assert entry.info["handler_crashes"] == 1
        assert "ZeroDivisionError('bug in a handler')" in entry.info["last_handler_crash"]
    assert "handler crashed: ZeroDivisionError" in file_text(error_reply)
    assert file_text(marker) == "start\ndone\n"  # the slow run ran once, to its end


@handler("REQQuickBug", quick=True, description="a quick handler that crashes on 'boom'")
async def quick_bug(ctx: HandlerContext, msg: Message) -> bytes | None:
    if msg.data == b"boom":
        raise KeyError("bug in a quick handler")
    return b"ok\n"


async def test_a_quick_handler_crash_is_counted_and_its_batch_mates_finish(
    tmp_path: Path,
) -> None:
    net = LoopbackNet(tmp_path)
    central = net.node("central", handlers=[quick_bug], is_central_error_logger=True)
    ship1 = net.node("ship1", handlers=[quick_bug])
    async with central, ship1:
        data = [b"a", b"boom", b"b"]
        await central.submit([message("REQQuickBug", data=d) for d in data])
        await wait_for(lambda: file_text(net.result("out", "out.txt")) == "ok\nok\n")
        await wait_for(lambda: "KeyError" in file_text(net.result("out", "out.txt.error")))
        entry = ship1.snapshot().find("node/inbound/REQQuickBug")
        assert entry is not None and entry.restart_count == 0
        assert entry.info["handler_crashes"] == 1


async def test_a_reply_that_cannot_be_sent_does_not_keep_its_batch_mates_replies(
    tmp_path: Path,
) -> None:
    net = LoopbackNet(tmp_path)
    central = net.node("central", handlers=[quick_bug], is_central_error_logger=True)
    ship1 = net.node("ship1", handlers=[quick_bug])
    async with central, ship1:
        batch = [
            message("REQQuickBug", data=b"a"),
            # A retired Steward method: no node serves it, so ship1 refuses to route it.
            message("REQQuickBug", data=b"b", reply_method="REQTuiToConsole"),
            message("REQQuickBug", data=b"c"),
        ]
        await central.submit(batch)
        await wait_for(lambda: file_text(net.result("out", "out.txt")) == "ok\nok\n")
        await wait_for(lambda: "reply not sent" in file_text(net.error_log()))
    assert "REQTuiToConsole" in file_text(net.error_log())


@handler("REQPlainEcho", description="replies with its data (not quick: a task per run)")
async def plain_echo(ctx: HandlerContext, msg: Message) -> bytes | None:
    return msg.data


async def test_a_failure_on_the_way_to_the_handler_ends_that_run_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = message_schedule

    def failing(message: Message) -> Schedule | None:
        if message.data == b"poison\n":
            raise RuntimeError("bug before the handler")
        return real(message)

    monkeypatch.setattr(handler_runs, "message_schedule", failing)
    net = LoopbackNet(tmp_path)
    central = net.node("central", handlers=[plain_echo], is_central_error_logger=True)
    ship1 = net.node("ship1", handlers=[plain_echo])
    async with central, ship1:
        await central.submit([message("REQPlainEcho", data=b"poison\n")])
        await wait_for(lambda: _crashes(ship1, "REQPlainEcho") == 1)
        await central.submit([message("REQPlainEcho", data=b"good\n")])
        await wait_for(lambda: file_text(net.result("out", "out.txt")) == "good\n")
        entry = ship1.snapshot().find("node/inbound/REQPlainEcho")
        assert entry is not None and entry.restart_count == 0 and entry.last_failure is None
        assert "bug before the handler" in str(entry.info["last_handler_crash"])
        # Stored as done: the node would not run it again at its next start.
        assert await ship1.store.unfinished_inbound() == []


def _crashes(node: Node, method: str) -> int:
    entry = node.snapshot().find(f"node/inbound/{method}")
    return 0 if entry is None else int(entry.info.get("handler_crashes", 0))
