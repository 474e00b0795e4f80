"""Command methods across two real nodes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from steward_otp.message import Message
from steward_otp.node import Node
from tests.conftest import NatsServer
from tests.nodes import file_text, node_config, wait_for

pytestmark = pytest.mark.integration


def command(args: list[str], **fields: object) -> Message:
    settings: dict[str, object] = {
        "to_node": "ship1",
        "method": "REQCliCommand",
        "method_args": args,
        "directory": "cli",
        "file_name": "out.txt",
        "ack_timeout": 5,
        "retries": 3,
        "method_timeout": 10,
        "reply_method": "REQToFileAppend",
    }
    settings.update(fields)
    return Message(**settings)  # type: ignore[arg-type]


async def test_command_output_comes_back_to_the_sender(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    central = Node(node_config(tmp_path, "central", nats_server.url))
    ship1 = Node(node_config(tmp_path, "ship1", nats_server.url))
    out = tmp_path / "central" / "data" / "cli" / "ship1" / "out.txt"
    async with central, ship1:
        await central.submit([command(["bash", "-c", "echo giraff && echo sau"])])
        await wait_for(lambda: file_text(out) == "giraff\nsau\n")


async def test_failing_command_sends_an_error_file_beside_the_output(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    central = Node(node_config(tmp_path, "central", nats_server.url))
    ship1 = Node(node_config(tmp_path, "ship1", nats_server.url))
    error = tmp_path / "central" / "data" / "cli" / "ship1" / "out.txt.error"
    async with central, ship1:
        await central.submit([command(["bash", "-c", "echo oops >&2; exit 3"])])
        await wait_for(lambda: "exit status 3" in file_text(error))
        assert "error_output: oops" in file_text(error)
        await central.submit([command(["no-such-program-here"])])
        await wait_for(lambda: "cmd.Run failed" in file_text(error).split("exit status 3")[-1])


async def test_timeout_kills_the_whole_process_group(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    central = Node(node_config(tmp_path, "central", nats_server.url))
    ship1 = Node(node_config(tmp_path, "ship1", nats_server.url))
    error = tmp_path / "central" / "data" / "cli" / "ship1" / "out.txt.error"
    marker = f"steward-otp-test-{os.getpid()}-{id(tmp_path)}"
    async with central, ship1:
        await central.submit(
            [
                command(
                    ["bash", "-c", f"(exec -a {marker} sleep 300) & sleep 300"],
                    method_timeout=2,
                )
            ]
        )
        await wait_for(lambda: bool(processes_named(marker)), timeout=10)
        group = process_group(processes_named(marker)[0])  # bash and its children share it
        # The background sleep and the foreground one (bash may exec the last command itself).
        await wait_for(lambda: len(processes_in_group(group)) >= 2, timeout=10)
        await wait_for(lambda: "method timed out" in file_text(error), timeout=15)
        await wait_for(lambda: not processes_in_group(group), timeout=5)


def process_group(pid: int) -> int:
    stat = (Path("/proc") / str(pid) / "stat").read_text()
    return int(stat.rpartition(")")[2].split()[2])


def processes_in_group(group: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if process_group(int(entry.name)) == group:
                    found.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return found


def processes_named(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


async def test_reply_chain_feeds_output_into_a_command_on_the_sender(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    central = Node(node_config(tmp_path, "central", nats_server.url))
    ship1 = Node(node_config(tmp_path, "ship1", nats_server.url))
    result = tmp_path / "central" / "chained.txt"
    async with central, ship1:
        await central.submit(
            [
                command(
                    ["bash", "-c", "echo from-ship1"],
                    reply_method="REQCliCommand",
                    reply_method_args=["bash", "-c", f'echo "{{{{STEWARD_DATA}}}}" > {result}'],
                    reply_method_timeout=10,
                )
            ]
        )
        await wait_for(lambda: file_text(result).strip() == "from-ship1")


async def test_continuous_command_replies_line_by_line(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    central = Node(node_config(tmp_path, "central", nats_server.url))
    ship1 = Node(node_config(tmp_path, "ship1", nats_server.url))
    out = tmp_path / "central" / "data" / "cli" / "ship1" / "out.txt"
    async with central, ship1:
        await central.submit(
            [
                command(
                    ["bash", "-c", "for i in 1 2 3; do echo line$i; done"],
                    method="REQCliCommandCont",
                )
            ]
        )
        await wait_for(lambda: sorted(file_text(out).splitlines()) == ["line1", "line2", "line3"])


async def test_endless_output_is_stopped_at_the_limit_with_an_error_reply(
    nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("steward_otp.handlers.commands.OUTPUT_LIMIT", 100_000)
    central = Node(node_config(tmp_path, "central", nats_server.url))
    ship1 = Node(node_config(tmp_path, "ship1", nats_server.url))
    error = tmp_path / "central" / "data" / "cli" / "ship1" / "out.txt.error"
    marker = f"steward-otp-yes-{os.getpid()}-{id(tmp_path)}"
    async with central, ship1:
        await central.submit([command(["bash", "-c", f"exec -a {marker} yes"], method_timeout=-1)])
        await wait_for(lambda: "stdout larger than 100000 bytes" in file_text(error))
        await wait_for(lambda: not processes_named(marker), timeout=10)
