"""REQTailFile: follow a file from its end, one reply per new line, across log rotation.

``methodArgs[0]`` is the file (relative paths resolve against the node's home). Only lines
written after the tail started are sent, each with its newline. The file is polled, so it
works on any file system, and rotation is survived where Steward's tail stopped:

* **renamed or recreated** (``logrotate``'s default, ``mv app.log app.log.1``): the rest
  of the old file is read, then the new file is followed from its first line;
* **truncated** (``copytruncate``, ``> app.log``): it is followed again from its start;
* **missing for a while** (between the rename and the new file): the tail waits for it.

Only **regular files** are followed (a symlink to one is fine). A FIFO, a device, a socket
or a directory is refused with an error reply naming it -- at the start, or when one takes
the file's place after a rotation. The file is opened without blocking (``O_NONBLOCK``), so
a FIFO without a writer cannot hold the tail beyond its ``methodTimeout`` or keep the node
from stopping; a position, a size and a rotation mean nothing for a FIFO anyway.

As with ``tail -F``, a truncation followed by more writes than the old length between two
polls cannot be told apart from plain growth.

The tail runs until the message's ``methodTimeout`` (``-1``: for the life of the node) and
then ends normally with an info line to the central error log.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import BinaryIO

import trio

from steward_otp.handlers.base import HandlerContext, HandlerError, handler, reply_room
from steward_otp.message import Message

POLL_INTERVAL = 0.2
"""Seconds between looks at a file that has nothing new."""

END_MARGIN = 0.1
"""The tail ends this long before the method timeout, so reaching it is a normal end."""

READ_SIZE = 64 * 1024
MAX_LINE = 1024 * 1024
"""A longer run of bytes without a newline is sent as a line of its own."""

LineSink = Callable[[bytes], Awaitable[None]]


def line_limit(request: Message) -> int:
    """The longest run without a newline sent as one piece for ``request``: :data:`MAX_LINE`,
    or less when one reply (the piece and the newline added) could not carry that much."""
    return max(1, reply_room(request, most=MAX_LINE + 1) - 1)


class LineSplitter:
    """Sans-IO: bytes in, complete lines (with their newline) out."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._pending = b""
        self._max_line = max_line

    def feed(self, data: bytes) -> list[bytes]:
        """The lines completed by ``data``; an over-long partial line counts as complete."""
        self._pending += data
        *lines, self._pending = self._pending.split(b"\n")
        out = [line + b"\n" for line in lines]
        while len(self._pending) >= self._max_line:
            out.append(self._pending[: self._max_line] + b"\n")
            self._pending = self._pending[self._max_line :]
        return out

    def flush(self) -> bytes | None:
        """The unfinished last line, newline added, or None; the splitter is empty after."""
        pending, self._pending = self._pending, b""
        return pending + b"\n" if pending else None


def _identity(file: BinaryIO) -> tuple[int, int]:
    st = os.fstat(file.fileno())
    return st.st_dev, st.st_ino


class NotARegularFile(Exception):
    """The path names something other than a regular file; ``kind`` says what."""

    def __init__(self, path: Path, kind: str) -> None:
        super().__init__(f"{path} is {kind}, not a regular file")
        self.path = path
        self.kind = kind


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "a file of another kind")


