"""The per-message ``jetstream`` field against a real nats-server: it wins over the sending
node's ``delivery`` in both directions, and a broker without JetStream is answered clearly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from steward_otp.control.client import control_stream
from steward_otp.jetstream import stream_info
from steward_otp.message import Message
from steward_otp.node import Node
from steward_otp.store.records import OutboxState
from tests.conftest import NatsServer
from tests.integration.test_bridge import running_bridge
from tests.nodes import file_text, node_config, wait_for

pytestmark = pytest.mark.integration


def node(tmp_path: Path, name: str, server: NatsServer, delivery: str, **extra: Any) -> Node:
    return Node(node_config(tmp_path, name, server.url, delivery=delivery, **extra))


def line(to_node: str, text: str, *, jetstream: bool | None) -> Message:
    return Message(
        to_node=to_node,
        method="REQToFileAppend",
        data=f"{text}\n".encode(),
        directory="out",
        file_name="out.log",
        ack_timeout=5,
        retries=10,
        reply_method="REQNone",
        jetstream=jetstream,
    )


def out_lines(tmp_path: Path, name: str) -> list[str]:
    return file_text(tmp_path / name / "data" / "out" / name / "out.log").split()


async def stored_in_stream(server: NatsServer) -> int:
    async with running_bridge(server.url, "probe") as bridge:
        return int((await stream_info(bridge)).get("messages", 0))


async def test_a_core_node_sends_through_the_stream_when_the_message_asks(
    jetstream_server: NatsServer, tmp_path: Path
) -> None:
    # No JetStream node has run yet: the stream does not exist; the sender makes it.
    async with node(tmp_path, "central", jetstream_server, "core") as central:
        await central.submit([line("ship1", str(i), jetstream=True) for i in range(20)])
        await wait_for(lambda: central.outbox.stats.delivered == 20, timeout=30)
        assert await central.store.pending() == []
    assert await stored_in_stream(jetstream_server) == 20
    # The sender is gone; ship1 (JetStream delivery) starts later and runs each once.
    async with node(tmp_path, "ship1", jetstream_server, "jetstream"):
        await wait_for(lambda: len(out_lines(tmp_path, "ship1")) >= 20, timeout=30)
    assert sorted(out_lines(tmp_path, "ship1"), key=int) == [str(i) for i in range(20)]


async def test_a_jetstream_node_sends_core_when_the_message_says_false(
    jetstream_server: NatsServer, tmp_path: Path
) -> None:
    central = node(tmp_path, "central", jetstream_server, "jetstream")
    ship1 = node(tmp_path, "ship1", jetstream_server, "core")  # consumes no stream
    async with central, ship1:
        await wait_for(lambda: central.stream_intake is not None and central.stream_intake.ready)
        await central.submit([line("ship1", "core", jetstream=False)])
        await wait_for(lambda: out_lines(tmp_path, "ship1") == ["core"], timeout=20)
        # The node default still goes through the stream (ship1 does not take it from there).
        await central.submit([line("ship1", "stream", jetstream=None)])
        await wait_for(lambda: central.outbox.stats.delivered == 2, timeout=20)
        assert await stored_in_stream(jetstream_server) == 1
        outbound = central.snapshot().find("node/outbound/publishers")
        assert outbound is not None
        publishers = {child.path.rpartition("/")[2] for child in outbound.children}
    assert "ship1.REQToFileAppend@core" in publishers
    assert "ship1.REQToFileAppend" in publishers
    assert out_lines(tmp_path, "ship1") == ["core"]


async def test_a_message_asking_for_jetstream_on_a_broker_without_it_fails_clearly(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    central = node(tmp_path, "central", nats_server, "core")
    ship1 = node(tmp_path, "ship1", nats_server, "core")
    async with central, ship1:
        (msg_id,) = await central.submit([line("ship1", "stream", jetstream=True)])
        await wait_for(lambda: central.outbox.stats.failed == 1, timeout=30)
        rows = await central.store.list_outbox(states=[OutboxState.FAILED])
        assert [r.msg_id for r in rows] == [msg_id]
        reason = rows[0].reason
        assert reason is not None
        # The node keeps running: an ordinary message still gets through.
        await central.submit([line("ship1", "core", jetstream=None)])
        await wait_for(lambda: out_lines(tmp_path, "ship1") == ["core"], timeout=20)
    assert "this message asks for JetStream but the broker" in reason
    assert nats_server.url.rpartition(":")[2] in reason  # names the broker
    assert "has none" in reason


async def test_send_answers_the_sender_with_the_reason(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async with node(tmp_path, "central", nats_server, "core") as central:
        accepted = await central.accept_document(
            b'{"toNode": "ship1", "method": "REQPing", "jetstream": true, "ACKTimeout": 5}'
        )
        (answer,) = accepted
        assert answer.accepted
        events = [
            event
            async for event in control_stream(
                central.config.control_socket_path,
                {"op": "replies", "ids": [answer.id], "timeout": 30},
            )
        ]
    (end,) = [e for e in events if e.get("event") == "end"]
    (summary,) = end["messages"]
    assert summary["state"] == "failed"
    assert "asks for JetStream" in summary["reason"]


async def test_a_stream_made_by_a_sender_takes_the_limits_of_the_first_jetstream_node(
    jetstream_server: NatsServer, tmp_path: Path
) -> None:
    async with node(
        tmp_path, "central", jetstream_server, "core", jetstream_max_age_seconds=3600
    ) as central:
        await central.submit([line("ship1", "x", jetstream=True)])
        await wait_for(lambda: central.outbox.stats.delivered == 1, timeout=30)
    assert await stream_max_age(jetstream_server) == 3600
    # ship1 keeps the stream 2 days: its limits apply (the stream is updated, not refused).
    async with node(
        tmp_path, "ship1", jetstream_server, "jetstream", jetstream_max_age_seconds=2 * 86400
    ) as ship1:
        await wait_for(lambda: ship1.stream_intake is not None and ship1.stream_intake.ready)
        await wait_for(lambda: out_lines(tmp_path, "ship1") == ["x"], timeout=20)
    assert await stream_max_age(jetstream_server) == 2 * 86400


async def stream_max_age(server: NatsServer) -> float:
    async with running_bridge(server.url, "probe") as bridge:
        reply = await bridge.request("$JS.API.STREAM.INFO.NODES", b"", timeout=5)
    return int(json.loads(reply.payload)["config"]["max_age"]) / 1e9
