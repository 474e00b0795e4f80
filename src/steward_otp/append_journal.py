"""Appends that happen once per message, even when a kill -9 makes the message run again.

A quick output handler (``REQToFileAppend``) appends a message's data to a file, and only
then does the store record the message as finished. A node killed between the two runs the
message again at its next start -- and without this module the line appears twice.

:func:`append_once` closes that window. Before a message's data is appended, a record
``(message id, path, offset, length, SHA-256 of the data)`` goes to the node's append
journal (``<home>/var/append-journal.{0,1}``, written and fsynced before the append). When
the message runs again and the journal has a record of it for the same path:

* the file holds exactly its data at the recorded offset: the append happened, it is not
  made again (the message still finishes normally);
* the file ends inside its data (the kill came in the middle of the write): the file is
  cut back to the recorded offset and the data appended again;
* otherwise (the append never reached the file): it is appended.

Appends to one path are serialised (size, record, write), so each record's offset is where
the data really lands. Records are needed only until the message is finished, which is at
most a few batches later (or, after a crash, when the node's next start runs it again):
the journal keeps two segments of :data:`SEGMENT_RECORDS` records each and drops the older
one when the current one is full.

A Unix-socket output is not journalled (a socket has no offset to check), nor is a message
with a ``schedule`` (each of its runs appends anew, under the same id).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import stat
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Final, Protocol

import attrs
import trio

from steward_otp.message import Message

log = logging.getLogger(__name__)

SEGMENT_RECORDS: Final = 8_192
"""Records per journal segment; two segments are kept, so a record lives for at least this
many later appends -- twice what a Subscriber can have unfinished at once (4 batches of up to
1,024 messages) -- while the journal's memory stays bounded (about 5 MB at most)."""
JOURNAL_NAME: Final = "append-journal"
_DIGEST_CHARS: Final = 32


class Writer(Protocol):
    """What appends the data: the node's durable file writer."""

    @property
    def home(self) -> Path: ...

    async def write_file(self, path: Path, data: bytes, *, append: bool) -> None: ...


class ManyWriter(Writer, Protocol):
    """A writer that also writes many files in one call (the node's file writer does)."""

    async def write_many(
        self, writes: Mapping[Path, bytes], *, append: bool
    ) -> dict[Path, OSError | None]: ...


@attrs.frozen
class Record:
    """Where one message's append lands."""

    msg_id: str
    path: str
    offset: int
    length: int
    digest: str

    def line(self, path_json: str | None = None) -> str:
        """The record as one JSON line (``path_json``: the path already as JSON text)."""
        path = path_json or json.dumps(self.path)
        return (
            f'{{"i":{json.dumps(self.msg_id)},"p":{path},"o":{self.offset},'
            f'"n":{self.length},"h":"{self.digest}"}}\n'
        )


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:_DIGEST_CHARS]


