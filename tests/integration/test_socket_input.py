"""The unix socket input: clear answers for bad input, the node keeps going."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from steward_otp.node import Node
from tests.conftest import NatsServer
from tests.nodes import file_text, node_config, send_document, wait_for

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


async def test_socket_accepts_good_and_explains_bad_messages_and_keeps_serving(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    node = Node(node_config(tmp_path, "central", nats_server.url))
    sock = node.config.socket_path
    out = tmp_path / "central" / "data" / "in" / "central" / "in.log"
    async with node:
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600

        [answer] = await send_document(sock, b'[{"toNode": "ship1", "method": ')
        assert answer["status"] == "rejected"
        assert "malformed JSON" in answer["error"]

        [answer] = await send_document(sock, b"- toNode: [unclosed\n  method: x\n")
        assert answer["status"] == "rejected" and "YAML" in answer["error"]

        answers = await send_document(
            sock,
            json.dumps(
                [
                    dict(GOOD, method="ECHORequest"),
                    {k: v for k, v in GOOD.items() if k != "toNode"},
                    GOOD,
                ]
            ).encode(),
        )
        by_status = {a["status"]: a for a in answers}
        unknown = next(a for a in answers if a.get("field") == "method")
        assert unknown["index"] == 0 and unknown["value"] == '"ECHORequest"'
        assert "REQToFileAppend" in unknown["allowed"]
        missing = next(a for a in answers if a["index"] == 1)
        assert missing["status"] == "rejected" and "toNode" in missing["error"]
        assert by_status["accepted"]["toNode"] == "central"
        assert by_status["accepted"]["index"] == 2

        huge = b"[" + b" " * (17 * 1024 * 1024) + b"]"
        [answer] = await send_document(sock, huge)
        assert answer["status"] == "rejected" and "larger than" in answer["error"]

        # Still alive: the next good message goes through.
        [answer] = await send_document(sock, json.dumps(GOOD).encode())
        assert answer["status"] == "accepted"
        await wait_for(lambda: file_text(out) == "good\ngood\n")
    assert not sock.exists()
