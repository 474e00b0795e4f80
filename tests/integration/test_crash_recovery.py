"""Nothing accepted is lost, nothing is run twice: kill -9 and lost ACKs."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from steward_otp.node import Node
from steward_otp.store import Store
from tests.conftest import NatsServer
from tests.integration.test_delivery import append_message
from tests.nodes import NodeProcess, file_text, node_config, send_document, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def processes() -> Iterator[list[NodeProcess]]:
    started: list[NodeProcess] = []
    yield started
    for process in started:
        process.kill()


def batch(start: int, count: int) -> bytes:
    return json.dumps(
        [
            {
                "toNode": "ship1",
                "method": "REQToFileAppend",
                "directory": "out",
                "fileName": "out.log",
                "data": f"{i}\n",
                "ACKTimeout": 1,
                "retries": 1000,
                "replyMethod": "REQNone",
            }
            for i in range(start, start + count)
        ]
    ).encode()


async def test_sender_killed_with_200_queued_delivers_all_exactly_once_after_restart(
    nats_server: NatsServer, tmp_path: Path, processes: list[NodeProcess]
) -> None:
    central = NodeProcess(tmp_path / "central", "central", nats_server.url)
    processes.append(central)
    await central.start()
    accepted: list[str] = []
    for start in range(0, 200, 20):
        answers = await send_document(central.socket_path, batch(start, 20))
        assert all(a["status"] == "accepted" for a in answers), answers
        accepted += [a["id"] for a in answers]
    assert len(set(accepted)) == 200
    central.kill()  # SIGKILL: no chance to flush or say goodbye

    await central.start()
    out = tmp_path / "ship1" / "data" / "out" / "ship1" / "out.log"
    async with Node(node_config(tmp_path, "ship1", nats_server.url)):
        await wait_for(lambda: len(file_text(out).splitlines()) >= 200, timeout=60)
        central.kill(signal.SIGTERM)
    assert central.process is not None and central.process.returncode == 0
    assert sorted(int(x) for x in file_text(out).splitlines()) == list(range(200))


async def test_lost_ack_is_acked_again_but_not_executed_again(
    nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ship1 persists the message, then its subscriber dies before the ACK goes out."""
    original = Store.accept_inbound_many
    crashed: list[str] = []

    async def accept_then_die(self: Store, records: list[tuple[str, str, str, bytes]]) -> list[str]:
        new = await original(self, records)
        central_ids = [msg_id for msg_id in new if msg_id.startswith("central:")]
        if central_ids and not crashed:
            crashed.extend(central_ids)
            raise RuntimeError("receiver died right after persisting")
        return new

    monkeypatch.setattr(Store, "accept_inbound_many", accept_then_die)
    out = tmp_path / "ship1" / "data" / "out" / "ship1" / "out.log"
    central = Node(node_config(tmp_path, "central", nats_server.url))
    ship1 = Node(node_config(tmp_path, "ship1", nats_server.url))
    async with central, ship1:
        await central.submit([append_message("ship1", "once\n", retries=10)])
        await wait_for(lambda: central.outbox.stats.delivered == 1)
        await wait_for(lambda: file_text(out) == "once\n")
        subscriber = ship1.snapshot().find("node/inbound/REQToFileAppend")
    assert crashed
    assert central.outbox.stats.missed_acks >= 1
    assert file_text(out) == "once\n"
    assert subscriber is not None and subscriber.restart_count == 1
