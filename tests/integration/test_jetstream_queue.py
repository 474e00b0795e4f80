"""Queue control for messages waiting in the JetStream stream, against a real nats-server:
``queue.stream.ls`` / ``queue.stream.cancel`` on the control socket, ``steward-otp queue
stream ls|cancel``, and the waiting count per node in ``steward-otp status``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from steward_otp.message import Message
from steward_otp.node import Node
from steward_otp.tree_view import render_status
from tests.conftest import NatsServer
from tests.nodes import file_text, node_config, wait_for

pytestmark = pytest.mark.integration


def js_node(tmp_path: Path, name: str, server: NatsServer, **overrides: Any) -> Node:
    return Node(node_config(tmp_path, name, server.url, delivery="jetstream", **overrides))


def line(to_node: str, text: str, msg_id: str = "") -> Message:
    return Message(
        id=msg_id,
        to_node=to_node,
        method="REQToFileAppend",
        data=f"{text}\n".encode(),
        directory="out",
        file_name="out.log",
        ack_timeout=5,
        retries=10,
        reply_method="REQNone",
    )


def out_lines(tmp_path: Path, node: str) -> list[str]:
    return file_text(tmp_path / node / "data" / "out" / node / "out.log").split()


async def cli(*args: str) -> tuple[int, str, str]:
    result = await trio.run_process(
        [sys.executable, "-m", "steward_otp", *args],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    return result.returncode, result.stdout.decode(), result.stderr.decode()


async def test_waiting_messages_are_listed_counted_and_cancelled(
    jetstream_server: NatsServer, tmp_path: Path
) -> None:
    async with js_node(tmp_path, "central", jetstream_server) as central:
        await wait_for(lambda: central.stream_intake is not None and central.stream_intake.ready)
        ids = await central.submit(
            [line("ship1", str(i), f"central:{i}") for i in range(5)]
            + [line("ship2", "x", "central:x"), line("all", "everyone", "central:all")]
        )
        await wait_for(lambda: central.outbox.stats.delivered == len(ids), timeout=20)
        assert await central.store.pending() == []  # the outbox is done: they are in the stream

        listed = (await central.control({"op": "queue.stream.ls", "toNode": "ship1"}))["messages"]
        by_id = {m["id"]: m for m in listed}
        assert sorted(by_id) == sorted([*(f"central:{i}" for i in range(5)), "central:all"])
        assert [m["seq"] for m in listed] == sorted(m["seq"] for m in listed)  # oldest first
        assert {m["toNode"] for m in listed} == {"ship1"}
        assert by_id["central:0"]["method"] == "REQToFileAppend"
        assert by_id["central:0"]["fromNode"] == "central"
        assert by_id["central:all"]["broadcast"] and not by_id["central:0"]["broadcast"]

        # central consumes the stream too: the broadcast it took itself is not waiting.
        await wait_for(lambda: out_lines(tmp_path, "central") == ["everyone"])
        status = (await central.control({"op": "status"}))["status"]
        assert status["delivery"]["waiting_per_node"] == {"ship1": 6, "ship2": 2}
        assert "in stream:   ship1 6, ship2 2" in render_status(status)

        # Cancel by id and by sequence.
        answer = await central.control({"op": "queue.stream.cancel", "id": "central:3"})
        assert answer["ok"] and answer["done"]
        seq = by_id["central:0"]["seq"]
        answer = await central.control({"op": "queue.stream.cancel", "seq": seq})
        assert answer == {"ok": True, "done": True, "seqs": [seq]}
        answer = await central.control({"op": "queue.stream.cancel", "seq": seq})
        assert answer == {"ok": True, "done": False, "seqs": []}
        answer = await central.control({"op": "queue.stream.cancel", "id": "central:nope"})
        assert answer["done"] is False
        status = (await central.control({"op": "status"}))["status"]
        assert status["delivery"]["waiting_per_node"] == {"ship1": 4, "ship2": 2}

        # The CLI, as an operator runs it.
        home = str(central.config.home)
        code, out, err = await cli("queue", "stream", "ls", "--home", home, "--to-node", "ship1")
        assert code == 0, err
        assert "central:1" in out and "central:3" not in out and "WAITS FOR" in out
        code, out, err = await cli(
            "queue", "stream", "ls", "--home", home, "--to-node", "ship2", "--json"
        )
        assert code == 0, err
        assert sorted(m["id"] for m in json.loads(out)) == ["central:all", "central:x"]
        code, out, _ = await cli("queue", "stream", "cancel", "central:x", "--home", home)
        assert code == 0 and "removed from the stream" in out
        code, out, _ = await cli("queue", "stream", "cancel", "central:x", "--home", home)
        assert code == 1 and "not removed" in out
        code, _, err = await cli("queue", "stream", "cancel", "--home", home)
        assert code == 2 and "--seq" in err
        code, out, err = await cli("status", "--home", home)
        assert code == 0, err
        # ship2 never consumed and nothing names it any more: the broadcast alone does not
        # make it known.
        assert "in stream:   ship1 4\n" in out

    # ship1 comes up: it runs what was left, and nothing cancelled.
    async with js_node(tmp_path, "ship1", jetstream_server) as ship1:
        await wait_for(lambda: len(out_lines(tmp_path, "ship1")) >= 4, timeout=20)
        with trio.fail_after(20):
            while True:  # acknowledged once durable in ship1's inbox: no longer waiting
                status = (await ship1.control({"op": "status"}))["status"]
                if "ship1" not in status["delivery"].get("waiting_per_node", {"ship1": 1}):
                    break
                await trio.sleep(0.1)
    assert sorted(out_lines(tmp_path, "ship1")) == ["1", "2", "4", "everyone"]
    assert status["delivery"]["waiting_per_node"] == {}


async def test_stream_queue_requests_are_checked(
    jetstream_server: NatsServer, nats_server: NatsServer, tmp_path: Path
) -> None:
    async with js_node(tmp_path, "central", jetstream_server) as central:
        answer = await central.control({"op": "queue.stream.cancel"})
        assert answer["ok"] is False and '"seq"' in answer["error"]
        answer = await central.control({"op": "queue.stream.ls", "limit": 0})
        assert answer["ok"] is False and '"limit"' in answer["error"]
        for bad in (">", "a b", "ship1.*", ""):
            answer = await central.control({"op": "queue.stream.ls", "toNode": bad})
            assert answer["ok"] is False and '"toNode"' in answer["error"], bad
        answer = await central.control({"op": "queue.stream.cancel", "seq": "1"})
        assert answer["ok"] is False and '"seq"' in answer["error"]
    async with Node(node_config(tmp_path, "core", nats_server.url)) as core:
        answer = await core.control({"op": "queue.stream.ls"})
        assert answer["ok"] is False
        assert "the stream cannot be read" in answer["error"]
        status = (await core.control({"op": "status"}))["status"]
        assert "waiting_per_node" not in status["delivery"]  # core delivery: nothing asked


async def test_cancel_by_seq_with_to_node_removes_only_what_waits_for_that_node(
    jetstream_server: NatsServer, tmp_path: Path
) -> None:
    async with js_node(tmp_path, "central", jetstream_server) as central:
        await wait_for(lambda: central.stream_intake is not None and central.stream_intake.ready)
        ids = await central.submit(
            [line("ship1", "1", "central:1"), line("all", "everyone", "central:all")]
        )
        await wait_for(lambda: central.outbox.stats.delivered == len(ids), timeout=20)
        listed = (await central.control({"op": "queue.stream.ls", "toNode": "ship1"}))["messages"]
        seqs = {m["id"]: m["seq"] for m in listed}

        # ship1's message does not wait for ship2: left alone.
        request = {"op": "queue.stream.cancel", "seq": seqs["central:1"], "toNode": "ship2"}
        assert await central.control(request) == {"ok": True, "done": False, "seqs": []}
        after = (await central.control({"op": "queue.stream.ls", "toNode": "ship1"}))["messages"]
        assert sorted(m["id"] for m in after) == ["central:1", "central:all"]

        # The broadcast waits for ship2 too; ship1's message waits for ship1.
        for msg_id, to_node in (("central:all", "ship2"), ("central:1", "ship1")):
            request = {"op": "queue.stream.cancel", "seq": seqs[msg_id], "toNode": to_node}
            answer = await central.control(request)
            assert answer == {"ok": True, "done": True, "seqs": [seqs[msg_id]]}
        after = (await central.control({"op": "queue.stream.ls", "toNode": "ship1"}))["messages"]
        assert after == []
