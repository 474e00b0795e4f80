"""Command methods: run a program on the node and send its output back.

Commands run without a shell (``methodArgs[0]`` is the program, the rest its arguments), in a
process group of their own. On timeout or cancellation the **whole group** is killed,
children included, so ``bash -c "sleep 300 & sleep 300"`` leaves nothing behind.

``{{STEWARD_DATA}}`` templating (for reply chains): when an argument contains it, every
occurrence becomes ``$STEWARD_DATA`` and the program's environment is only
``STEWARD_DATA=<the message's data>``; it takes effect through a shell, e.g.
``["bash", "-c", "echo \\"{{STEWARD_DATA}}\\" > f"]``.

A node killed during a command (kill -9, OOM) does not leave it to run twice: the process
group is recorded durably before the program starts, and when the restarted node runs the
message again it kills the leftover group first (see
:mod:`steward_otp.handlers.command_groups`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import trio

from steward_otp.handlers.base import HandlerContext, HandlerError, handler
from steward_otp.handlers.command_groups import (
    GATE_OPEN,
    gated_argv,
    kill_leftover,
    remove_record,
    write_record,
)
from steward_otp.handlers.tail import LineSplitter, line_limit
from steward_otp.message import Message

DATA_TEMPLATE = "{{STEWARD_DATA}}"
DATA_VARIABLE = "STEWARD_DATA"
OUTPUT_LIMIT = 64 * 1024 * 1024


def program_args(msg: Message) -> Sequence[str]:
    """``methodArgs``, checked to name a program."""
    if not msg.method_args or not msg.method_args[0]:
        raise HandlerError(
            f'field "methodArgs": value {list(msg.method_args)!r} names no program; '
            'allowed: ["program", "arg", ...], e.g. ["bash", "-c", "uptime"]'
        )
    return msg.method_args


def command_line(msg: Message) -> tuple[list[str], dict[str, str] | None]:
    """The argv to run and its environment (None: inherit) for ``msg``. See module docstring."""
    args = list(program_args(msg))
    if any(DATA_TEMPLATE in a for a in args):
        args = [a.replace(DATA_TEMPLATE, f"${DATA_VARIABLE}") for a in args]
        return args, {DATA_VARIABLE: msg.data.decode("utf-8", errors="replace")}
    return args, None


def kill_process_group(process: trio.Process) -> None:
    """SIGKILL ``process`` and everything in its process group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _start_problem(argv: Sequence[str], env: dict[str, str] | None, cwd: Path) -> OSError | None:
    """Why ``argv[0]`` cannot be executed, as the exec would say it (None: it looks fine).

    The program starts behind a shell gate, so its exec errors are found here first.
    """
    program = argv[0]
    if "\0" in program:
        return None  # the spawn itself refuses it
    if "/" in program:
        candidate: str | None = str(cwd / program)
    else:
        search = (env if env is not None else os.environ).get("PATH", os.defpath)
        candidate = shutil.which(program, path=search)
    if candidate is None or not os.path.exists(candidate):
        return OSError(errno.ENOENT, os.strerror(errno.ENOENT))
    if os.path.isdir(candidate) or not os.access(candidate, os.X_OK):
        return OSError(errno.EACCES, os.strerror(errno.EACCES))
    return None


