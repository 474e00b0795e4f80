"""The TCP and HTTP inputs: messages delivered, bad input explained, the node keeps going."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from steward_otp.node import Node
from tests.conftest import NatsServer, free_loopback_port
from tests.nodes import file_text, node_config, wait_for

pytestmark = pytest.mark.integration

GOOD = {
    "toNode": "local",
    "method": "REQToFileAppend",
    "directory": "in",
    "fileName": "in.log",
    "data": "good\n",
    "ACKTimeout": 2,
    "retries": 3,
    "replyMethod": "REQNone",
}
LIMIT = 16 * 1024 * 1024


def central_error_log(tmp_path: Path) -> Path:
    return tmp_path / "central" / "data" / "errorLog" / "errorCentral" / "error.log"


async def send_tcp(port: int, document: bytes) -> list[dict[str, Any]]:
    """The TCP input's client: write the document, shut down writing, read answer lines."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(document)
        await stream.send_eof()
        chunks = []
        while chunk := await stream.receive_some(1 << 16):
            chunks.append(chunk)
    return [json.loads(line) for line in b"".join(chunks).decode().splitlines() if line]


async def test_tcp_listener_accepts_good_and_explains_bad_messages_and_keeps_serving(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    port = free_loopback_port()
    node = Node(node_config(tmp_path, "central", nats_server.url, tcp_listener=f"127.0.0.1:{port}"))
    out = tmp_path / "central" / "data" / "in" / "central" / "in.log"
    errors = central_error_log(tmp_path)
    async with node:
        [answer] = await send_tcp(port, json.dumps([GOOD]).encode())
        assert answer["status"] == "accepted" and answer["toNode"] == "central"
        await wait_for(lambda: file_text(out) == "good\n")

        [answer] = await send_tcp(port, b'[{"toNode": "ship1", "method": ')
        assert answer["status"] == "rejected" and "malformed JSON" in answer["error"]
        [answer] = await send_tcp(port, b"- toNode: [unclosed\n  method: x\n")
        assert answer["status"] == "rejected" and "YAML" in answer["error"]

        batch = [dict(GOOD, method="ECHORequest"), {k: v for k, v in GOOD.items() if k != "toNode"}]
        unknown, missing = await send_tcp(port, json.dumps(batch).encode())
        assert unknown["field"] == "method" and unknown["value"] == '"ECHORequest"'
        assert "REQToFileAppend" in unknown["allowed"]
        assert missing["status"] == "rejected" and missing["field"] == "toNode"

        [answer] = await send_tcp(port, b"[" + b" " * (LIMIT + 1) + b"]")
        assert answer["status"] == "rejected" and "larger than" in answer["error"]

        # Still alive: the next good message goes through.
        [answer] = await send_tcp(port, json.dumps(GOOD).encode())
        assert answer["status"] == "accepted"
        await wait_for(lambda: file_text(out) == "good\ngood\n")

        # Bad input reached the (central) error log, with the listener named.
        await wait_for(lambda: "malformed json received on tcp listener" in file_text(errors))
        await wait_for(lambda: "not a known method" in file_text(errors))


@pytest.mark.parametrize("listener", ["tcp_listener", "http_listener"])
async def test_listener_that_cannot_bind_stops_the_node_naming_the_address(
    nats_server: NatsServer, tmp_path: Path, caplog: pytest.LogCaptureFixture, listener: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        node = Node(node_config(tmp_path, "central", nats_server.url, **{listener: address}))
        assert await node.run() == 1
    assert f"cannot listen on {address}: Address already in use" in caplog.text


async def test_http_listener_answers_with_status_and_json_and_keeps_serving(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    port = free_loopback_port()
    node = Node(
        node_config(tmp_path, "central", nats_server.url, http_listener=f"127.0.0.1:{port}")
    )
    out = tmp_path / "central" / "data" / "in" / "central" / "in.log"
    errors = central_error_log(tmp_path)
    url = f"http://127.0.0.1:{port}/"
    async with node:
        async with httpx.AsyncClient(timeout=30) as client:
            await _http_exchanges(client, url, out)
        # Still alive: the next good message goes through.
        async with httpx.AsyncClient(timeout=30) as client:
            reply = await client.post(url, content=json.dumps(dict(GOOD, data="last\n")))
        assert reply.status_code == 202
        await wait_for(lambda: file_text(out).endswith("last\n"))
        await wait_for(lambda: "malformed json received on HTTPListener" in file_text(errors))


async def _http_exchanges(client: httpx.AsyncClient, url: str, out: Path) -> None:
    reply = await client.post(url, content=json.dumps([GOOD]))
    assert reply.status_code == 202
    assert reply.headers["content-type"] == "application/json"
    [answer] = reply.json()["accepted"]
    assert answer["status"] == "accepted" and answer["toNode"] == "central"
    await wait_for(lambda: file_text(out) == "good\n")

    # YAML works as well, on any path.
    yaml_doc = "- toNode: local\n  method: REQToFileAppend\n  directory: in\n"
    yaml_doc += "  fileName: in.log\n  data: yaml\n  replyMethod: REQNone\n"
    reply = await client.post(url + "any/path", content=yaml_doc)
    assert reply.status_code == 202
    await wait_for(lambda: file_text(out) == "good\nyaml")

    reply = await client.post(url, content=b'[{"toNode": "ship1", "method": ')
    assert reply.status_code == 400
    [error] = reply.json()["errors"]
    assert "malformed JSON" in error["error"] and reply.json()["accepted"] == []

    # A partly bad batch: the bad ones are explained, the good one still goes through.
    batch = [
        dict(GOOD, method="ECHORequest"),
        {k: v for k, v in GOOD.items() if k != "toNode"},
        dict(GOOD, data="partly\n"),
    ]
    reply = await client.post(url, content=json.dumps(batch))
    assert reply.status_code == 400
    body = reply.json()
    assert {e["field"] for e in body["errors"]} == {"method", "toNode"}
    [accepted] = body["accepted"]
    assert accepted["status"] == "accepted" and accepted["id"]
    await wait_for(lambda: file_text(out).endswith("partly\n"))

    reply = await client.post(url, content=b"")
    assert reply.status_code == 400 and "no messages" in reply.json()["errors"][0]["error"]

    reply = await client.get(url)
    assert reply.status_code == 405 and reply.headers["allow"] == "POST"
    assert "GET" in reply.json()["errors"][0]["error"]

    # Too large, told by Content-Length before the body is read ...
    reply = await client.post(url, content=b"[" + b" " * LIMIT + b"]")
    assert reply.status_code == 413
    assert "larger than" in reply.json()["errors"][0]["error"]

    # ... and found while streaming a body sent without a length.
    async def chunks() -> Any:
        for _ in range(17):
            yield b" " * (1024 * 1024)

    reply = await client.post(url, content=chunks())
    assert reply.status_code == 413