class AppendJournal:
    """One node's append journal (see the module docstring)."""

    def __init__(self, folder: Path, *, segment_records: int = SEGMENT_RECORDS) -> None:
        self.folder = folder
        self.segment_records = segment_records
        self._older: dict[str, Record] = {}
        self._current: dict[str, Record] = {}
        self._loaded = False
        self._load_lock = trio.Lock()
        self._log_lock = trio.Lock()
        self._pending: list[tuple[bytes, trio.Event]] = []
        self._path_locks: dict[str, trio.Lock] = {}
        self._waiting: dict[str, list[_Call]] = {}
        self.skipped = 0
        """Appends found already made (a message run again after a crash)."""
        self.cut_back = 0
        """Files cut back to a record's offset (a write cut short by a crash)."""

    def segment(self, number: int) -> Path:
        return self.folder / f"{JOURNAL_NAME}.{number}"

    def record_of(self, msg_id: str) -> Record | None:
        return self._current.get(msg_id) or self._older.get(msg_id)

    async def append(self, writer: Writer, path: Path, messages: Sequence[Message]) -> None:
        """Append each message's data to ``path`` (in order), once per message id.

        Concurrent calls for one path are grouped (as the file writer groups writes): the
        first takes every call waiting, then one journal write and one append serve them
        all. Raises OSError as the writer does (every call of the group); the journal
        records stay, so a later run of the same messages checks the file again.
        """
        await self._load()
        key = str(path)
        mine = _Call(list(messages))
        self._waiting.setdefault(key, []).append(mine)
        async with self._path_lock(key):
            if not mine.done:
                group = self._waiting.pop(key, [])
                if mine not in group:  # taken by a leader that was cancelled: put back
                    group.insert(0, mine)
                finished = False
                try:
                    await self._append_group(writer, path, [m for c in group for m in c.messages])
                    finished = True
                except OSError as exc:
                    for call in group:
                        call.error = exc
                    finished = True
                finally:
                    if finished:
                        for call in group:
                            call.done = True
                    else:  # cancelled (or a bug): the others append in their own turn
                        others = [call for call in group if call is not mine]
                        self._waiting.setdefault(key, [])[:0] = others
        if mine.error is not None:
            raise mine.error

    async def append_many(
        self, writer: ManyWriter, groups: Mapping[Path, Sequence[Message]]
    ) -> dict[Path, OSError | None]:
        """:meth:`append` of each path's messages, for many paths at once: one worker-thread
        crossing reads every file's size, one journal write (and fsync) records every
        append, and the writer's :meth:`~ManyWriter.write_many` appends to every file in a
        few crossings. Returns per path None (appended, on disk) or the error it failed with.
        """
        await self._load()
        results: dict[Path, OSError | None] = dict.fromkeys(groups)
        async with contextlib.AsyncExitStack() as locks:
            for key in sorted(str(path) for path in groups):  # one order: no lock cycles
                await locks.enter_async_context(self._path_lock(key))
            sizes = await trio.to_thread.run_sync(_sizes, list(groups))
            records: list[Record] = []
            writes: dict[Path, bytes] = {}
            for path, messages in groups.items():
                size, is_socket = sizes[path]
                if is_socket:
                    try:
                        await writer.write_file(
                            path, b"".join(m.data for m in messages), append=True
                        )
                    except OSError as exc:
                        results[path] = exc
                    continue
                try:
                    todo, path_records = await self._plan(path, size, messages)
                except OSError as exc:
                    results[path] = exc
                    continue
                if todo:
                    records += path_records
                    writes[path] = b"".join(m.data for m in todo)
            if records:
                try:
                    await self._log(records)
                except OSError as exc:
                    return {path: results[path] or exc for path in groups}
            if writes:
                results.update(await writer.write_many(writes, append=True))
        return results

    async def _plan(
        self, path: Path, size: int, messages: Sequence[Message]
    ) -> tuple[list[Message], list[Record]]:
        """The messages still to append to ``path`` (``size`` bytes now; a message run again
        whose append was made is left out, one cut short is cut back) and their records."""
        todo: list[Message] = []
        for message in messages:
            record = None if message.schedule else self.record_of(message.id)
            if record is not None and record.path == str(path):
                found = await trio.to_thread.run_sync(_check, path, record, message.data)
                if found == "present":
                    self.skipped += 1
                    log.info(
                        "append of %s to %s was made before the node stopped: not again",
                        message.id,
                        path,
                    )
                    continue
                if found == "partial":
                    await trio.to_thread.run_sync(os.truncate, path, record.offset)
                    self.cut_back += 1
                    size = record.offset
                    log.warning(
                        "append of %s to %s was cut short when the node stopped: the file "
                        "is cut back to %d bytes and the data appended again",
                        message.id,
                        path,
                        size,
                    )
            todo.append(message)
        records: list[Record] = []
        offset = size
        for message in todo:
            if not message.schedule:  # a scheduled message appends anew at every run
                data = message.data
                records.append(Record(message.id, str(path), offset, len(data), digest(data)))
            offset += len(message.data)
        return todo, records

    async def _append_group(self, writer: Writer, path: Path, messages: list[Message]) -> None:
        size, is_socket = await trio.to_thread.run_sync(_size, path)
        if is_socket:
            await writer.write_file(path, b"".join(m.data for m in messages), append=True)
            return
        todo, records = await self._plan(path, size, messages)
        if not todo:
            return
        if records:
            await self._log(records)
        await writer.write_file(path, b"".join(m.data for m in todo), append=True)

    @contextlib.asynccontextmanager
    async def _path_lock(self, key: str) -> AsyncIterator[None]:
        lock = self._path_locks.setdefault(key, trio.Lock())
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and not lock.statistics().tasks_waiting:
                self._path_locks.pop(key, None)

    async def _load(self) -> None:
        if self._loaded:
            return
        async with self._load_lock:
            if self._loaded:
                return
            self._older = await trio.to_thread.run_sync(_read, self.segment(0))
            self._current = await trio.to_thread.run_sync(_read, self.segment(1))
            self._loaded = True

    async def _log(self, records: Sequence[Record]) -> None:
        """Make ``records`` durable; concurrent callers share one write and fsync."""
        done = trio.Event()
        path_json = json.dumps(records[0].path) if records else None
        lines = "".join([r.line(path_json if r.path == records[0].path else None) for r in records])
        self._pending.append((lines.encode(), done))
        for record in records:
            self._current[record.msg_id] = record
        async with self._log_lock:
            if done.is_set():
                return
            batch, self._pending = self._pending, []
            rotate = len(self._current) > self.segment_records
            try:
                await trio.to_thread.run_sync(
                    _write, self.folder, self.segment(1), b"".join(d for d, _ in batch)
                )
            except BaseException:
                self._pending[:0] = [item for item in batch if item[1] is not done]
                raise
            for _, event in batch:
                event.set()
            if rotate:
                await trio.to_thread.run_sync(os.replace, self.segment(1), self.segment(0))
                self._older, self._current = self._current, {}


