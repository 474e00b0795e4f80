"""Output methods: write a message's data to a file, the console or the central error log.

Writes go through the node's group-committing file writer (:mod:`steward_otp.files`): each is
on disk before the handler returns. When the target path already exists as a Unix socket,
the data is written to that socket instead (Steward's way of feeding another program).
"""

from __future__ import annotations

import sys
from pathlib import Path

from steward_otp.handlers.base import HandlerContext, HandlerError, handler
from steward_otp.handlers.paths import output_path
from steward_otp.message import Message


async def write_for(ctx: HandlerContext, msg: Message, data: bytes, *, append: bool) -> Path:
    """Write ``data`` where ``msg`` says (spec 5.0) and return the path written."""
    path = output_path(msg, data_dir=ctx.data_dir, home=ctx.services.home)
    try:
        await ctx.services.write_file(path, data, append=append)
    except OSError as exc:
        raise HandlerError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return path


@handler("REQToFileAppend", reply_capable=True, quick=True, description="append data to a file")
async def to_file_append(ctx: HandlerContext, msg: Message) -> bytes | None:
    """Append the data to the output file."""
    await write_for(ctx, msg, msg.data, append=True)
    return None


@handler(
    "REQToFile",
    reply_capable=True,
    quick=True,
    description="write data to a file, replacing it",
)
async def to_file(ctx: HandlerContext, msg: Message) -> bytes | None:
    """Replace the output file's content with the data."""
    await write_for(ctx, msg, msg.data, append=False)
    return None


@handler(
    "REQToFileNACK",
    kind="NACK",
    reply_capable=True,
    quick=True,
    description="REQToFile on a NACK subject",
)
async def to_file_nack(ctx: HandlerContext, msg: Message) -> bytes | None:
    """Same as REQToFile; its subject carries EventNACK."""
    await write_for(ctx, msg, msg.data, append=False)
    return None


@handler(
    "REQToConsole",
    reply_capable=True,
    quick=True,
    description="print data on the node's console",
)
async def to_console(ctx: HandlerContext, msg: Message) -> bytes | None:
    """Print the data (to stderr when ``methodArgs[0] == "stderr"``), then a newline."""
    stream = sys.stderr if msg.method_args[:1] == ("stderr",) else sys.stdout
    text = msg.data.decode("utf-8", errors="replace")
    print(text, file=stream, flush=True)
    return None


@handler(
    "REQErrorLog",
    quick=True,
    description="append an error/info line to the central error log",
)
async def error_log(ctx: HandlerContext, msg: Message) -> bytes | None:
    """Append the line to ``<data>/errorLog/<toNode>/error.log`` (or wherever it points)."""
    await write_for(ctx, msg, msg.data, append=True)
    return None


OUTPUT_HANDLERS = (to_file_append, to_file, to_file_nack, to_console, error_log)
