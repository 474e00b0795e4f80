"""Against nats-server: replies into a method only the asking node serves, directly and
through a relay node that does not serve it either."""

from __future__ import annotations

from pathlib import Path

import pytest

from steward_otp.handlers import HandlerContext, handler
from steward_otp.message import Message
from steward_otp.node import Node
from tests.conftest import NatsServer
from tests.nodes import file_text, node_config, wait_for

pytestmark = pytest.mark.integration


@handler("REQCollect", reply_capable=True, quick=True, description="keeps what replies carry")
async def collect(ctx: HandlerContext, msg: Message) -> bytes | None:
    with Path(msg.method_args[0]).open("ab") as f:
        f.write(msg.from_node.encode() + b": " + msg.data)
    return None


def command(collected: Path, text: str, **fields: object) -> Message:
    settings: dict[str, object] = {
        "to_node": "ship1",
        "method": "REQCliCommand",
        "method_args": ["echo", text],
        "ack_timeout": 2,
        "retries": 5,
        "reply_ack_timeout": 2,
        "reply_retries": 5,
        "method_timeout": 10,
        "reply_method": "REQCollect",
        "reply_method_args": [str(collected)],
    }
    settings.update(fields)
    return Message(**settings)  # type: ignore[arg-type]


async def test_a_stock_node_replies_into_the_asking_nodes_own_method(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    collected = tmp_path / "collected.txt"
    central = Node(node_config(tmp_path, "central", nats_server.url), handlers=[collect])
    ship1 = Node(node_config(tmp_path, "ship1", nats_server.url))
    async with central, ship1:
        await central.submit([command(collected, "direct")])
        await wait_for(lambda: file_text(collected) == "ship1: direct\n")


async def test_the_reply_comes_back_through_a_relay_node_that_does_not_serve_it(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    collected = tmp_path / "collected.txt"
    operator = Node(node_config(tmp_path, "operator", nats_server.url), handlers=[collect])
    central = Node(node_config(tmp_path, "central", nats_server.url))
    ship1 = Node(node_config(tmp_path, "ship1", nats_server.url))
    async with operator, central, ship1:
        await operator.submit([command(collected, "relayed", relay_via_node="central")])
        await wait_for(lambda: file_text(collected) == "ship1: relayed\n")
        # The reply went to central in a REQRelay envelope; central sends it on as itself.
        relay = central.snapshot().find("node/outbound/publishers/operator.REQCollect")
        assert relay is not None
