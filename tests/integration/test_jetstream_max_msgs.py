"""``jetstream_max_msgs_per_subject`` against a real nats-server with JetStream: the stream
the node makes keeps that many messages per node and method, the oldest dropped first."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from steward_otp.jetstream import STREAM, stream_info
from steward_otp.message import Message
from steward_otp.node import Node
from tests.conftest import NatsServer
from tests.integration.test_bridge import running_bridge
from tests.nodes import file_text, node_config, wait_for

pytestmark = pytest.mark.integration


def js_node(tmp_path: Path, name: str, server: NatsServer, **overrides: Any) -> Node:
    return Node(node_config(tmp_path, name, server.url, delivery="jetstream", **overrides))


def line(text: str) -> Message:
    return Message(
        to_node="ship1",
        method="REQToFileAppend",
        data=f"{text}\n".encode(),
        directory="out",
        file_name="out.log",
        ack_timeout=5,
        retries=10,
        reply_method="REQNone",
    )


async def stream_state(server: NatsServer) -> tuple[dict[str, Any], dict[str, Any]]:
    """The stream's configuration and state, as the broker reports them."""
    async with running_bridge(server.url, "probe") as bridge:
        reply = await bridge.request(f"$JS.API.STREAM.INFO.{STREAM}", b"", timeout=5)
        state = await stream_info(bridge)
    return json.loads(reply.payload)["config"], state


async def stored(node: Node, count: int) -> None:
    """Wait until ``count`` messages of ``node`` are stored by the broker."""
    await wait_for(lambda: node.outbox.stats.delivered == count, timeout=20)


async def test_the_stream_keeps_jetstream_max_msgs_per_subject_messages_per_subject(
    jetstream_server: NatsServer, tmp_path: Path
) -> None:
    async with js_node(
        tmp_path, "central", jetstream_server, jetstream_max_msgs_per_subject=3
    ) as central:
        await wait_for(lambda: central.stream_intake is not None and central.stream_intake.ready)
        for i in range(10):  # one at a time: the stream stores them in this order
            await central.submit([line(str(i))])
            await stored(central, i + 1)
    config, state = await stream_state(jetstream_server)
    assert config["max_msgs_per_subject"] == 3  # default 0: -1 (no limit) for the broker
    assert state["messages"] == 3
    # ship1 starts later and gets only the newest three.
    out = tmp_path / "ship1" / "data" / "out" / "ship1" / "out.log"
    async with js_node(tmp_path, "ship1", jetstream_server, jetstream_max_msgs_per_subject=3):
        await wait_for(lambda: len(file_text(out).split()) >= 3, timeout=30)
    assert file_text(out).split() == ["7", "8", "9"]
