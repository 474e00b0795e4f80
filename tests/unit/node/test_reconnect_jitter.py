"""The reconnect jitter settings reach the NATS client: a random extra wait per connection."""

from __future__ import annotations

from pathlib import Path

from steward_otp.bridge import BridgeSettings, NatsBridge
from steward_otp.node import Node
from tests.nodes import node_config


def test_the_bridge_adds_up_to_the_jitter_to_its_reconnect_wait() -> None:
    waits = {
        NatsBridge(
            BridgeSettings(url="nats://127.0.0.1:1", name="n", reconnect_jitter=0.5)
        )._connect_options()["reconnect_time_wait"]
        for _ in range(50)
    }
    assert all(1.0 <= wait <= 1.5 for wait in waits)
    assert len(waits) > 1  # drawn at random, not a fixed offset


def test_plain_and_tls_connections_take_their_own_jitter(tmp_path: Path) -> None:
    plain = Node(node_config(tmp_path, "a", "nats://127.0.0.1:1", nats_reconnect_jitter=0.3))
    tls = Node(node_config(tmp_path, "b", "tls://127.0.0.1:1", nats_reconnect_jitter_tls=2.5))
    assert isinstance(plain.bridge, NatsBridge) and isinstance(tls.bridge, NatsBridge)
    assert plain.bridge.settings.reconnect_jitter == 0.3
    assert tls.bridge.settings.reconnect_jitter == 2.5
