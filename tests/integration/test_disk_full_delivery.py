"""A receiver whose disk is full for a while, over a real nats-server: its senders keep
their messages, and every one of them runs exactly once when the disk has room again."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from steward_otp.node import Node
from tests.conftest import NatsServer
from tests.nodes import node_config, wait_for
from tests.unit.delivery.test_delivery_over_loopback import out_lines
from tests.unit.delivery.test_disk_full_inbound import big_line, unlimited
from tests.unit.test_store_trouble import _fill_up

pytestmark = pytest.mark.integration

COUNT = 50


async def test_a_receiver_full_for_a_while_gets_every_message_exactly_once(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    central = Node(node_config(tmp_path, "central", nats_server.url))
    ship1 = Node(node_config(tmp_path, "ship1", nats_server.url))
    async with central, ship1:
        await _fill_up(ship1.store)
        await central.submit([big_line(i) for i in range(COUNT)])
        await wait_for(lambda: central.outbox.stats.missed_acks >= COUNT, timeout=30)
        await trio.sleep(2)  # full for a few rounds of retries
        assert central.outbox.stats.delivered == 0
        assert out_lines(tmp_path) == []
        subscriber = ship1.snapshot().find("node/inbound/REQToFileAppend")
        assert subscriber is not None and subscriber.state == "running"
        assert subscriber.restart_count == 0

        await unlimited(ship1)
        await wait_for(lambda: central.outbox.stats.delivered == COUNT, timeout=60)
        await wait_for(lambda: len(out_lines(tmp_path)) >= COUNT, timeout=10)
        await trio.sleep(1.5)  # late retries are ACKed again, never run again
        subscriber = ship1.snapshot().find("node/inbound/REQToFileAppend")
    assert out_lines(tmp_path) == list(range(COUNT))
    assert subscriber is not None and subscriber.restart_count == 0
    assert central.outbox.stats.failed == 0
    assert ship1.store.stats().disk_full >= 2
