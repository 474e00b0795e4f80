"""kill -9 of a node during long commands must never run them twice (issue 17)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from steward_otp.handlers.command_groups import COMMANDS_FOLDER
from tests.conftest import NatsServer
from tests.nodes import NodeProcess, file_text, send_document, wait_for

pytestmark = pytest.mark.integration

COMMANDS = 20


@pytest.fixture
def node(nats_server: NatsServer, tmp_path: Path) -> Iterator[NodeProcess]:
    process = NodeProcess(tmp_path / "central", "central", nats_server.url)
    yield process
    process.kill()


def _lines(path: Path, word: str) -> list[str]:
    return [line for line in file_text(path).splitlines() if line.startswith(word)]


async def test_kill_9_during_20_long_commands_completes_each_once(
    node: NodeProcess, tmp_path: Path
) -> None:
    log = tmp_path / "commands.log"
    commands = [
        {
            "toNode": "local",
            "method": "REQCliCommand",
            "methodArgs": ["sh", "-c", f"echo start {i} >> {log}; sleep 4; echo done {i} >> {log}"],
            "methodTimeout": 60,
            "ACKTimeout": 5,
            "retries": 3,
            "replyMethod": "REQNone",
        }
        for i in range(COMMANDS)
    ]
    await node.start()
    answers = await send_document(node.socket_path, json.dumps(commands).encode())
    assert all(a["status"] == "accepted" for a in answers), answers
    records = node.home / COMMANDS_FOLDER
    await wait_for(lambda: len(_lines(log, "start")) == COMMANDS, timeout=30)
    assert len(list(records.glob("*.pgid"))) == COMMANDS
    node.kill()  # SIGKILL: the commands' process groups live on

    await node.start()  # runs the unfinished messages again, killing the leftovers first
    await wait_for(lambda: len(_lines(log, "done")) >= COMMANDS, timeout=60)
    await trio.sleep(5)  # long enough for any orphan that survived to finish too
    done = sorted(_lines(log, "done"))
    assert done == sorted(f"done {i}" for i in range(COMMANDS)), done
    assert len(_lines(log, "start")) == 2 * COMMANDS  # killed once, run again once
    assert list(records.glob("*.pgid")) == []
    assert "killed process group" in node.log.read_text()
