"""Output methods: write a message's data to a file, the console or the central error log.

Writes go through the node's group-committing file writer (:mod:`steward_otp.files`): each is
on disk before the handler returns. The file methods also handle a whole batch at once
(:func:`write_batch`): one path check and one joined append per file and batch. Every path
is checked on disk first (:func:`steward_otp.handlers.paths.safe_output_path`): no write
leaves its base folder through a symbolic link or lands in the node's own ``etc/``,
``var/`` or ``tmp/``. When the target path already exists as a Unix socket, the data is
written to that socket instead (Steward's way of feeding another program).
"""

from __future__ import annotations

import sys
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import trio

from steward_otp.append_journal import append_once, append_once_many
from steward_otp.handlers.base import (
    BatchResult,
    HandlerContext,
    HandlerError,
    NodeServices,
    handler,
)
from steward_otp.handlers.paths import safe_output_path
from steward_otp.loglines import RepeatLimiter, clean_line, similarity_key
from steward_otp.message import Message
from steward_otp.timestamps import steward_timestamp


async def write_for(ctx: HandlerContext, msg: Message, data: bytes, *, append: bool) -> Path:
    """Write ``data`` where ``msg`` says (spec 5.0) and return the path written.

    Raises :class:`~steward_otp.handlers.paths.UnsafePath` (a HandlerError) for a path the
    rules of :mod:`steward_otp.handlers.paths` refuse.
    """
    path = safe_output_path(msg, data_dir=ctx.data_dir, home=ctx.services.home)
    try:
        await ctx.services.write_file(path, data, append=append)
    except OSError as exc:
        raise HandlerError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return path


FILES_AT_ONCE: Final = 16
"""Output files one batch writes at the same time."""


def _path_key(msg: Message) -> tuple[str, ...]:
    """Every field the output path of ``msg`` and its checks depend on: messages with equal
    keys write to the same file, checked the same way (see :mod:`.paths`)."""
    key = (msg.directory, msg.to_node, msg.from_node, msg.file_name)
    previous = msg.previous_message
    if previous is None:
        return key
    return (*key, previous.directory, previous.to_node, previous.file_name)


async def write_batch(
    services: NodeServices, messages: Sequence[Message], *, append: bool
) -> list[BatchResult]:
    """Write the data of every message where it says, as :func:`write_for` would one by one.

    Messages are grouped by output file: each file's path is checked on disk once per batch,
    and its appends go to the file writer as ONE write (their data joined in message order:
    one open, one append, one fsync); replacements are applied one by one, in order. Returns
    per message None (written, on disk) or the :class:`HandlerError` it failed with: the
    path's refusal, or the write's error (shared by every message of that file's write).
    Appends to several files are made together (:func:`append_once_many`: one size check,
    one journal record, the files written in at most :data:`FILES_AT_ONCE` worker-thread
    crossings); replacements of different files run concurrently, up to
    :data:`FILES_AT_ONCE` at a time. Cancellation may leave some unwritten.
    """
    results: list[BatchResult] = [None] * len(messages)
    groups: dict[tuple[str, ...], list[int]] = {}
    for index, msg in enumerate(messages):
        groups.setdefault(_path_key(msg), []).append(index)
    paths: dict[Path, list[int]] = {}
    for indexes in groups.values():
        try:
            path = safe_output_path(
                messages[indexes[0]], data_dir=services.data_dir, home=services.home
            )
        except HandlerError as exc:
            for index in indexes:
                results[index] = exc
            continue
        paths.setdefault(path, []).extend(indexes)
    for indexes in paths.values():
        indexes.sort()  # several keys for one file: its data in message order all the same

    def failed(path: Path, exc: OSError) -> None:
        error = HandlerError(f"cannot write {path}: {exc.strerror or exc}")
        error.__cause__ = exc
        for index in paths[path]:
            results[index] = error

    if append and len(paths) > 1:
        # each message's data once, even when a kill -9 makes it run again
        by_path = {path: [messages[i] for i in indexes] for path, indexes in paths.items()}
        for path, problem in (await append_once_many(services, by_path)).items():
            if problem is not None:
                failed(path, problem)
        return results

    async def write_path(path: Path, indexes: list[int]) -> None:
        try:
            async with files_at_once:
                if append:
                    await append_once(services, path, [messages[i] for i in indexes])
                else:
                    for i in indexes:
                        await services.write_file(path, messages[i].data, append=False)
        except OSError as exc:
            failed(path, exc)

    files_at_once = trio.CapacityLimiter(FILES_AT_ONCE)
    if len(paths) == 1:
        ((path, indexes),) = paths.items()
        await write_path(path, indexes)
    else:
        async with trio.open_nursery() as nursery:
            for path, indexes in paths.items():
                nursery.start_soon(write_path, path, indexes)
    return results


