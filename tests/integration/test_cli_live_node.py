"""The CLI against a live node: tree, status, send and queue, as an operator runs them."""

from __future__ import annotations

import functools
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from steward_otp.handlers import HandlerContext, handler
from steward_otp.message import Message
from steward_otp.node import Node
from tests.conftest import NatsServer
from tests.nodes import node_config, wait_for

pytestmark = pytest.mark.integration


async def cli(*args: str, stdin: bytes = b"") -> tuple[int, str, str]:
    result = await trio.run_process(
        [sys.executable, "-m", "steward_otp", *args],
        stdin=stdin,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    return result.returncode, result.stdout.decode(), result.stderr.decode()


@handler("REQFlaky", description="crashes once")
async def flaky(ctx: HandlerContext, msg: Message) -> bytes | None:
    raise RuntimeError("induced crash")


async def test_tree_json_matches_the_live_tree_after_an_induced_crash(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    node = Node(node_config(tmp_path, "central", nats_server.url), handlers=[flaky])
    home = str(node.config.home)
    async with node:
        await node.submit([Message(to_node="central", method="REQFlaky", ack_timeout=2)])

        def crashes() -> int:
            entry = node.snapshot().find("node/inbound/REQFlaky")
            return int(entry.info.get("handler_crashes", 0)) if entry else 0

        await wait_for(lambda: crashes() == 1)
        code, out, err = await cli("tree", "--json", "--home", home)
        assert code == 0, err
        tree = json.loads(out)
        paths = {e["path"]: e for e in walk(tree)}
        live = {e.path: e for e in node.snapshot().walk()}
        assert set(paths) == set(live)
        assert paths["node"]["strategy"] == "rest_for_one"
        assert paths["node/inbound"]["strategy"] == "one_for_one"
        assert paths["node/outbound/publishers"]["strategy"] == "simple_one_for_one"
        flaky_entry = paths["node/inbound/REQFlaky"]
        assert flaky_entry["restart_count"] == 0 and flaky_entry["last_failure"] is None
        assert flaky_entry["info"]["handler_crashes"] == 1
        assert "induced crash" in flaky_entry["info"]["last_handler_crash"]
        assert paths["node/bridge"]["info"]["state"] == "connected"

        code, out, _ = await cli("tree", "--home", home)
        assert code == 0 and "REQFlaky" in out and "rest_for_one" in out

        code, out, _ = await cli("status", "--home", home)
        assert code == 0
        assert "connection:  connected" in out and "node:        central" in out


def walk(entry: dict[str, Any]) -> list[dict[str, Any]]:
    children = entry.get("children") or []
    assert isinstance(children, list)
    return [entry, *(e for child in children for e in walk(child))]


async def test_send_prints_ids_or_errors_and_queue_control_works(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    node = Node(node_config(tmp_path, "central", nats_server.url))
    home = str(node.config.home)
    good = {"toNode": "ghost", "method": "REQPing", "ACKTimeout": 1, "retries": 1000}
    async with node:
        code, out, _ = await cli("send", "-", "--home", home, stdin=json.dumps([good]).encode())
        assert code == 0
        [answer] = [json.loads(line) for line in out.splitlines()]
        assert answer["status"] == "accepted" and answer["toNode"] == "ghost"

        bad = json.dumps([dict(good, method="NoSuchMethod")]).encode()
        code, out, _ = await cli("send", "-", "--home", home, stdin=bad)
        assert code == 1 and '"field": "method"' in out

        code, out, _ = await cli("queue", "ls", "--json", "--home", home)
        assert [m["id"] for m in json.loads(out)] == [answer["id"]]
        code, out, _ = await cli("queue", "cancel", answer["id"], "--home", home)
        assert code == 0 and "cancelled" in out
        code, out, _ = await cli("queue", "ls", "--json", "--state", "cancelled", "--home", home)
        assert [m["state"] for m in json.loads(out)] == ["cancelled"]


async def test_commands_say_clearly_when_no_node_runs(tmp_path: Path) -> None:
    code, _, err = await cli("tree", "--home", str(tmp_path))
    assert code == 3 and "is it running?" in err


async def test_tree_watch_redraws_until_interrupted(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    node = Node(node_config(tmp_path, "central", nats_server.url))
    async with node, trio.open_nursery() as nursery:
        process = await nursery.start(
            functools.partial(
                trio.run_process,
                [sys.executable, "-m", "steward_otp", "tree", "--watch", "0.1",
                 "--home", str(node.config.home)],
                stdout=subprocess.PIPE,
                check=False,
            )
        )  # fmt: skip
        assert process.stdout is not None
        seen = b""
        with trio.fail_after(30):
            while seen.count(b"PROCESS") < 2:
                seen += await process.stdout.receive_some(65536)
        process.send_signal(signal.SIGINT)
        with trio.fail_after(10):
            await process.wait()
    assert b"PROCESS" in seen and b"control" in seen
    assert process.returncode in (0, 130)
