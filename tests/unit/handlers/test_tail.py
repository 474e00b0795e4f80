"""REQTailFile: follow a file from its end, one reply per new line."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from steward_otp.handlers.base import HandlerError
from steward_otp.handlers.tail import tail_file
from steward_otp.node import Node
from tests.unit.handlers.fakes import FakeServices, context, request
from tests.unit.handlers.loopback_nodes import (
    LoopbackNet,
    file_text,
    message,
    subscriber_restarts,
    wait_for,
    wait_for_text,
)


def append(path: Path, text: str) -> None:
    with path.open("a") as f:
        f.write(text)


async def follow(path: Path, received: Callable[[], str], timeout: float = 10.0) -> None:
    """Append marker lines to ``path`` until one is seen: then the tail surely reads it.

    ``received()`` returns what the tail has sent so far, as text.
    """
    with trio.fail_after(timeout):
        for i in range(10_000):
            append(path, f"marker {i}\n")
            with trio.move_on_after(0.3):
                await wait_for(lambda: "marker" in received(), timeout=timeout)
                return


# ----------------------------------------------------------------- the handler, directly


async def test_tail_replies_with_each_new_line_and_not_the_old_ones(tmp_path: Path) -> None:
    services = FakeServices(tmp_path)
    log = tmp_path / "app.log"
    log.write_text("old line, written before the tail started\n")
    msg = request("REQTailFile", "app.log")  # relative: against the node's home

    def sent() -> str:
        return b"".join(services.submitted_data()).decode()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(tail_file, context(services, msg), msg)
        await follow(log, sent)
        append(log, "first new line\nsecond ")
        await wait_for(lambda: "first new line\n" in sent(), timeout=10)
        append(log, "half\n")
        await wait_for(lambda: "second half\n" in sent(), timeout=10)
        nursery.cancel_scope.cancel()
    assert "old line" not in sent()
    lines = [d for d in services.submitted_data() if not d.startswith(b"marker")]
    assert lines == [b"first new line\n", b"second half\n"]
    assert {(m.to_node, m.file_name) for m in services.submitted} == {("central", "out.txt")}


async def test_tail_ends_normally_at_the_method_timeout_with_an_info_line(tmp_path: Path) -> None:
    services = FakeServices(tmp_path)
    log = tmp_path / "quiet.log"
    log.write_text("")
    msg = request("REQTailFile", str(log))
    with trio.fail_after(5):
        assert await tail_file(context(services, msg, seconds=0.3), msg) is None
    assert services.reported("info") == [
        f"info: method timeout reached REQTailFile, canceling: [{log}] after 0 lines"
    ]
    assert services.submitted == []


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        ((), 'methodREQTailFile: field "methodArgs": value [] names no file; allowed: ["path"]'),
        (("",), "value [''] names no file"),
        (("missing.log",), "methodREQTailFile: cannot follow '{home}/missing.log': No such file"),
        ((".",), "methodREQTailFile: cannot follow '{home}': Is a directory"),
    ],
)
async def test_tail_without_a_readable_file_is_a_handler_error(
    tmp_path: Path, args: tuple[str, ...], complaint: str
) -> None:
    services = FakeServices(tmp_path)
    msg = request("REQTailFile", *args)
    with trio.fail_after(5), pytest.raises(HandlerError) as raised:
        await tail_file(context(services, msg, seconds=2), msg)
    assert complaint.format(home=tmp_path) in str(raised.value)


@pytest.mark.xfail(
    strict=True,
    reason="BUG src/steward_otp/handlers/tail.py:176 (tail_file) turns only OSError into "
    "HandlerError; a NUL byte in methodArgs[0] makes open() raise ValueError('embedded null "
    "byte'), which escapes: the handler crashes and its subscriber restarts (cancelling every "
    "tail it runs). REQCliCommand and the file writer handle the same case.",
)
async def test_a_path_with_a_nul_byte_is_a_handler_error(tmp_path: Path) -> None:
    services = FakeServices(tmp_path)
    msg = request("REQTailFile", "app\0.log")
    outcome: BaseException | bytes | None
    try:
        with trio.fail_after(5):
            outcome = await tail_file(context(services, msg, seconds=2), msg)
    except (HandlerError, ValueError) as exc:  # ValueError: what escapes today
        outcome = exc
    assert isinstance(outcome, HandlerError), f"not a HandlerError: {outcome!r}"
    assert "methodREQTailFile: cannot follow" in str(outcome)


@pytest.mark.xfail(
    strict=True,
    reason="BUG src/steward_otp/handlers/tail.py:81 (_open) opens the file in a worker thread "
    "that cannot be cancelled: on a FIFO (or anything whose open() blocks) the handler "
    "ignores its methodTimeout and cancellation until a writer appears -- possibly never, "
    "which also holds up stopping the subscriber and the node.",
)
async def test_a_tail_whose_open_blocks_still_ends_at_the_method_timeout(tmp_path: Path) -> None:
    services = FakeServices(tmp_path)
    fifo = tmp_path / "app.fifo"
    os.mkfifo(fifo)
    msg = request("REQTailFile", str(fifo))
    start = trio.current_time()
    ended: list[float] = []

    async def tail() -> None:
        with contextlib.suppress(HandlerError):
            await tail_file(context(services, msg, seconds=0.3), msg)
        ended.append(trio.current_time() - start)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(tail)
        with trio.move_on_after(1.5):
            await wait_for(lambda: bool(ended), timeout=1.5)
        # Whatever still waits in open() (the handler, or a thread it left behind) is let go
        # by a writer; ENXIO: no reader waits.
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert ended[0] < 1.0, f"the tail ended {ended[0]:.1f} s after it started (timeout 0.3 s)"


# ----------------------------------------------------------------- two nodes, end to end


async def test_tailed_lines_come_back_to_the_requesting_node(
    net: LoopbackNet, pair: tuple[Node, Node]
) -> None:
    central, ship1 = pair
    log = net.base / "app.log"
    log.write_text("old\n")
    out = net.result("tail", "app.log")
    async with central, ship1:
        await central.submit(
            [message("REQTailFile", [str(log)], directory="tail", file_name="app.log")]
        )
        await follow(log, lambda: file_text(out))
        append(log, "new line\n")
        await wait_for_text(out, "new line\n")
        # logrotate's default: renamed away, a new file in its place.
        log.rename(log.with_name("app.log.1"))
        log.write_text("in the new file\n")
        await wait_for_text(out, "in the new file\n")
    assert "old" not in file_text(out).splitlines()


async def test_tailing_a_missing_file_is_an_error_reply_and_tails_still_work(
    net: LoopbackNet, pair: tuple[Node, Node]
) -> None:
    central, ship1 = pair
    missing = net.base / "no-such.log"
    log = net.base / "there.log"
    log.write_text("")
    out = net.result("out", "out.txt")
    async with central, ship1:
        await central.submit([message("REQTailFile", [str(missing)])])
        error = await wait_for_text(out.with_name("out.txt.error"), "cannot follow")
        assert error == (
            f"error: REQTailFile: methodREQTailFile: cannot follow {str(missing)!r}: "
            "No such file or directory\n"
        )
        await central.submit([message("REQTailFile", [str(log)])])
        await follow(log, lambda: file_text(out))
        assert subscriber_restarts(ship1, "REQTailFile") == 0
