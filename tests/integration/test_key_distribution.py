"""Key distribution between real nodes on a real nats-server, every node checking signatures.

No key is set up by hand: ship1 makes its key known with its hello, the operator allows it on
central (the key authority), ship1 receives the allowed keys -- central's own trusted on first
contact -- and from then on central's commands run on ship1 and ship1's replies are accepted
on central. A node allowed later (ship2) reaches ship1's trust store by push.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from steward_otp.message import Message
from steward_otp.node import Node
from tests.conftest import NatsServer
from tests.nodes import file_text, node_config, wait_for

pytestmark = pytest.mark.integration


def checking_node(tmp_path: Path, name: str, url: str, **settings: object) -> Node:
    return Node(
        node_config(
            tmp_path,
            name,
            url,
            enable_signature_check=True,
            start_pub_hello=1,
            **settings,
        )
    )


def command(to: str, text: str) -> Message:
    return Message(
        to_node=to,
        method="REQCliCommand",
        method_args=["bash", "-c", f"echo {text}"],
        directory="keys",
        file_name="out.txt",
        ack_timeout=2,
        retries=30,
        reply_ack_timeout=2,
        reply_retries=30,
        method_timeout=10,
    )


async def test_keys_reach_the_nodes_from_central_without_setting_any_by_hand(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    central = checking_node(
        tmp_path, "central", nats_server.url, is_central_auth=True, is_central_error_logger=True
    )
    ship1 = checking_node(
        tmp_path, "ship1", nats_server.url, enable_key_updates=True, keys_update_interval=0.5
    )
    ship2 = checking_node(tmp_path, "ship2", nats_server.url)
    result = tmp_path / "central" / "data" / "keys" / "ship1" / "out.txt"
    async with central, ship1:
        await wait_for(lambda: "ship1" in central.security.trust.state.pending)
        assert ship1.security.key_for("central") is None

        await central.security.allow(["ship1"])
        await wait_for(lambda: ship1.security.key_for("central") == central.security.public_key)

        await central.submit([command("ship1", "trusted both ways")])
        await wait_for(lambda: file_text(result) == "trusted both ways\n")

        async with ship2:
            await wait_for(lambda: "ship2" in central.security.trust.state.pending)
            # The operator allows ship2 with REQKeysAllow on central: central pushes the keys.
            await central.submit(
                [
                    Message(
                        to_node="central",
                        method="REQKeysAllow",
                        method_args=["ship2"],
                        ack_timeout=2,
                        retries=5,
                        reply_method="REQNone",
                    )
                ]
            )
            await wait_for(lambda: ship1.security.key_for("ship2") == ship2.security.public_key)
        assert ship1.security.trust.state.allowed["central"] == central.security.public_key
    assert "ship2" in (tmp_path / "ship1" / "etc" / "signing" / "keys.json").read_text()