@contextlib.asynccontextmanager
async def started_command(
    ctx: HandlerContext, argv: list[str], env: dict[str, str] | None, failure: str
) -> AsyncIterator[trio.Process]:
    """The command ``argv`` running in its own process group, recorded while it runs.

    Before it starts, a group left running for the same message by a previous incarnation
    of the node is killed (and reported). The program starts only once its record is on
    disk; on the way out (end, error, timeout, cancellation) the whole group is killed if
    still running, and the record removed. A program that cannot start raises HandlerError
    ``"<failure> : <reason>, methodArgs: [...]"``.
    """
    msg = ctx.message
    home = ctx.services.home
    recorded = bool(msg.id)
    if recorded:
        for killed in await trio.to_thread.run_sync(kill_leftover, home, msg.id):
            ctx.report(
                "warning",
                f"warning: method{msg.method}: killed process group {killed}, left running by "
                f"the previous node process for message {msg.id}; running the command again",
            )
    problem = _start_problem(argv, env, home)
    try:
        if problem is not None:
            raise problem
        process = await trio.lowlevel.open_process(
            gated_argv(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=str(home),
            start_new_session=True,
        )
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in an argument
        raise HandlerError(
            f"{failure} : {getattr(exc, 'strerror', None) or exc}, "
            f"methodArgs: {_args_text(msg.method_args)}"
        ) from exc
    record: Path | None = None
    try:
        assert process.stdin is not None
        if recorded:
            try:
                record = await trio.to_thread.run_sync(write_record, home, msg.id, process.pid)
            except OSError as exc:
                raise HandlerError(
                    f"{failure} : cannot record the command under {home}: "
                    f"{exc.strerror or exc}, methodArgs: {_args_text(msg.method_args)}"
                ) from exc
        await process.stdin.send_all(GATE_OPEN)
        await process.stdin.aclose()
        yield process
    finally:
        # Timeout, cancellation, an error: the whole group goes, children included.
        if process.returncode is None:
            kill_process_group(process)
        with trio.CancelScope(shield=True):
            await process.wait()
            if record is not None:
                await trio.to_thread.run_sync(remove_record, record)


async def _collect(
    stream: trio.abc.ReceiveStream,
    into: dict[str, bytes],
    name: str,
    too_large: list[str],
    scope: trio.CancelScope,
) -> None:
    """Read ``stream`` into ``into[name]``; past OUTPUT_LIMIT, note it and stop reading."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await stream.receive_some(65536):
        size += len(chunk)
        if size > OUTPUT_LIMIT:
            too_large.append(name)
            scope.cancel()
            return
        chunks.append(bytes(chunk))
    into[name] = b"".join(chunks)


def _args_text(args: Sequence[str]) -> str:
    return "[" + " ".join(args) + "]"


@handler("REQCliCommand")
async def cli_command(ctx: HandlerContext, msg: Message) -> bytes | None:
    """Run the command under the method timeout; reply with stdout.

    A non-zero exit sends an error reply (with stderr) *and* the stdout as the normal reply.
    On timeout (the subscriber cancels the handler) the process group is killed and the
    subscriber sends the "method timed out" error reply.
    """
    argv, env = command_line(msg)
    outputs: dict[str, bytes] = {}
    too_large: list[str] = []
    async with started_command(ctx, argv, env, "cmd.Run failed") as process:
        assert process.stdout is not None and process.stderr is not None
        async with trio.open_nursery() as nursery:
            scope = nursery.cancel_scope
            nursery.start_soon(_collect, process.stdout, outputs, "stdout", too_large, scope)
            nursery.start_soon(_collect, process.stderr, outputs, "stderr", too_large, scope)
        if too_large:
            raise HandlerError(
                f"{too_large[0]} larger than {OUTPUT_LIMIT} bytes, the command was stopped; "
                f"methodArgs: {_args_text(msg.method_args)}"
            )
        returncode = await process.wait()
    result = subprocess.CompletedProcess(argv, returncode, outputs["stdout"], outputs["stderr"])
    stdout: bytes = result.stdout or b""
    if result.returncode != 0:
        # The reply ends the text with a newline: stderr's own last one would add a blank line.
        stderr = (result.stderr or b"").decode("utf-8", errors="replace").removesuffix("\n")
        text = (
            f"error: methodREQCliCommand: cmd.Run failed : exit status {result.returncode}, "
            f"methodArgs: {_args_text(msg.method_args)}, error_output: {stderr}"
        )
        ctx.report("error", text)
        await ctx.reply(text.encode() + b"\n", error=True)
    return stdout


@handler("REQCliCommandCont")
async def cli_command_cont(ctx: HandlerContext, msg: Message) -> bytes | None:
    """Run the command, replying with each output line as it appears.

    Every stdout and stderr line is a reply of its own ending in a newline (added to a last
    line that has none). At most :data:`~steward_otp.handlers.tail.MAX_LINE` bytes, or what
    one reply can carry when that is less, wait for a newline: a longer run without one is
    sent in pieces of that size, as REQTailFile does.
    It ends when the command ends, or at the method timeout (``-1``: never), when the
    process group is killed.
    """
    argv = list(program_args(msg))
    async with started_command(ctx, argv, None, "cmd.Start failed") as process:
        async with trio.open_nursery() as nursery:
            assert process.stdout is not None and process.stderr is not None
            nursery.start_soon(_stream_lines, ctx, process.stdout)
            nursery.start_soon(_stream_lines, ctx, process.stderr)
        status = await process.wait()
        kill_process_group(process)  # children it left behind go with it
    if status != 0:
        raise HandlerError(f"exit status {status}, methodArgs: {_args_text(msg.method_args)}")
    return None


async def _stream_lines(ctx: HandlerContext, stream: trio.abc.ReceiveStream) -> None:
    """Reply once per line of ``stream``, each ending in a newline; see cli_command_cont."""
    splitter = LineSplitter(line_limit(ctx.message))
    while chunk := await stream.receive_some(65536):
        for line in splitter.feed(bytes(chunk)):
            await ctx.reply(line)
    rest = splitter.flush()
    if rest is not None:
        await ctx.reply(rest)


COMMAND_HANDLERS = (cli_command, cli_command_cont)
