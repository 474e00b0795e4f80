"""``steward-otp cmd`` and ``send --wait`` against live nodes: each node's output shown as it
arrives, who did not reply reported, the documented exit status; warnings and rejections
in one answer shape through every input; the control socket's replies stream."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from steward_otp.control.client import control_request, control_stream
from steward_otp.handlers import HandlerContext, handler
from steward_otp.message import Message
from steward_otp.node import Node
from tests.conftest import NatsServer, free_loopback_port
from tests.integration.test_inputs import send_tcp
from tests.nodes import node_config, send_document

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


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


WHO = "echo hello from $(basename $PWD)"  # commands run in the node's home: tmp/<node>


async def test_cmd_shows_both_live_nodes_and_reports_the_offline_one_pending(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    central = Node(node_config(tmp_path, "central", nats_server.url))
    ship1 = Node(node_config(tmp_path, "ship1", nats_server.url))
    ship2 = Node(node_config(tmp_path, "ship2", nats_server.url))
    home = str(central.config.home)
    async with central, ship1, ship2:
        code, out, err = await cli(
            "cmd", "ship1,ship2,ship3", "--home", home, "--timeout", "6", "--", WHO
        )
        assert code == 3, (out, err)
        assert "ship1 (ok, " in out and "    hello from ship1" in out
        assert "ship2 (ok, " in out and "    hello from ship2" in out
        summary = out.splitlines()[-1]
        assert summary.startswith("2/3 replied; ship3 still queued"), summary
        [pending] = [
            m for m in (await control_request(central.config.control_socket_path,
                                              {"op": "queue.ls"}))["messages"]
        ]  # fmt: skip
        assert pending["toNode"] == "ship3" and pending["id"] in summary

        # The same as JSON lines: replies as they come, then the summary.
        code, out, _ = await cli(
            "cmd", "ship1,ship2,ship3", "--home", home, "--timeout", "4", "--json", "--", WHO
        )
        assert code == 3
        lines = json_lines(out)
        replies = [e for e in lines if e.get("event") == "reply"]
        assert sorted(e["node"] for e in replies) == ["ship1", "ship2"]
        assert {e["output"] for e in replies} == {"hello from ship1\n", "hello from ship2\n"}
        assert not any(e["error"] for e in replies)
        summary_event = lines[-1]
        assert summary_event["event"] == "summary" and summary_event["exitCode"] == 3
        states = {m["node"]: m["state"] for m in summary_event["messages"]}
        assert states["ship1"] == states["ship2"] == "replied"
        assert states["ship3"] in ("queued", "in_flight")

        # A node that answers with an error: exit 1, the error and the output shown.
        code, out, _ = await cli(
            "cmd", "ship1", "--home", home, "--timeout", "20", "--", "echo partial; exit 7"
        )
        assert code == 1, out
        assert "ship1 (error, " in out and "exit status 7" in out
        assert "    partial" in out
        assert out.splitlines()[-1].startswith("1/1 replied (1 with an error: ship1)")

        # Every node replies: exit 0.
        code, out, err = await cli("cmd", "ship1,ship2", "--home", home, "--", "true")
        assert code == 0, (out, err)
        assert out.splitlines()[-1] == "2/2 replied"


@handler("REQDiskUsage", description="embedding code's own method")
async def disk_usage(ctx: HandlerContext, msg: Message) -> bytes | None:
    return b"disk fine on " + ctx.node_name.encode()


async def test_send_wait_accepts_embedded_methods_and_shows_warnings_and_replies(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    central = Node(node_config(tmp_path, "central", nats_server.url), handlers=[disk_usage])
    home = str(central.config.home)
    message = {
        "toNode": "local",
        "method": "REQDiskUsage",
        "replyMethod": "REQToFileAppend",
        "directory": "disk",
        "fileName": "disk.log",
        "ACKTimeout": 5,
        "AckTimeout": 5,  # the typo: ignored, with a warning
        "retries": 3,
    }
    document = json.dumps([message]).encode()
    async with central:
        code, out, err = await cli("send", "-", "--wait=20", "--home", home, stdin=document)
        assert code == 0, (out, err)
        lines = out.splitlines()
        answer = json.loads(lines[0])
        assert answer["status"] == "accepted" and answer["method"] == "REQDiskUsage"
        [warning] = answer["warnings"]
        assert '"AckTimeout"' in warning and '"ACKTimeout"' in warning
        assert "central (ok, " in out and "    disk fine on central" in out
        assert lines[-1] == "1/1 replied"

        # Without --wait: the answers only, as before.
        code, out, _ = await cli("send", "-", "--home", home, stdin=document)
        assert code == 0 and [a["status"] for a in json_lines(out)] == ["accepted"]

        # --json: every line is JSON; a reply event carries the output.
        code, out, _ = await cli("send", "-", "--wait", "--json", "--home", home, stdin=document)
        assert code == 0
        lines_json = json_lines(out)
        assert lines_json[0]["status"] == "accepted"
        assert any(e.get("event") == "reply" and e["output"] == "disk fine on central"
                   for e in lines_json)  # fmt: skip
        assert lines_json[-1]["event"] == "summary" and lines_json[-1]["exitCode"] == 0


async def test_local_and_remote_rejections_have_one_shape(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    central = Node(node_config(tmp_path, "central", nats_server.url))
    bad = json.dumps([{"toNode": "ship1", "method": "REQCliComand", "RetryWait": 1}]).encode()
    async with central:
        code, out, _ = await cli("send", "-", "--home", str(central.config.home), stdin=bad)
        assert code == 1
        [local] = json_lines(out)
        [remote] = await send_document(central.config.socket_path, bad)
        assert local == remote
        assert set(local) == {"index", "status", "error", "field", "value", "allowed", "warnings"}
        assert local["field"] == "method" and local["status"] == "rejected"
        assert any('"RetryWait"' in w for w in local["warnings"])


async def test_every_input_answer_carries_the_warnings(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    tcp, http = free_loopback_port(), free_loopback_port()
    config = node_config(
        tmp_path,
        "central",
        nats_server.url,
        tcp_listener=f"127.0.0.1:{tcp}",
        http_listener=f"127.0.0.1:{http}",
    )
    typo = {"toNodes": ["ghost1", "ghost2"], "method": "REQPing", "AckTimeout": 5}
    document = json.dumps([typo]).encode()
    async with Node(config) as node:
        by_socket = await send_document(node.config.socket_path, document)
        by_tcp = await send_tcp(tcp, document)
        async with httpx.AsyncClient() as client:
            response = await client.post(f"http://127.0.0.1:{http}/", content=document)
        by_http = response.json()["accepted"]
        for answers in (by_socket, by_tcp, by_http):
            assert [a["toNode"] for a in answers] == ["ghost1", "ghost2"]
            for answer in answers:
                assert answer["status"] == "accepted"
                [warning] = answer["warnings"]
                assert warning.startswith('message 0: field "AckTimeout"')
                assert '"ACKTimeout"' in warning


async def test_the_replies_stream_reports_delivery_failure_and_ends(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """A message whose retries run out is settled as failed: no wait until the timeout."""
    central = Node(node_config(tmp_path, "central", nats_server.url))
    path = central.config.control_socket_path
    async with central:
        start = (await control_request(path, {"op": "audit.end"}))["seq"]
        [msg_id] = await central.submit(
            [Message(to_node="ghost", method="REQPing", ack_timeout=1, retries=0)]
        )
        request = {"op": "replies", "ids": [msg_id], "afterSeq": start, "timeout": 30}
        with trio.fail_after(20):
            events = [e async for e in control_stream(path, request)]
        assert all(e["ok"] for e in events)
        kinds = [e["event"] for e in events if e["event"] != "waiting"]
        assert kinds == ["state", "end"]
        assert events[0]["state"] == "failed" and events[0]["node"] == "ghost"
        [summary] = events[-1]["messages"]
        assert summary["state"] == "failed" and not events[-1]["timedOut"]

        # A bad request is refused with one error line.
        refused = [e async for e in control_stream(path, {"op": "replies", "ids": "x"})]
        assert len(refused) == 1 and not refused[0]["ok"] and '"ids"' in refused[0]["error"]


async def test_audit_reads_the_log_through_the_control_socket(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    central = Node(node_config(tmp_path, "central", nats_server.url))
    ship1 = Node(node_config(tmp_path, "ship1", nats_server.url))
    home = str(central.config.home)
    async with central, ship1:
        code, out, _ = await cli("cmd", "ship1", "--home", home, "--json", "--", "echo hi")
        assert code == 0
        [reply] = [e for e in json_lines(out) if e.get("event") == "reply"]
        sent = reply["id"]

        code, out, err = await cli("audit", "--home", home, "--id", sent, "--json")
        assert code == 0, err
        [record] = json.loads(out)
        assert record["direction"] == "out" and record["node"] == "ship1"
        assert record["outcome"] == "delivered" and record["method"] == "REQCliCommand"

        code, out, _ = await cli(
            "audit", "--home", home, "--node", "ship1", "--direction", "in", "--json"
        )
        replies = json.loads(out)
        assert [r["replyTo"] for r in replies] == [sent]
        assert replies[0]["id"] == reply["replyId"]

        code, out, _ = await cli("audit", "--home", home, "--since", "10m")
        assert code == 0
        assert "ago" in out and f"reply to {sent}" in out and "-> ship1" in out
        code, out, _ = await cli("audit", "--home", home, "--since", "2000-01-01", "--json")
        assert len(json.loads(out)) >= 2
        code, out, _ = await cli("audit", "--home", home, "--since", "later")
        assert code == 2 and out == ""


async def test_cmd_says_clearly_when_no_node_runs(tmp_path: Path) -> None:
    code, _, err = await cli("cmd", "ship1", "--home", str(tmp_path), "--", "true")
    assert code == 3 and "is it running?" in err


async def test_a_reply_is_streamed_the_moment_it_arrives_without_reading_the_audit_log(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """The replies stream reads the audit log when it starts; a reply that arrives later is
    handed over by the node's reply hub as its handler finishes: no read of the log after
    the first (the request's own outcome is looked up by its id), no polling delay."""
    central = Node(node_config(tmp_path, "central", nats_server.url))
    ship1 = Node(node_config(tmp_path, "ship1", nats_server.url))
    path = central.config.control_socket_path
    async with central, ship1:
        reads: list[tuple[float, str | None]] = []
        audit_log = central.store.audit_log

        async def counted(**kwargs: Any) -> Any:
            reads.append((trio.current_time(), kwargs.get("msg_id")))
            return await audit_log(**kwargs)

        central.store.audit_log = counted  # type: ignore[method-assign]
        start = (await control_request(path, {"op": "audit.end"}))["seq"]
        [msg_id] = await central.submit(
            [
                Message(
                    to_node="ship1",
                    method="REQCliCommand",
                    method_args=("sh", "-c", "sleep 1; echo late"),
                    reply_method="REQToFileAppend",
                    directory="cmd",
                    file_name="cmd.log",
                    ack_timeout=5,
                    retries=3,
                )
            ]
        )
        request = {"op": "replies", "ids": [msg_id], "afterSeq": start, "timeout": 30}
        events: list[tuple[float, dict[str, Any]]] = []
        with trio.fail_after(20):
            async for event in control_stream(path, request):
                events.append((trio.current_time(), event))
        [(received, reply)] = [(t, e) for t, e in events if e["event"] == "reply"]
        assert reply["output"] == "late\n" and reply["node"] == "ship1"
        assert events[-1][1]["event"] == "end" and not events[-1][1]["timedOut"]
        position_reads = [t for t, msg in reads if msg is None]
        assert position_reads and max(position_reads) < received - 0.5  # all at the start
        # The reply's handler finished (and was audited) moments before it was streamed.
        assert time.time() - reply["time"] < 5
