"""Relay: an operator node reaches ship1 only through central, and the reply comes back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from steward_otp.message import Message
from steward_otp.node import Node
from tests.conftest import NatsServer
from tests.nodes import file_text, node_config, wait_for

pytestmark = pytest.mark.integration

# Broker permissions make the point: operator and ship1 cannot publish to each other's
# subjects at all; only central may. Every node may answer requests on the reply inboxes
# (_SOTP.INBOX for steward-otp nodes, _INBOX for the client library's own).
PERMISSIONS = """
authorization {
  users = [
    {user: operator, password: op, permissions: {
        publish: ["central.>", "_INBOX.>", "_SOTP.INBOX.>"],
        subscribe: ["operator.>", "_INBOX.>", "_SOTP.INBOX.>"]}}
    {user: central, password: ce, permissions: {publish: [">"], subscribe: [">"]}}
    {user: ship1, password: s1, permissions: {
        publish: ["central.>", "_INBOX.>", "_SOTP.INBOX.>"],
        subscribe: ["ship1.>", "_INBOX.>", "_SOTP.INBOX.>"]}}
  ]
}
"""


@pytest.fixture
def guarded_server(tmp_path: Path) -> Iterator[NatsServer]:
    config = tmp_path / "nats.conf"
    config.write_text(PERMISSIONS)
    server = NatsServer(tmp_path / "nats-guarded", config_file=config)
    server.start()
    yield server
    server.stop()


def url_for(server: NatsServer, user: str, password: str) -> str:
    return f"nats://{user}:{password}@127.0.0.1:{server.port}"


def command(**fields: object) -> Message:
    settings: dict[str, object] = {
        "to_node": "ship1",
        "method": "REQCliCommand",
        "method_args": ["bash", "-c", "echo hello via central"],
        "directory": "relayed",
        "file_name": "out.txt",
        "ack_timeout": 2,
        "retries": 5,
        "reply_ack_timeout": 2,
        "reply_retries": 5,
        "method_timeout": 10,
        "reply_method": "REQToFileAppend",
    }
    settings.update(fields)
    return Message(**settings)  # type: ignore[arg-type]


async def test_operator_reaches_ship1_through_central_and_gets_the_reply(
    guarded_server: NatsServer, tmp_path: Path
) -> None:
    operator = Node(node_config(tmp_path, "operator", url_for(guarded_server, "operator", "op")))
    central = Node(node_config(tmp_path, "central", url_for(guarded_server, "central", "ce")))
    ship1 = Node(node_config(tmp_path, "ship1", url_for(guarded_server, "ship1", "s1")))
    result = tmp_path / "operator" / "data" / "relayed" / "ship1" / "out.txt"
    async with operator, central, ship1:
        # Direct: the broker refuses operator's publish to ship1, so it can never be ACKed.
        await operator.submit([command(retries=1, file_name="direct.txt")])
        await wait_for(lambda: operator.outbox.stats.failed == 1)

        # Through central: delivered, run on ship1, and the reply comes back the same way.
        await operator.submit([command(relay_via_node="central")])
        await wait_for(lambda: file_text(result) == "hello via central\n")
    assert not (tmp_path / "operator" / "data" / "relayed" / "ship1" / "direct.txt").exists()
