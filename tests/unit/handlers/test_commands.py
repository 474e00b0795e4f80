"""Command methods: REQCliCommand and REQCliCommandCont, with harmless programs."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from steward_otp.handlers.base import HandlerError, ReplyTooLarge, sized_reply
from steward_otp.handlers.commands import cli_command, cli_command_cont
from steward_otp.message import check_wire
from steward_otp.node import Node
from tests.unit.handlers.fakes import FakeServices, context, request
from tests.unit.handlers.loopback_nodes import (
    LoopbackNet,
    file_text,
    message,
    subscriber_restarts,
    wait_for,
    wait_for_exact,
    wait_for_text,
)

# ----------------------------------------------------------------- the handlers, directly


async def test_cli_command_replies_with_stdout_and_runs_in_the_node_home(tmp_path: Path) -> None:
    services = FakeServices(tmp_path)
    msg = request("REQCliCommand", "sh", "-c", "echo hello; pwd")
    ctx = context(services, msg, seconds=10)
    assert await cli_command(ctx, msg) == f"hello\n{tmp_path}\n".encode()
    assert services.submitted == []
    assert services.reports == []


async def test_cli_command_puts_the_message_data_where_the_template_says(tmp_path: Path) -> None:
    services = FakeServices(tmp_path)
    msg = request(
        "REQCliCommand", "sh", "-c", 'printf "<%s>" "{{STEWARD_DATA}}"', data=b"from ship1"
    )
    assert await cli_command(context(services, msg), msg) == b"<from ship1>"


async def test_a_failing_command_sends_an_error_reply_and_still_its_stdout(tmp_path: Path) -> None:
    services = FakeServices(tmp_path)
    msg = request("REQCliCommand", "sh", "-c", "echo partial; echo oops >&2; exit 3")
    assert await cli_command(context(services, msg), msg) == b"partial\n"
    [error] = services.submitted
    assert error.to_node == "central" and error.file_name == "out.txt.error"
    assert error.data.decode() == (
        "error: methodREQCliCommand: cmd.Run failed : exit status 3, "
        "methodArgs: [sh -c echo partial; echo oops >&2; exit 3], error_output: oops\n"
    )
    assert services.reported("error") == [error.data.decode().removesuffix("\n")]


@pytest.mark.parametrize(
    ("script", "error_output"),
    [
        ("printf oops >&2; exit 1", "oops\n"),  # no newline of its own: one is added
        ("printf 'one\\ntwo\\n' >&2; exit 1", "one\ntwo\n"),
        ("printf 'gap\\n\\n' >&2; exit 1", "gap\n\n"),  # only stderr's last newline goes
        ("exit 1", "\n"),
    ],
)
async def test_a_failing_command_reply_ends_with_exactly_one_newline(
    tmp_path: Path, script: str, error_output: str
) -> None:
    services = FakeServices(tmp_path)
    msg = request("REQCliCommand", "sh", "-c", script)
    assert await cli_command(context(services, msg), msg) == b""
    [error] = services.submitted_data()
    assert error.decode().endswith(f"], error_output: {error_output}")


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        ((), 'field "methodArgs": value [] names no program; allowed: ['),
        (("",), "value [''] names no program"),
        (
            ("no-such-program-for-steward-tests",),
            "cmd.Run failed : No such file or directory, "
            "methodArgs: [no-such-program-for-steward-tests]",
        ),
        (("echo", "nul\0byte"), "cmd.Run failed : "),
    ],
)
async def test_a_command_that_cannot_start_is_a_handler_error(
    tmp_path: Path, args: tuple[str, ...], complaint: str
) -> None:
    services = FakeServices(tmp_path)
    msg = request("REQCliCommand", *args)
    with pytest.raises(HandlerError) as raised:
        await cli_command(context(services, msg), msg)
    assert complaint in str(raised.value)
    assert services.submitted == []


def process_state(pid: int) -> str:
    """The state letter of ``pid`` in /proc ("" when it is gone)."""
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
    except FileNotFoundError:
        return ""
    return stat.rpartition(")")[2].split()[0]


async def test_cancelling_a_command_kills_its_whole_process_group(tmp_path: Path) -> None:
    services = FakeServices(tmp_path)
    pid_file = tmp_path / "child.pid"
    msg = request("REQCliCommand", "sh", "-c", f"sleep 30 & echo $! > {pid_file}; wait")
    with trio.move_on_after(5) as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(cli_command, context(services, msg), msg)
            await wait_for(lambda: file_text(pid_file).strip().isdigit(), timeout=5)
            nursery.cancel_scope.cancel()  # what the subscriber does at the method timeout
    assert not scope.cancelled_caught
    child = int(file_text(pid_file))
    # The background sleep is killed too (gone, or a zombie nobody has reaped yet).
    await wait_for(lambda: process_state(child) in ("", "Z"), timeout=5)


async def test_cli_command_cont_replies_once_per_line(tmp_path: Path) -> None:
    services = FakeServices(tmp_path)
    msg = request(
        "REQCliCommandCont", "sh", "-c", r"printf 'one\ntwo\nlast'; printf 'warn\nend' >&2"
    )
    assert await cli_command_cont(context(services, msg), msg) is None
    replies = services.submitted_data()
    stdout = [d for d in replies if d not in (b"warn\n", b"end\n")]
    assert stdout == [b"one\n", b"two\n", b"last\n"]  # the last line gets its newline too
    # stderr lines, each with its newline, in their order.
    assert [d for d in replies if d in (b"warn\n", b"end\n")] == [b"warn\n", b"end\n"]
    assert {m.to_node for m in services.submitted} == {"central"}
    assert {m.file_name for m in services.submitted} == {"out.txt"}


async def test_cli_command_cont_sends_a_run_without_newline_in_pieces_of_max_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The line buffer is capped: output that never ends a line cannot grow it unbounded."""
    monkeypatch.setattr("steward_otp.handlers.tail.MAX_LINE", 4)
    services = FakeServices(tmp_path)
    msg = request("REQCliCommandCont", "sh", "-c", "printf abcdefghij")
    assert await cli_command_cont(context(services, msg), msg) is None
    assert services.submitted_data() == [b"abcd\n", b"efgh\n", b"ij\n"]


