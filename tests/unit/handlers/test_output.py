"""Output methods: REQToFileAppend, REQToFile, REQToFileNACK, REQToConsole, REQErrorLog."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from steward_otp.handlers.base import Handler, HandlerContext, HandlerError, handler
from steward_otp.handlers.output import (
    error_log,
    to_console,
    to_file,
    to_file_append,
    to_file_nack,
    write_batch,
)
from steward_otp.handlers.paths import UnsafePath
from steward_otp.message import Message
from steward_otp.methods import EventKind
from steward_otp.node import Node
from tests.unit.handlers.fakes import FakeServices, Write, context, request
from tests.unit.handlers.loopback_nodes import (
    LoopbackNet,
    file_text,
    message,
    subscriber_restarts,
    wait_for,
    wait_for_exact,
)

# ----------------------------------------------------------------- the handlers, directly


async def test_to_file_append_appends_under_data_directory_node_file(tmp_path: Path) -> None:
    services = FakeServices(tmp_path)
    target = tmp_path / "data" / "out" / "ship1" / "out.txt"
    for line in (b"one\n", b"two\n"):
        msg = request("REQToFileAppend", data=line)
        assert await to_file_append(context(services, msg), msg) is None
    assert services.writes == [Write(target, b"one\n", True), Write(target, b"two\n", True)]
    assert services.files[target] == b"one\ntwo\n"
    assert services.submitted == []


@pytest.mark.parametrize("handler", [to_file, to_file_nack])
async def test_to_file_and_its_nack_twin_replace_the_file(tmp_path: Path, handler: Handler) -> None:
    services = FakeServices(tmp_path)
    target = tmp_path / "data" / "out" / "ship1" / "out.txt"
    for data in (b"first\n", b"second\n"):
        msg = request("REQToFile", data=data)
        assert await handler(context(services, msg), msg) is None
    assert services.files[target] == b"second\n"
    assert [w.append for w in services.writes] == [False, False]


def test_only_the_nack_twin_is_on_a_nack_subject() -> None:
    assert to_file_nack.method.kind is EventKind("EventNACK")
    assert to_file.method.kind is EventKind("EventACK")
    assert all(h.method.quick and h.method.reply_capable for h in (to_file, to_file_nack))


async def test_a_reply_is_written_where_its_request_said_under_the_node_that_ran_it(
    tmp_path: Path,
) -> None:
    services = FakeServices(tmp_path, node_name="central")
    asked = request("REQCliCommand", directory="cli/results", file_name="uptime.txt")
    reply = Message(
        id="ship1:r1",
        to_node="central",
        from_node="ship1",
        method="REQToFileAppend",
        data=b"up 3 days\n",
        is_reply=True,
        previous_message=asked,
    )
    await to_file_append(context(services, reply), reply)
    assert services.files == {tmp_path / "data/cli/results/ship1/uptime.txt": b"up 3 days\n"}


async def test_dot_slash_directory_is_under_home_and_absolute_is_as_given(tmp_path: Path) -> None:
    services = FakeServices(tmp_path)
    relative = request("REQToFile", directory="./logs", data=b"r")
    absolute = request("REQToFile", directory=str(tmp_path / "abs"), data=b"a")
    await to_file(context(services, relative), relative)
    await to_file(context(services, absolute), absolute)
    assert services.files == {tmp_path / "logs/out.txt": b"r", tmp_path / "abs/out.txt": b"a"}


async def test_to_console_prints_the_data_on_stdout_or_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    services = FakeServices(tmp_path)
    out = request("REQToConsole", data=b"to stdout")
    err = request("REQToConsole", "stderr", data=b"to stderr \xff")
    assert await to_console(context(services, out), out) is None
    assert await to_console(context(services, err), err) is None
    captured = capsys.readouterr()
    assert captured.out == "to stdout\n"
    assert captured.err == "to stderr \ufffd\n"
    assert services.writes == []


async def test_error_log_appends_the_line(tmp_path: Path) -> None:
    services = FakeServices(tmp_path, node_name="central")
    msg = request(
        "REQErrorLog",
        to_node="errorCentral",
        directory="errorLog",
        file_name="error.log",
        data=b"a line\n",
        reply_method="REQNone",
    )
    await error_log(context(services, msg), msg)
    await error_log(context(services, msg), msg)
    assert services.files == {
        tmp_path / "data/errorLog/errorCentral/error.log": b"a line\na line\n"
    }


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"directory": "../outside"}, 'field "directory": value \'../outside\' contains ".."'),
        ({"directory": "./a/../../b"}, 'contains ".."'),
        ({"file_name": "a/b.txt"}, "field \"fileName\": value 'a/b.txt' is not a plain file name"),
        ({"file_name": ""}, "field \"fileName\": value ''"),
    ],
)
async def test_an_unsafe_path_is_refused_before_anything_is_written(
    tmp_path: Path, fields: dict[str, str], complaint: str
) -> None:
    services = FakeServices(tmp_path)
    msg = request("REQToFileAppend", data=b"x", **fields)
    with pytest.raises(UnsafePath) as raised:
        await to_file_append(context(services, msg), msg)
    assert isinstance(raised.value, HandlerError)
    assert complaint in str(raised.value)
    assert services.writes == []


async def test_a_failed_write_is_a_handler_error_naming_the_path_and_the_reason(
    tmp_path: Path,
) -> None:
    services = FakeServices(tmp_path, write_error=OSError(errno.ENOSPC, "No space left on device"))
    msg = request("REQToFile", data=b"x")
    with pytest.raises(HandlerError) as raised:
        await to_file(context(services, msg), msg)
    target = tmp_path / "data" / "out" / "ship1" / "out.txt"
    assert str(raised.value) == f"cannot write {target}: No space left on device"


# ----------------------------------------------------------------- two nodes, end to end


async def test_output_methods_write_on_the_node_they_are_sent_to(
    net: LoopbackNet, pair: tuple[Node, Node], capsys: pytest.CaptureFixture[str]
) -> None:
    central, ship1 = pair
    appended = net.result("out", "out.txt", on="ship1")
    replaced = net.result("out", "latest.txt", on="ship1")
    nacked = net.result("out", "nack.txt", on="ship1")
    async with central, ship1:
        quiet = {"reply_method": "REQNone"}
        await central.submit(
            [message("REQToFileAppend", data=f"{i}\n".encode(), **quiet) for i in range(3)]
        )
        await central.submit([message("REQToFile", data=b"v1\n", file_name="latest.txt", **quiet)])
        await wait_for(lambda: file_text(replaced) == "v1\n", timeout=10)
        await central.submit([message("REQToFile", data=b"v2\n", file_name="latest.txt", **quiet)])
        # REQToFileNACK goes out without waiting for an ACK (ACKTimeout 0) on its NACK subject.
        await central.submit(
            [message("REQToFileNACK", data=b"nack\n", file_name="nack.txt", ack_timeout=0)]
        )
        await central.submit([message("REQToConsole", data=b"hello console", **quiet)])
        await wait_for(lambda: sorted(file_text(appended).split()) == ["0", "1", "2"], timeout=10)
        await wait_for(lambda: file_text(replaced) == "v2\n", timeout=10)
        await wait_for(lambda: file_text(nacked) == "nack\n", timeout=10)
        printed: list[str] = []

        def console_shows_it() -> bool:
            printed.append(capsys.readouterr().out)
            return "hello console\n" in "".join(printed)

        await wait_for(console_shows_it, timeout=10)


async def test_output_methods_write_replies_on_the_requesting_node(
    net: LoopbackNet, pair: tuple[Node, Node]
) -> None:
    central, ship1 = pair
    replaced = net.result("out", "out.txt")
    async with central, ship1:
        for word in ("first", "second"):
            await central.submit(
                [message("REQCliCommand", ["echo", word], reply_method="REQToFile")]
            )
            await wait_for_exact(replaced, f"{word}\n")
        await central.submit(
            [message("REQCliCommand", ["echo", "nack"], reply_method="REQToFileNACK")]
        )
        await wait_for_exact(replaced, "nack\n")


async def test_error_log_lines_from_a_node_reach_the_central_log(
    net: LoopbackNet, pair: tuple[Node, Node]
) -> None:
    central, ship1 = pair
    async with central, ship1:
        await ship1.submit(
            [
                Message(
                    to_node="errorCentral",
                    method="REQErrorLog",
                    directory="errorLog",
                    file_name="error.log",
                    data=b"ship1 says something went wrong\n",
                    ack_timeout=2,
                    retries=3,
                    reply_method="REQNone",
                )
            ]
        )
        await wait_for(
            lambda: "ship1 says something went wrong\n" in file_text(net.error_log()), timeout=10
        )


async def test_a_directory_that_cannot_be_written_is_an_error_reply_and_the_node_goes_on(
    net: LoopbackNet, pair: tuple[Node, Node]
) -> None:
    central, ship1 = pair
    # On ship1 "./blocked" is a plain file, so nothing can be written below it; on central
    # it is free, so the error reply (to the same "./blocked" directory) can be written.
    net.home("ship1").mkdir(parents=True, exist_ok=True)
    (net.home("ship1") / "blocked").write_text("not a folder\n")
    error = net.home("central") / "blocked" / "out.txt.error"
    good = net.result("out", "out.txt", on="ship1")
    async with central, ship1:
        await central.submit([message("REQToFileAppend", data=b"lost\n", directory="./blocked")])
        await wait_for(lambda: "cannot write" in file_text(error), timeout=10)
        assert "error: REQToFileAppend: cannot write " in file_text(error)
        assert str(net.home("ship1") / "blocked" / "out.txt") in file_text(error)
        assert "Not a directory" in file_text(error)

        await central.submit([message("REQToFileAppend", data=b"still here\n")])
        await wait_for(lambda: file_text(good) == "still here\n", timeout=10)
        assert subscriber_restarts(ship1, "REQToFileAppend") == 0


async def test_an_unsafe_directory_is_refused_on_both_nodes_and_logged_centrally(
    net: LoopbackNet, pair: tuple[Node, Node]
) -> None:
    # The error reply would be written under the same unsafe directory on the requesting
    # node, so it is refused there too: what is left is the central error log.
    central, ship1 = pair
    good = net.result("out", "out.txt", on="ship1")
    async with central, ship1:
        await central.submit([message("REQToFileAppend", data=b"x\n", directory="../escape")])
        refusal = 'error: REQToFileAppend: field "directory": value \'../escape\' contains ".."'
        await wait_for(lambda: file_text(net.error_log()).count(refusal) == 2, timeout=10)
        log = file_text(net.error_log())
        assert f"node: ship1, {refusal}" in log
        assert f"node: central, {refusal}" in log

        await central.submit([message("REQToFileAppend", data=b"still here\n")])
        await wait_for_exact(good, "still here\n")
        assert subscriber_restarts(ship1, "REQToFileAppend") == 0
        assert subscriber_restarts(central, "REQToFileAppend") == 0
    assert not (net.base / "escape").exists()
    assert not (net.data("central").parent / "escape").exists()


# ----------------------------------------------------------------- a whole batch at once


async def test_a_batch_of_appends_is_one_joined_write_per_file_in_message_order(
    tmp_path: Path,
) -> None:
    services = FakeServices(tmp_path)
    batch = [
        request("REQToFileAppend", data=b"a1\n"),
        request("REQToFileAppend", data=b"b1\n", file_name="other.txt"),
        request("REQToFileAppend", data=b"a2\n"),
        request("REQToFileAppend", data=b"a3\n"),
    ]
    results = await write_batch(services, batch, append=True)
    out = tmp_path / "data" / "out" / "ship1"
    assert results == [None, None, None, None]
    # One joined write per file; different files are written concurrently, in any order.
    assert sorted(services.writes, key=lambda w: str(w.path)) == [
        Write(out / "other.txt", b"b1\n", True),
        Write(out / "out.txt", b"a1\na2\na3\n", True),
    ]


async def test_a_batch_of_replacements_is_applied_one_by_one_and_the_last_stays(
    tmp_path: Path,
) -> None:
    services = FakeServices(tmp_path)
    batch = [request("REQToFile", data=f"v{i}\n".encode()) for i in range(3)]
    assert await write_batch(services, batch, append=False) == [None, None, None]
    target = tmp_path / "data" / "out" / "ship1" / "out.txt"
    assert [w.data for w in services.writes] == [b"v0\n", b"v1\n", b"v2\n"]
    assert services.files[target] == b"v2\n"


async def test_a_refused_path_fails_only_its_own_messages_of_the_batch(tmp_path: Path) -> None:
    services = FakeServices(tmp_path)
    batch = [
        request("REQToFileAppend", data=b"bad\n", directory="../escape"),
        request("REQToFileAppend", data=b"good\n"),
        request("REQToFileAppend", data=b"bad again\n", directory="../escape"),
    ]
    refused, written, refused_again = await write_batch(services, batch, append=True)
    assert isinstance(refused, UnsafePath) and refused is refused_again
    assert 'contains ".."' in str(refused)
    assert written is None
    assert services.writes == [Write(tmp_path / "data/out/ship1/out.txt", b"good\n", True)]


async def test_a_failed_write_fails_every_message_of_that_file_with_the_path_and_reason(
    tmp_path: Path,
) -> None:
    services = FakeServices(tmp_path, write_error=OSError(errno.ENOSPC, "No space left on device"))
    batch = [request("REQToFileAppend", data=b"x\n"), request("REQToFileAppend", data=b"y\n")]
    results = await write_batch(services, batch, append=True)
    target = tmp_path / "data" / "out" / "ship1" / "out.txt"
    assert [str(r) for r in results] == [f"cannot write {target}: No space left on device"] * 2
    assert all(isinstance(r, HandlerError) for r in results)


async def test_replies_in_one_batch_go_where_each_request_said(tmp_path: Path) -> None:
    # The path of a reply comes from its previous message: equal request fields, one file.
    services = FakeServices(tmp_path, node_name="central")
    asked = [request("REQCliCommand", file_name=f"{n}.txt") for n in ("x", "y", "x")]
    replies = [
        Message(
            to_node="central",
            from_node="ship1",
            method="REQToFileAppend",
            data=f"{i}\n".encode(),
            is_reply=True,
            previous_message=previous,
        )
        for i, previous in enumerate(asked)
    ]
    assert await write_batch(services, replies, append=True) == [None, None, None]
    out = tmp_path / "data" / "out" / "ship1"
    assert services.files == {out / "x.txt": b"0\n2\n", out / "y.txt": b"1\n"}


def test_the_file_methods_handle_batches_and_a_batch_needs_a_quick_handler() -> None:
    assert all(h.batch is not None for h in (to_file_append, to_file, to_file_nack))
    assert to_console.batch is None and error_log.batch is None

    async def nothing(ctx: HandlerContext, msg: Message) -> bytes | None:
        return None

    with pytest.raises(ValueError, match="quick=True"):
        handler("REQSlowBatch", batch=to_file_append.batch)(nothing)
