"""CLI options reach what they set: ``steward-otp cmd``'s delivery options end up in the message
the node sends, and ``steward-otp audit --limit`` limits the records it prints.

The CLI runs through typer's CliRunner (in a worker thread, since it runs its own trio loop)
against a real node on the in-memory broker; a raw subscriber on that broker sees what the
node publishes.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import trio
from typer.testing import CliRunner, Result

from steward_otp import codec
from steward_otp.cli import app
from steward_otp.loopback import LoopbackTransport
from steward_otp.message import Message
from steward_otp.replies.send_plan import CMD_DEFAULTS
from tests.unit.handlers.loopback_nodes import LoopbackNet, file_text, wait_for

runner = CliRunner()


async def invoke(*args: str) -> Result:
    """Run ``steward-otp ARGS`` without blocking the node's trio loop."""
    return await trio.to_thread.run_sync(functools.partial(runner.invoke, app, list(args)))


async def test_cmd_options_end_up_in_the_message_sent(tmp_path: Path) -> None:
    options = {"method_timeout": 42, "ack_timeout": 7, "retries": 2, "retry_wait": 3}
    assert all(CMD_DEFAULTS[k] != v for k, v in options.items())  # none is the default
    net = LoopbackNet(tmp_path)
    central = net.node("central", enable_socket=True)
    watcher = LoopbackTransport(net.broker, name="watcher")
    sent = watcher.subscribe("ghost.REQCliCommand.>")
    async with central:
        result = await invoke(
            "cmd", "ghost", "--home", str(central.config.home), "--timeout", "0",
            "--method-timeout", "42", "--ack-timeout", "7", "--retries", "2",
            "--retry-wait", "3", "--directory", "mydir", "--file-name", "my.log",
            "--", "echo", "hi",
        )  # fmt: skip
        with trio.fail_after(20):
            wire = await sent.receive.receive()
    assert result.exit_code == 3, result.output  # ghost did not reply within --timeout 0
    message = codec.decode(wire.payload, wire.headers)
    assert (message.to_node, message.method) == ("ghost", "REQCliCommand")
    assert list(message.method_args) == ["echo", "hi"]
    assert message.method_timeout == 42
    assert (message.ack_timeout, message.reply_ack_timeout) == (7, 7)
    assert (message.retries, message.reply_retries) == (2, 2)
    assert message.retry_wait == 3
    assert (message.directory, message.file_name) == ("mydir", "my.log")


def appended(i: int) -> Message:
    return Message(
        to_node="central",
        method="REQToFileAppend",
        data=f"{i}\n".encode(),
        directory="out",
        file_name="out.log",
        ack_timeout=5,
        retries=3,
        reply_method="REQNone",
    )


async def test_audit_limit_prints_only_that_many_of_the_newest_records(tmp_path: Path) -> None:
    net = LoopbackNet(tmp_path)
    central = net.node("central")
    home = str(central.config.home)
    out = net.data("central") / "out" / "central" / "out.log"
    async with central:
        await central.submit([appended(i) for i in range(4)])
        await wait_for(lambda: len(file_text(out).split()) == 4)
        # Each message gives two records: sent (delivered) and received (ok).
        with trio.fail_after(20):
            while len(await central.store.audit_log(limit=None)) < 8:
                await trio.sleep(0.02)
        everything = await invoke("audit", "--home", home, "--json")
        limited = await invoke("audit", "--home", home, "--json", "--limit", "3")
        newest = sorted(r.seq for r in await central.store.audit_log(limit=None))[-3:]
    assert everything.exit_code == 0, everything.output
    assert limited.exit_code == 0, limited.output
    assert len(json.loads(everything.stdout)) == 8  # the default limit (100) takes all
    assert [r["seq"] for r in json.loads(limited.stdout)] == newest
