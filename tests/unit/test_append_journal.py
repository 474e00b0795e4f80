"""A quick append runs again after a kill -9 between the append and the store's "finished":
the line must not appear twice (steward_otp.append_journal, through REQToFileAppend's batch
function)."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path

import attrs
import trio

from steward_otp.append_journal import (
    AppendJournal,
    Record,
    append_once,
    append_once_many,
    digest,
    journal_of,
)
from steward_otp.files import FileWriter
from steward_otp.handlers.base import Level, NodeServices
from steward_otp.handlers.output import write_batch
from steward_otp.message import Message


@attrs.define(eq=False)
class Services:
    """The part of a node the output handlers use: a home and the durable file writer (the
    rest of :class:`NodeServices` is there for its type only: the output handlers never call
    it)."""

    home: Path
    files: FileWriter = attrs.field(factory=FileWriter)
    writes: int = 0

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def node_name(self) -> str:
        return "ship1"

    async def write_file(self, path: Path, data: bytes, *, append: bool) -> None:
        self.writes += 1
        await self.files.write(path, data, append=append)

    async def write_many(
        self, writes: Mapping[Path, bytes], *, append: bool
    ) -> dict[Path, OSError | None]:
        self.writes += len(writes)
        return await self.files.write_many(writes, append=append)

    async def submit(self, messages: Sequence[Message]) -> list[str]:
        raise NotImplementedError

    def report(self, level: Level, text: str) -> None:
        raise NotImplementedError

    def test_event(self, message: Message) -> None:
        raise NotImplementedError

    def note_hello(self, node: str) -> None:
        raise NotImplementedError


def _is_node_services(services: Services) -> NodeServices:
    """Static check (mypy) that the fake satisfies the Protocol; unused at run time."""
    return services


def line(msg_id: str, text: str) -> Message:
    return Message(
        id=msg_id,
        to_node="ship1",
        from_node="central",
        method="REQToFileAppend",
        data=f"{text}\n".encode(),
        directory="out",
        file_name="out.log",
    )


def restarted(services: Services) -> Services:
    """The node after a kill -9: a new process (new objects), the same home and files."""
    return Services(services.home)


async def test_a_batch_run_again_after_a_crash_appends_nothing_twice(tmp_path: Path) -> None:
    node = Services(tmp_path)
    batch = [line("central:1", "one"), line("central:2", "two")]
    assert await write_batch(node, batch, append=True) == [None, None]
    path = tmp_path / "data" / "out" / "ship1" / "out.log"
    assert path.read_text() == "one\ntwo\n"
    # Killed here: the store never recorded them as finished, so the next start runs them
    # again -- in one batch with a message that is new.
    node = restarted(node)
    again = [*batch, line("central:3", "three")]
    assert await write_batch(node, again, append=True) == [None, None, None]
    assert path.read_text() == "one\ntwo\nthree\n"
    assert journal_of(node).skipped == 2
    # And once more, after another kill, in two batches of their own.
    node = restarted(node)
    assert await write_batch(node, again[:1], append=True) == [None]
    assert await write_batch(node, again[1:], append=True) == [None, None]
    assert path.read_text() == "one\ntwo\nthree\n"
    assert node.writes == 0


async def test_a_write_cut_short_by_the_kill_is_completed_not_doubled(tmp_path: Path) -> None:
    path = tmp_path / "out.log"
    path.write_bytes(b"before\n")
    journal = AppendJournal(tmp_path / "var")
    message = line("central:9", "a longer line of output")
    # The record is durable, then the kill lands in the middle of the data's write.
    await journal._log([_record(message, path, offset=len(b"before\n"))])
    path.write_bytes(b"before\n" + message.data[:5])
    node = Services(tmp_path)
    await AppendJournal(tmp_path / "var").append(node, path, [message])
    assert path.read_bytes() == b"before\n" + message.data


async def test_an_append_that_never_reached_the_file_is_made(tmp_path: Path) -> None:
    path = tmp_path / "out.log"
    path.write_bytes(b"before\n")
    journal = AppendJournal(tmp_path / "var")
    message = line("central:9", "x")
    await journal._log([_record(message, path, offset=len(b"before\n"))])  # then killed
    node = Services(tmp_path)
    rerun = AppendJournal(tmp_path / "var")
    await rerun.append(node, path, [message])
    assert path.read_bytes() == b"before\nx\n"
    assert rerun.skipped == 0 and rerun.cut_back == 0


async def test_appends_of_other_messages_after_the_crashed_one_are_kept(tmp_path: Path) -> None:
    node = Services(tmp_path)
    path = tmp_path / "out.log"
    await append_once(node, path, [line("a", "first")])
    await append_once(node, path, [line("b", "second")])  # finished before the kill
    node = restarted(node)
    await append_once(node, path, [line("a", "first")])  # "a" was not recorded finished
    assert path.read_text() == "first\nsecond\n"


async def test_concurrent_appends_to_one_file_each_land_where_recorded(tmp_path: Path) -> None:
    node = Services(tmp_path)
    path = tmp_path / "out.log"
    messages = [line(f"m{i}", f"line {i}" * (i % 7 + 1)) for i in range(60)]
    async with trio.open_nursery() as nursery:
        for i in range(0, 60, 3):
            nursery.start_soon(append_once, node, path, messages[i : i + 3])
    node = restarted(node)
    await append_once(node, path, messages)  # all of them again: every one is found
    text = path.read_text()
    assert sorted(text.splitlines()) == sorted(m.data.decode().strip() for m in messages)
    assert journal_of(node).skipped == 60


async def test_the_journal_keeps_two_segments(tmp_path: Path) -> None:
    node = Services(tmp_path)
    journal = AppendJournal(tmp_path / "var", segment_records=10)
    path = tmp_path / "out.log"
    for i in range(35):
        await journal.append(node, path, [line(f"m{i}", str(i))])
    assert sorted(os.listdir(tmp_path / "var")) == ["append-journal.0", "append-journal.1"]
    reloaded = AppendJournal(tmp_path / "var", segment_records=10)
    await reloaded.append(node, path, [line("m34", "34"), line("m25", "25")])
    assert reloaded.skipped == 2
    assert path.read_text().split() == [str(i) for i in range(35)]


async def test_a_unix_socket_output_is_written_without_a_journal(tmp_path: Path) -> None:
    path = tmp_path / "out.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    received: list[bytes] = []

    def serve() -> None:
        connection, _ = server.accept()
        with connection:
            while chunk := connection.recv(1024):
                received.append(chunk)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.to_thread.run_sync, serve)
        await append_once(Services(tmp_path), path, [line("s1", "to the socket")])
    server.close()
    assert b"".join(received) == b"to the socket\n"
    assert not (tmp_path / "var").exists()


def _record(message: Message, path: Path, *, offset: int) -> Record:
    return Record(message.id, str(path), offset, len(message.data), digest(message.data))


async def test_a_scheduled_message_appends_at_every_run(tmp_path: Path) -> None:
    node = Services(tmp_path)
    path = tmp_path / "out.log"
    scheduled = attrs.evolve(line("s", "tick"), schedule=(1, 3))
    for _ in range(3):
        await append_once(node, path, [scheduled])
    assert path.read_text() == "tick\n" * 3
    assert not (tmp_path / "var").exists()  # nothing journalled


async def test_the_single_message_handler_is_guarded_too(tmp_path: Path) -> None:
    """A rerun after a crash runs one message alone (``Subscriber._recover``), through the
    handler function rather than the batch function."""
    from steward_otp.handlers.base import HandlerContext  # noqa: PLC0415
    from steward_otp.handlers.output import to_file_append  # noqa: PLC0415

    node = Services(tmp_path)
    message = line("central:1", "one")
    assert await write_batch(node, [message], append=True) == [None]  # the first run
    node = restarted(node)
    await to_file_append(HandlerContext(services=node, message=message), message)
    assert (tmp_path / "data" / "out" / "ship1" / "out.log").read_text() == "one\n"


def to_directory(msg_id: str, text: str, directory: str) -> Message:
    return attrs.evolve(line(msg_id, text), directory=directory)


async def test_a_batch_to_many_files_run_again_after_a_crash_appends_nothing_twice(
    tmp_path: Path,
) -> None:
    node = Services(tmp_path)
    batch = [to_directory(f"central:{i}", f"line {i}", f"d{i % 5}") for i in range(20)]
    assert await write_batch(node, batch, append=True) == [None] * 20
    assert node.files.batches == 5  # one append per file
    node = restarted(node)  # killed before the store recorded them finished
    again = [*batch, to_directory("central:new", "new", "d0")]
    assert await write_batch(node, again, append=True) == [None] * 21
    assert journal_of(node).skipped == 20
    for d in range(5):
        text = (tmp_path / "data" / f"d{d}" / "ship1" / "out.log").read_text()
        expected = [f"line {i}" for i in range(d, 20, 5)] + (["new"] if d == 0 else [])
        assert text.splitlines() == expected


async def test_many_files_at_once_complete_a_cut_write_and_fail_only_the_bad_path(
    tmp_path: Path,
) -> None:
    cut, fresh = tmp_path / "cut.log", tmp_path / "fresh" / "out.log"
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    cut.write_bytes(b"before\n")
    message = line("central:9", "a longer line of output")
    await AppendJournal(tmp_path / "var")._log([_record(message, cut, offset=len(b"before\n"))])
    cut.write_bytes(b"before\n" + message.data[:5])  # the kill came mid-write
    node = Services(tmp_path)
    results = await append_once_many(
        node,
        {
            cut: [message],
            fresh: [line("central:10", "ten"), line("central:11", "eleven")],
            blocker / "out.log": [line("central:12", "lost")],
        },
    )
    assert results[cut] is None and results[fresh] is None
    assert isinstance(results[blocker / "out.log"], OSError)
    assert cut.read_bytes() == b"before\n" + message.data
    assert fresh.read_text() == "ten\neleven\n"
    assert journal_of(node).cut_back == 1
