"""A sender whose disk is full for a while, over a real nats-server: none of its processes
restarts, and every message it holds runs exactly once on the receiver when the disk has
room again."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from steward_otp.node import Node
from steward_otp.outbound import disk_full_backoff
from tests.conftest import NatsServer
from tests.nodes import node_config, wait_for
from tests.unit.delivery.test_delivery_over_loopback import out_lines
from tests.unit.delivery.test_disk_full_inbound import big_line, unlimited
from tests.unit.delivery.test_disk_full_outbound import (
    delivered_and_ran_once,
    held_for_disk,
    outbound_restarts,
    refuse_sending_writes,
)
from tests.unit.test_store_trouble import _fill_up

pytestmark = pytest.mark.integration

COUNT = 50


async def test_a_sender_refused_every_write_delivers_everything_once(
    nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """First sends need no store write: they go out and run on ship1 while every write of
    central's sending side is refused. The ACKed messages wait in memory to be marked
    delivered, nothing restarts, and once there is room the outbox empties."""
    monkeypatch.setattr(disk_full_backoff, "FULL_RETRY_MAX", 1.0)
    central = Node(node_config(tmp_path, "central", nats_server.url))
    ship1 = Node(node_config(tmp_path, "ship1", nats_server.url))
    full = True
    refuse_sending_writes(central, lambda: full)
    async with central, ship1:
        await central.submit([big_line(i) for i in range(COUNT)])
        await wait_for(lambda: len(out_lines(tmp_path)) == COUNT, timeout=30)
        path = "node/outbound/publishers/ship1.REQToFileAppend"
        await wait_for(lambda: held_for_disk(central, path) == COUNT, timeout=10)
        pending = [r for r in await central.store.pending() if r.to_node == "ship1"]
        assert len(pending) == COUNT  # acknowledged, not yet marked delivered
        assert outbound_restarts(central) == [0, 0, 0]

        full = False
        await delivered_and_ran_once(central, tmp_path, COUNT)
        assert outbound_restarts(central) == [0, 0, 0]
    assert central.outbox.stats.failed == 0


async def test_a_sender_whose_store_fills_up_with_messages_in_flight_delivers_each_once(
    nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(disk_full_backoff, "FULL_RETRY_MAX", 1.0)
    central = Node(node_config(tmp_path, "central", nats_server.url))
    ship1 = Node(node_config(tmp_path, "ship1", nats_server.url))
    async with central:
        await central.submit([big_line(i) for i in range(COUNT)])
        await wait_for(lambda: central.outbox.stats.missed_acks >= COUNT, timeout=30)
        await _fill_up(central.store)
        async with ship1:  # the receiver comes up while the sender's store is full
            await wait_for(lambda: len(out_lines(tmp_path)) >= COUNT, timeout=30)
            await wait_for(lambda: central.store.stats().disk_full >= 1, timeout=10)
            await trio.sleep(2)
            assert outbound_restarts(central) == [0, 0, 0]

            await unlimited(central)
            await delivered_and_ran_once(central, tmp_path, COUNT)
            assert outbound_restarts(central) == [0, 0, 0]
            subscriber = ship1.snapshot().find("node/inbound/REQToFileAppend")
            assert subscriber is not None and subscriber.restart_count == 0
    assert central.outbox.stats.failed == 0