async def test_cli_command_cont_that_fails_is_a_handler_error_after_its_output(
    tmp_path: Path,
) -> None:
    services = FakeServices(tmp_path)
    msg = request("REQCliCommandCont", "sh", "-c", "echo before; exit 4")
    with pytest.raises(HandlerError) as raised:
        await cli_command_cont(context(services, msg), msg)
    assert str(raised.value) == "exit status 4, methodArgs: [sh -c echo before; exit 4]"
    assert services.submitted_data() == [b"before\n"]


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        ((), 'field "methodArgs": value [] names no program'),
        (("no-such-program-for-steward-tests",), "cmd.Start failed : No such file or directory"),
    ],
)
async def test_cli_command_cont_that_cannot_start_is_a_handler_error(
    tmp_path: Path, args: tuple[str, ...], complaint: str
) -> None:
    services = FakeServices(tmp_path)
    msg = request("REQCliCommandCont", *args)
    with pytest.raises(HandlerError) as raised:
        await cli_command_cont(context(services, msg), msg)
    assert str(raised.value).startswith(complaint)


# ----------------------------------------------------------------- two nodes, end to end


async def test_command_output_comes_back_to_the_requesting_node(
    net: LoopbackNet, pair: tuple[Node, Node]
) -> None:
    central, ship1 = pair
    out = net.result("out", "out.txt")
    async with central, ship1:
        await central.submit([message("REQCliCommand", ["echo", "giraff"])])
        await wait_for_exact(out, "giraff\n")
        await central.submit([message("REQCliCommand", ["sh", "-c", "echo sau >&2; exit 2"])])
        error = await wait_for_text(out.with_name("out.txt.error"), "exit status 2")
        assert "error_output: sau" in error
    assert not (net.result("out", "out.txt", on="ship1")).exists()


async def test_continuous_command_replies_line_by_line_to_the_requesting_node(
    net: LoopbackNet, pair: tuple[Node, Node]
) -> None:
    central, ship1 = pair
    out = net.result("out", "out.txt")
    script = "for i in 1 2 3; do echo line$i; done"
    async with central, ship1:
        await central.submit([message("REQCliCommandCont", ["sh", "-c", script])])
        await wait_for(lambda: len(file_text(out).splitlines()) == 3, timeout=10)
    # Each line is its own reply, delivered on its own: their order is not promised.
    assert sorted(file_text(out).splitlines()) == ["line1", "line2", "line3"]


async def test_a_command_without_a_program_is_an_error_reply_and_commands_still_run(
    net: LoopbackNet, pair: tuple[Node, Node]
) -> None:
    central, ship1 = pair
    out = net.result("out", "out.txt")
    async with central, ship1:
        await central.submit(
            [message("REQCliCommand", []), message("REQCliCommandCont", [], file_name="c.txt")]
        )
        error = await wait_for_text(out.with_name("out.txt.error"), "names no program")
        assert error == (
            'error: REQCliCommand: field "methodArgs": value [] names no '
            'program; allowed: ["program", "arg", ...], e.g. ["bash", "-c", "uptime"]\n'
        )
        await wait_for_text(out.with_name("c.txt.error"), "names no program")

        await central.submit([message("REQCliCommand", ["echo", "still serving"])])
        await wait_for_exact(out, "still serving\n")
        assert subscriber_restarts(ship1, "REQCliCommand") == 0
        assert subscriber_restarts(ship1, "REQCliCommandCont") == 0


