"""The broker's own max_payload, read from its INFO, is the limit checked at input (issue 17).

A nats-server started with a small ``max_payload`` (64 KiB): the bridge reports it once
connected, and a node refuses at input what that server could never carry, naming the
limit, while a message under it is delivered.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from steward_otp.bridge import BridgeSettings, NatsBridge
from steward_otp.limits import MAX_MESSAGE_BYTES, WIRE_HEADROOM
from steward_otp.transport import ConnectionState
from tests.conftest import NatsServer
from tests.nodes import NodeProcess, file_text, send_document, wait_for

pytestmark = pytest.mark.integration

SMALL = 64 * 1024


@pytest.fixture
def small_server(tmp_path: Path) -> Iterator[NatsServer]:
    config = tmp_path / "nats-small.conf"
    config.write_text(f"max_payload: {SMALL}\n")
    server = NatsServer(tmp_path / "nats-small", config_file=config)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_the_bridge_reports_the_servers_max_payload_once_connected(
    small_server: NatsServer,
) -> None:
    bridge = NatsBridge(BridgeSettings(url=small_server.url, name="probe"))
    assert bridge.max_payload == MAX_MESSAGE_BYTES  # not connected yet: the configured one
    async with trio.open_nursery() as nursery:
        await nursery.start(bridge.run)
        await wait_for(lambda: bridge.state is ConnectionState.CONNECTED)
        assert bridge.max_payload == SMALL
        assert bridge.info["max_payload"] == SMALL
        nursery.cancel_scope.cancel()
    assert bridge.max_payload == SMALL  # the last server's, until another one says otherwise


def _append(text: str) -> dict[str, object]:
    return {
        "toNode": "local",
        "method": "REQToFileAppend",
        "directory": "in",
        "fileName": "in.log",
        "data": text,
        "ACKTimeout": 2,
        "retries": 3,
        "replyMethod": "REQNone",
    }


async def test_a_message_over_the_servers_max_payload_is_refused_at_input_naming_the_limit(
    small_server: NatsServer, tmp_path: Path
) -> None:
    node = NodeProcess(tmp_path / "central", "central", small_server.url)
    await node.start()
    try:
        await wait_for(lambda: f"max_payload {SMALL} bytes" in file_text(node.log), timeout=20)

        over = _append("x" * (SMALL + 1000))
        [answer] = await send_document(node.socket_path, json.dumps(over).encode())
        assert answer["status"] == "rejected", answer
        assert answer["field"] == "data"
        assert f"max_payload is {SMALL} bytes" in answer["error"]
        assert f"max_payload of {SMALL} bytes" in answer["allowed"]

        under_text = "y" * (SMALL - WIRE_HEADROOM - 2000) + "\n"
        [answer] = await send_document(node.socket_path, json.dumps(_append(under_text)).encode())
        assert answer["status"] == "accepted", answer
        out = node.home / "data" / "in" / "central" / "in.log"
        await wait_for(lambda: file_text(out) == under_text, timeout=20)
    finally:
        node.kill()