@attrs.define(eq=False)
class _Call:
    """One caller's messages, waiting for a group's append."""

    messages: list[Message]
    done: bool = False
    error: OSError | None = None


def _size(path: Path) -> tuple[int, bool]:
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return 0, False
    return info.st_size, stat.S_ISSOCK(info.st_mode)


def _sizes(paths: list[Path]) -> dict[Path, tuple[int, bool]]:
    return {path: _size(path) for path in paths}


def _check(path: Path, record: Record, data: bytes) -> str:
    """``present``: ``data`` is at the record's offset; ``partial``: the file ends inside it
    with what is there a prefix of it; else ``absent``."""
    if len(data) != record.length or digest(data) != record.digest:
        return "absent"  # another message under the same id: not ours to judge
    try:
        with path.open("rb") as file:
            file.seek(record.offset)
            there = file.read(record.length)
    except OSError:
        return "absent"
    if there == data:
        return "present"
    size = record.offset + len(there)
    if 0 < len(there) < record.length and data.startswith(there) and _size(path)[0] == size:
        return "partial"
    return "absent"


def _write(folder: Path, path: Path, data: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _read(path: Path) -> dict[str, Record]:
    records: dict[str, Record] = {}
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return records
    for line in text.splitlines():
        try:
            raw = json.loads(line)
            record = Record(
                str(raw["i"]), str(raw["p"]), int(raw["o"]), int(raw["n"]), str(raw["h"])
            )
        except (ValueError, KeyError, TypeError):
            continue  # a line torn by a crash
        records[record.msg_id] = record
    return records


_JOURNALS: weakref.WeakKeyDictionary[object, AppendJournal] = weakref.WeakKeyDictionary()


_BY_HOME: dict[Path, AppendJournal] = {}


def journal_of(writer: Writer) -> AppendJournal:
    """The append journal of the node ``writer`` is (one per node object; per home folder
    for a writer that cannot be weakly referenced)."""
    try:
        journal = _JOURNALS.get(writer)
    except TypeError:  # unhashable or not weakly referenceable
        return _BY_HOME.setdefault(writer.home, AppendJournal(writer.home / "var"))
    if journal is None:
        journal = _JOURNALS[writer] = AppendJournal(writer.home / "var")
    return journal


async def append_once(writer: Writer, path: Path, messages: Sequence[Message]) -> None:
    """Append the messages' data to ``path`` through ``writer``, each message's at most
    once across crashes and restarts of the node (see the module docstring)."""
    await journal_of(writer).append(writer, path, messages)


async def append_once_many(
    writer: ManyWriter, groups: Mapping[Path, Sequence[Message]]
) -> dict[Path, OSError | None]:
    """:func:`append_once` for many paths at once (see :meth:`AppendJournal.append_many`)."""
    return await journal_of(writer).append_many(writer, groups)
