"""Group-committed file output: every write durable, far fewer fsyncs than writes."""

from __future__ import annotations

import socket
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing

from steward_otp.files import FileWriter


async def test_concurrent_appends_all_land_in_fewer_batches(tmp_path: Path) -> None:
    writer = FileWriter()
    target = tmp_path / "a" / "b" / "out.log"
    async with trio.open_nursery() as nursery:
        for i in range(200):
            nursery.start_soon(partial(writer.write, target, f"{i}\n".encode(), append=True))
    assert sorted(int(x) for x in target.read_text().splitlines()) == list(range(200))
    assert writer.writes == 200
    assert writer.batches < 200


async def test_truncating_write_replaces_the_content(tmp_path: Path) -> None:
    writer = FileWriter()
    target = tmp_path / "f"
    await writer.write(target, b"old old old\n", append=False)
    await writer.write(target, b"new\n", append=False)
    await writer.write(target, b"more\n", append=True)
    assert target.read_text() == "new\nmore\n"


async def test_existing_unix_socket_receives_the_data_instead(tmp_path: Path) -> None:
    path = tmp_path / "feed.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    await FileWriter().write(path, b"to the socket", append=True)
    conn, _ = server.accept()
    assert conn.recv(100) == b"to the socket"
    conn.close()
    server.close()


async def test_failure_is_raised_to_every_writer(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError):
        await FileWriter().write(blocker / "below" / "f", b"x", append=True)


async def test_a_nul_byte_in_the_path_is_an_error_for_the_writer(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="cannot use path"):
        await FileWriter().write(tmp_path / "a\0b", b"x", append=True)


async def test_a_socket_that_never_reads_fails_the_write_instead_of_hanging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("steward_otp.files.SOCKET_TIMEOUT", 0.2)
    path = tmp_path / "stuck.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    try:
        with pytest.raises(OSError), trio.fail_after(20):
            await FileWriter().write(path, b"x" * (16 * 1024 * 1024), append=True)
    finally:
        server.close()


async def test_many_files_are_written_in_few_crossings_each_failing_alone(tmp_path: Path) -> None:
    writer = FileWriter()
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    writes = {tmp_path / f"n{i}" / "reply.log": f"{i}\n".encode() for i in range(100)}
    writes[blocker / "reply.log"] = b"lost\n"
    results = await writer.write_many(writes, append=True, crossings=4)
    assert isinstance(results.pop(blocker / "reply.log"), OSError)
    assert results == dict.fromkeys(results)
    for i in range(100):
        assert (tmp_path / f"n{i}" / "reply.log").read_text() == f"{i}\n"
    assert writer.writes == 101


async def test_a_write_queued_on_a_path_before_write_many_lands_first(tmp_path: Path) -> None:
    writer = FileWriter()
    target, other = tmp_path / "target", tmp_path / "other"
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: writer.write(target, b"first\n", append=True))
        await trio.testing.wait_all_tasks_blocked()  # its leader is in the worker thread
        results = await writer.write_many({target: b"second\n", other: b"x\n"}, append=True)
    assert results == {target: None, other: None}
    assert target.read_text() == "first\nsecond\n"
    assert other.read_text() == "x\n"
    await writer.write(target, b"third\n", append=True)  # the path is free again
    assert target.read_text() == "first\nsecond\nthird\n"
