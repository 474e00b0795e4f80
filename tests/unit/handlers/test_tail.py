"""REQTailFile: follow a file from its end, one reply per new line."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from steward_otp.handlers import tail as tail_module
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
        ((), 'field "methodArgs": value [] names no file; allowed: ["path"]'),
        (("",), "value [''] names no file"),
        (("missing.log",), "cannot follow '{home}/missing.log': No such file"),
        (
            (".",),
            "field \"methodArgs[0]\": value '.' ('{home}') is a directory, not a regular file; "
            'allowed: a path to a regular file, e.g. "/var/log/syslog"',
        ),
        (
            ("/dev/null",),
            "field \"methodArgs[0]\": value '/dev/null' is a character device, not a regular "
            "file; allowed: a path to a regular file",
        ),
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
    assert services.submitted == []


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("app\0.log", "it holds a NUL byte"),
        ("app\ud800.log", "it holds a character file names cannot hold"),
    ],
)
async def test_a_path_that_cannot_be_a_path_is_a_handler_error(
    tmp_path: Path, name: str, problem: str
) -> None:
    services = FakeServices(tmp_path)
    msg = request("REQTailFile", name)
    outcome: BaseException | bytes | None
    try:
        with trio.fail_after(5):
            outcome = await tail_file(context(services, msg, seconds=2), msg)
    except (HandlerError, ValueError) as exc:  # ValueError: what escaped before the fix
        outcome = exc
    assert isinstance(outcome, HandlerError), f"not a HandlerError: {outcome!r}"
    assert str(outcome) == (
        f'field "methodArgs[0]": value {name!r} is not a valid path ({problem}); '
        'allowed: a path to a regular file, e.g. "/var/log/syslog"'
    )
    assert services.submitted == []


async def test_a_fifo_is_refused_at_once_naming_it(tmp_path: Path) -> None:
    services = FakeServices(tmp_path)
    os.mkfifo(tmp_path / "app.fifo")
    msg = request("REQTailFile", "app.fifo")
    with trio.fail_after(5), pytest.raises(HandlerError) as raised:
        await tail_file(context(services, msg), msg)  # no method timeout at all
    assert str(raised.value) == (
        f"field \"methodArgs[0]\": value 'app.fifo' ({str(tmp_path / 'app.fifo')!r}) is a FIFO, "
        'not a regular file; allowed: a path to a regular file, e.g. "/var/log/syslog"'
    )


async def test_a_fifo_that_takes_the_files_place_ends_the_tail_with_a_handler_error(
    tmp_path: Path,
) -> None:
    services = FakeServices(tmp_path)
    log = tmp_path / "app.log"
    log.write_text("")
    msg = request("REQTailFile", str(log))

    def sent() -> str:
        return b"".join(services.submitted_data()).decode()

    errors: list[HandlerError] = []

    async def tail() -> None:
        try:
            await tail_file(context(services, msg), msg)  # no method timeout at all
        except HandlerError as exc:
            errors.append(exc)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(tail)
            await follow(log, sent)
            append(log, "last line\n")
            log.rename(tmp_path / "app.log.1")
            os.mkfifo(log)
    assert "last line\n" in sent()  # the rest of the old file first
    [error] = errors
    assert "is a FIFO, not a regular file" in str(error)


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


async def test_an_open_that_hangs_does_not_hold_up_the_method_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An open() stuck in the kernel (a dead network mount, say) is left behind."""
    services = FakeServices(tmp_path)
    release = threading.Event()
    real_open = tail_module._open_regular

    def hanging_open(path: Path) -> object:
        release.wait(10)
        return real_open(path)

    monkeypatch.setattr(tail_module, "_open_regular", hanging_open)
    log = tmp_path / "app.log"
    log.write_text("")
    msg = request("REQTailFile", str(log))
    try:
        with trio.fail_after(2):
            assert await tail_file(context(services, msg, seconds=0.3), msg) is None
    finally:
        release.set()
    assert services.reported("info") == [
        f"info: method timeout reached REQTailFile, canceling: [{log}] after 0 lines"
    ]


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
            f"error: REQTailFile: cannot follow {str(missing)!r}: No such file or directory\n"
        )
        await central.submit([message("REQTailFile", ["app\0.log"])])
        await wait_for_text(out.with_name("out.txt.error"), "(it holds a NUL byte)")
        await central.submit([message("REQTailFile", [str(log)])])
        await follow(log, lambda: file_text(out))
        assert subscriber_restarts(ship1, "REQTailFile") == 0