async def test_a_command_past_its_method_timeout_is_an_error_reply_and_commands_still_run(
    net: LoopbackNet, pair: tuple[Node, Node]
) -> None:
    central, ship1 = pair
    out = net.result("out", "out.txt")
    async with central, ship1:
        await central.submit([message("REQCliCommand", ["sleep", "30"], method_timeout=1)])
        error = await wait_for_text(out.with_name("out.txt.error"), "method timed out")
        assert error == "error: REQCliCommand: method timed out: [sleep 30]\n"
        await central.submit([message("REQCliCommand", ["echo", "next"])])
        await wait_for_exact(out, "next\n")
        assert subscriber_restarts(ship1, "REQCliCommand") == 0


# ----------------------------------------------------------------- output too large for a reply


def test_a_reply_too_large_is_refused_with_its_size_and_what_to_do() -> None:
    msg = request("REQCliCommand", "true", reply_method="REQToFileAppend")
    with pytest.raises(ReplyTooLarge) as raised:
        sized_reply(msg, b"a" * 2_000_000)
    text = str(raised.value)
    assert text.startswith("the output is 2000000 bytes, more than one reply can carry (")
    assert "the broker's max_payload of 1048576 bytes less 4096" in text
    assert "to a file on the node" in text and "REQCopySrc" in text
    small = sized_reply(msg, b"a" * 1000)
    assert small is not None and small.data == b"a" * 1000


def test_an_error_reply_too_large_is_cut_to_fit_with_a_marker() -> None:
    msg = request("REQCliCommand", "true")
    reply = sized_reply(msg, b"e" * 3_000_000, error=True)
    assert reply is not None and reply.file_name == "out.txt.error"
    check_wire(reply)  # it fits
    assert reply.data.startswith(b"e" * 1_000_000)
    assert reply.data.endswith(
        b"\n\xe2\x80\xa6 [cut: the error text is 3000000 bytes, more than one message carries]\n"
    )


async def test_output_too_large_for_a_reply_is_an_error_reply_and_nothing_restarts(
    net: LoopbackNet, pair: tuple[Node, Node]
) -> None:
    central, ship1 = pair
    out = net.result("out", "out.txt")
    big = net.result("out", "big.txt")
    home = net.home("ship1")
    # Runs alongside the large one, until the test opens its gate; counts its runs.
    waiting = "echo run >> runs; while [ ! -e gate ]; do sleep 0.05; done; echo finished"
    async with central, ship1:
        await central.submit([message("REQCliCommand", ["bash", "-c", waiting])])
        await wait_for(lambda: file_text(home / "runs") == "run\n")

        large = "head -c 2000000 /dev/zero | tr '\\0' a"
        await central.submit([message("REQCliCommand", ["bash", "-c", large], file_name="big.txt")])
        error = await wait_for_text(big.with_name("big.txt.error"), "\n")
        assert error.startswith(
            "error: REQCliCommand: the output is 2000000 bytes, more than one reply can carry ("
        )
        assert "REQCopySrc" in error and error.count("\n") == 1
        assert not big.exists()  # no partial output passed on as if it were whole

        (home / "gate").touch()
        await wait_for_exact(out, "finished\n")
        assert file_text(home / "runs") == "run\n"  # it ran once: nothing was restarted
        assert subscriber_restarts(ship1, "REQCliCommand") == 0

        await central.submit([message("REQCliCommand", ["echo", "next"])])
        await wait_for_exact(out, "finished\nnext\n")
        await wait_for_text(net.error_log(), "error: REQCliCommand: the output is 2000000 bytes")


async def test_a_long_run_without_newline_arrives_whole_in_pieces_one_reply_carries(
    net: LoopbackNet, pair: tuple[Node, Node]
) -> None:
    # 2,000,000 bytes without a newline: more than MAX_LINE, and a MAX_LINE piece plus the
    # reply's other fields is more than the broker carries; the pieces are made to fit.
    central, ship1 = pair
    out = net.result("out", "out.txt")
    async with central, ship1:
        large = "echo first; head -c 2000000 /dev/zero | tr '\\0' a"
        await central.submit([message("REQCliCommandCont", ["bash", "-c", large])])
        await wait_for(lambda: file_text(out).count("a") == 2_000_000, timeout=30)
        pieces = file_text(out).splitlines()
        assert pieces[0] == "first" and len(pieces) >= 3
        assert all(set(piece) == {"a"} for piece in pieces[1:])
        assert not out.with_name("out.txt.error").exists()
        assert subscriber_restarts(ship1, "REQCliCommandCont") == 0