async def _append_batch(services: NodeServices, messages: Sequence[Message]) -> list[BatchResult]:
    return await write_batch(services, messages, append=True)


async def _replace_batch(services: NodeServices, messages: Sequence[Message]) -> list[BatchResult]:
    return await write_batch(services, messages, append=False)


@handler("REQToFileAppend", batch=_append_batch)
async def to_file_append(ctx: HandlerContext, msg: Message) -> bytes | None:
    """Append the data to the output file (once, also when run again after a kill -9)."""
    (failed,) = await write_batch(ctx.services, [msg], append=True)
    if isinstance(failed, HandlerError):
        raise failed
    return None


@handler("REQToFile", batch=_replace_batch)
async def to_file(ctx: HandlerContext, msg: Message) -> bytes | None:
    """Replace the output file's content with the data."""
    await write_for(ctx, msg, msg.data, append=False)
    return None


@handler("REQToFileNACK", batch=_replace_batch)
async def to_file_nack(ctx: HandlerContext, msg: Message) -> bytes | None:
    """Same as REQToFile; its subject carries EventNACK."""
    await write_for(ctx, msg, msg.data, append=False)
    return None


@handler("REQToConsole")
async def to_console(ctx: HandlerContext, msg: Message) -> bytes | None:
    """Print the data (to stderr when ``methodArgs[0] == "stderr"``), then a newline."""
    stream = sys.stderr if msg.method_args[:1] == ("stderr",) else sys.stdout
    text = msg.data.decode("utf-8", errors="replace")
    print(text, file=stream, flush=True)
    return None


@handler("REQErrorLog")
async def error_log(ctx: HandlerContext, msg: Message) -> bytes | None:
    """Append the line to ``<data>/errorLog/<toNode>/error.log`` (or wherever it points),
    made safe by :func:`central_log_lines` (nothing is written when all is held back)."""
    data = central_log_lines(ctx.services, msg)
    if data:
        await write_for(ctx, msg, data, append=True)
    return None


MAX_LINES_PER_REPORT: Final = 10
"""Lines one REQErrorLog message may add to the central log; more are cut with a marker."""

_SENDERS: weakref.WeakKeyDictionary[object, dict[str, RepeatLimiter]] = weakref.WeakKeyDictionary()
_MAX_SENDERS: Final = 10_000


def _limiter_for(services: object, sender: str) -> RepeatLimiter:
    limiters = _SENDERS.setdefault(services, {})
    if sender not in limiters and len(limiters) >= _MAX_SENDERS:
        sender = ""  # beyond that many senders, the rest share one budget
    return limiters.setdefault(sender, RepeatLimiter())


def central_log_lines(services: object, msg: Message, now: float | None = None) -> bytes:
    """What one ``REQErrorLog`` message may add to the central log, per its sender.

    Guarantees: every line is printable (control characters escaped, see
    :func:`steward_otp.loglines.clean_line`) and at most
    :data:`~steward_otp.loglines.MAX_LINE_CHARS` characters plus a marker; at most
    :data:`MAX_LINES_PER_REPORT` lines per message; per sending node (``fromNode``) the
    limits of :class:`~steward_otp.loglines.RepeatLimiter` (20 similar and 200 lines in
    all per 10 s). Lines held back are counted, and the count is written, as one line per
    kind, with that sender's next line after the window.
    """
    now = time.monotonic() if now is None else now
    sender = msg.from_node
    limiter = _limiter_for(services, sender)
    lines = msg.data.decode("utf-8", errors="replace").split("\n")
    if lines and not lines[-1]:
        lines.pop()
    if len(lines) > MAX_LINES_PER_REPORT:
        cut = len(lines) - MAX_LINES_PER_REPORT
        lines = [*lines[:MAX_LINES_PER_REPORT], f"… [cut: {cut} more lines in this report]"]
    prefix = f"{steward_timestamp()}, node: {clean_line(sender, 200)}, warning: errorCentral: "
    out = [limiter.summary_text(item, prefix) for item in limiter.summaries(now)]
    for raw in lines:
        line = clean_line(raw)
        if limiter.allow(similarity_key(line), line, now):
            out.append(line)
    return "".join(f"{line}\n" for line in out).encode()


OUTPUT_HANDLERS = (to_file_append, to_file, to_file_nack, to_console, error_log)