def _open_regular(path: Path) -> BinaryIO:
    """Open ``path`` for reading without ever blocking in open(); only a regular file.

    ``O_NONBLOCK`` makes opening a FIFO return at once (a blocking open waits for a
    writer); the file is then refused by its type, read from the descriptor just opened so
    no swap between a check and the open can slip one through.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotARegularFile(path, _kind(mode))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


async def _stat(path: Path) -> os.stat_result | None:
    # A stat() that hangs (a dead network mount) is left behind on cancellation.
    try:
        return await trio.to_thread.run_sync(os.stat, path, abandon_on_cancel=True)
    except FileNotFoundError:
        return None


async def _open(path: Path) -> BinaryIO:
    # Left behind on cancellation too: a file it opens after that is closed when dropped.
    return await trio.to_thread.run_sync(_open_regular, path, abandon_on_cancel=True)


class FileFollower:
    """Follows ``path`` from its end and hands each new line to ``sink``; see module docs.

    Blocking file calls run in worker threads, so a slow file system never stalls the node;
    a stat() or open() that hangs does not hold up cancellation either.
    """

    def __init__(
        self,
        path: Path,
        sink: LineSink,
        *,
        poll_interval: float = POLL_INTERVAL,
        max_line: int = MAX_LINE,
    ) -> None:
        self.path = path
        self.sink = sink
        self.poll_interval = poll_interval
        self.max_line = max_line
        self.lines = 0
        self.reopened = 0

    async def run(self) -> None:
        """Follow until cancelled.

        Raises OSError if the file cannot be opened at the start, NotARegularFile if it (or
        what replaces it after a rotation) is not a regular file.
        """
        file = await _open(self.path)
        try:
            file.seek(0, os.SEEK_END)
            splitter = LineSplitter(self.max_line)
            while True:
                if await self._drain(file, splitter):
                    continue
                current = await _stat(self.path)
                if current is None:
                    pass  # renamed away, the new file is not there yet
                elif (current.st_dev, current.st_ino) != _identity(file):
                    await self._drain_all(file, splitter)  # written before the switch
                    await self._flush(splitter)
                    try:
                        replacement = await _open(self.path)
                    except FileNotFoundError:
                        replacement = None  # gone again: look at the next poll
                    if replacement is not None:
                        file.close()
                        file = replacement
                        self.reopened += 1
                        continue
                elif current.st_size < file.tell():
                    await self._flush(splitter)
                    file.seek(0)
                    self.reopened += 1
                    continue
                await trio.sleep(self.poll_interval)
        finally:
            file.close()

    async def _drain(self, file: BinaryIO, splitter: LineSplitter) -> bool:
        """Send the complete lines of one read; True if anything was read."""
        data = await trio.to_thread.run_sync(file.read, READ_SIZE)
        if not data:
            return False
        for line in splitter.feed(data):
            await self._send(line)
        return True

    async def _drain_all(self, file: BinaryIO, splitter: LineSplitter) -> None:
        while await self._drain(file, splitter):
            pass

    async def _flush(self, splitter: LineSplitter) -> None:
        rest = splitter.flush()
        if rest is not None:
            await self._send(rest)

    async def _send(self, line: bytes) -> None:
        self.lines += 1
        await self.sink(line)


_PATH_ALLOWED = 'a path to a regular file, e.g. "/var/log/syslog"'


def tail_path(ctx: HandlerContext, msg: Message) -> Path:
    """The file named by ``methodArgs[0]``, relative paths resolved against the node's home.

    Raises HandlerError when there is none or it cannot be a path (a NUL byte, a character
    the file system encoding cannot hold).
    """
    if not msg.method_args or not msg.method_args[0]:
        raise HandlerError(
            f'field "methodArgs": value {list(msg.method_args)!r} names no file; '
            'allowed: ["path"], e.g. ["/var/log/syslog"]'
        )
    name = msg.method_args[0]
    try:
        encoded = os.fsencode(name)
    except UnicodeError:
        problem = "it holds a character file names cannot hold"
    else:
        problem = "it holds a NUL byte" if b"\0" in encoded else ""
    if problem:
        raise HandlerError(
            f'field "methodArgs[0]": value {name!r} is not a valid path ({problem}); '
            f"allowed: {_PATH_ALLOWED}"
        )
    return ctx.services.home / name


@handler("REQTailFile")
async def tail_file(ctx: HandlerContext, msg: Message) -> bytes | None:
    """Reply with every line added to the file until the method timeout; see module docs."""
    path = tail_path(ctx, msg)
    follower = FileFollower(path, ctx.reply, max_line=line_limit(ctx.message))
    end = ctx.deadline - END_MARGIN if math.isfinite(ctx.deadline) else math.inf
    with trio.move_on_at(end):
        try:
            await follower.run()
        except NotARegularFile as exc:
            name = msg.method_args[0]
            where = "" if str(path) == name else f" ({str(path)!r})"
            raise HandlerError(
                f'field "methodArgs[0]": value {name!r}{where} is {exc.kind}, not a regular '
                f"file; allowed: {_PATH_ALLOWED}"
            ) from exc
        except OSError as exc:
            raise HandlerError(f"cannot follow {str(path)!r}: {exc.strerror or exc}") from exc
    ctx.report(
        "info",
        f"info: method timeout reached REQTailFile, canceling: [{' '.join(msg.method_args)}] "
        f"after {follower.lines} lines",
    )
    return None


TAIL_HANDLERS = (tail_file,)
