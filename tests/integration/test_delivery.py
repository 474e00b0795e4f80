"""Two real nodes exchange commands through a real nats-server."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from steward_otp.message import Message
from steward_otp.node import Node
from tests.conftest import NatsServer
from tests.nodes import file_text, node_config, wait_for

pytestmark = pytest.mark.integration


async def test_ping_from_central_to_ship1_writes_the_reply_on_central(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    central = Node(node_config(tmp_path, "central", nats_server.url))
    ship1 = Node(node_config(tmp_path, "ship1", nats_server.url))
    async with central, ship1:
        await central.submit(
            [
                Message(
                    to_node="ship1",
                    method="REQPing",
                    directory="ping",
                    file_name="ping.log",
                    ack_timeout=5,
                    retries=3,
                )
            ]
        )
        ping_file = tmp_path / "ship1" / "data" / "ping" / "ship1" / "ping.log"
        reply_file = tmp_path / "central" / "data" / "ping" / "ship1" / "ping.log"
        await wait_for(lambda: "ping received from central" in file_text(ping_file))
        await wait_for(reply_file.exists)


def append_message(to_node: str, data: str, **fields: object) -> Message:
    """A REQToFileAppend writing ``data`` into ``data/out/<toNode>/out.log`` on ``to_node``."""
    settings: dict[str, object] = {
        "to_node": to_node,
        "method": "REQToFileAppend",
        "directory": "out",
        "file_name": "out.log",
        "data": data.encode(),
        "ack_timeout": 1,
        "retries": 30,
        "reply_method": "REQNone",
    }
    settings.update(fields)
    return Message(**settings)  # type: ignore[arg-type]


def lines_of(path: Path) -> list[str]:
    return file_text(path).splitlines()


async def test_message_to_an_offline_node_is_delivered_once_when_it_comes_up(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    central = Node(node_config(tmp_path, "central", nats_server.url))
    out = tmp_path / "ship1" / "data" / "out" / "ship1" / "out.log"
    async with central:
        await central.submit([append_message("ship1", "hello ship1\n")])
        # ship1 is not running for the first five attempts (ACKTimeout 1: about 5 s).
        await wait_for(lambda: central.outbox.stats.missed_acks >= 5)
        async with Node(node_config(tmp_path, "ship1", nats_server.url)):
            await wait_for(lambda: central.outbox.stats.delivered == 1)
            await wait_for(lambda: lines_of(out) == ["hello ship1"])
            rows = await central.store.list_outbox()
            assert [r.msg_id for r in rows] == []
    assert lines_of(out) == ["hello ship1"]


async def test_a_node_that_comes_up_gets_its_messages_by_probe_not_after_the_ack_timeout(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    central = Node(node_config(tmp_path, "central", nats_server.url))
    out = tmp_path / "ship1" / "data" / "out" / "ship1" / "out.log"
    async with central:
        messages = [append_message("ship1", f"{i}\n", ack_timeout=60) for i in range(50)]
        await central.submit(messages)
        # The broker answers "no responders": central takes ship1 as silent and probes.
        await wait_for(lambda: _silent(central, "ship1.REQToFileAppend"))
        async with Node(node_config(tmp_path, "ship1", nats_server.url)):
            back_at = trio.current_time()
            await wait_for(lambda: central.outbox.stats.delivered == 50, timeout=30)
            took = trio.current_time() - back_at
            await wait_for(lambda: len(lines_of(out)) == 50)
    assert took < 15  # a 60 s ACK timeout would have kept them waiting
    assert central.outbox.stats.missed_acks == 0
    assert sorted(int(x) for x in lines_of(out)) == list(range(50))


def _silent(node: Node, publisher: str) -> bool:
    """Whether ``node``'s Publisher ``publisher`` takes its destination as silent."""
    for child in node.snapshot().walk():
        if child.id == publisher:
            return bool(child.info.get("destination_silent"))
    return False


async def test_broker_outage_in_the_middle_of_500_messages_loses_and_repeats_nothing(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    central = Node(node_config(tmp_path, "central", nats_server.url))
    ship1 = Node(node_config(tmp_path, "ship1", nats_server.url))
    out = tmp_path / "ship1" / "data" / "out" / "ship1" / "out.log"
    async with central, ship1:
        await central.submit([append_message("ship1", f"{i}\n") for i in range(250)])
        await wait_for(lambda: central.outbox.stats.delivered >= 50)
        await nats_server.astop()
        await central.submit([append_message("ship1", f"{i}\n") for i in range(250, 500)])
        await trio.sleep(5)  # the outage itself: five seconds without a broker
        await nats_server.astart()
        await wait_for(lambda: len(lines_of(out)) >= 500, timeout=60)
        await wait_for(lambda: central.outbox.stats.delivered == 500, timeout=60)
    assert sorted(int(x) for x in lines_of(out)) == list(range(500))


async def test_max_retries_reached_is_logged_centrally_and_the_message_is_failed(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    central = Node(node_config(tmp_path, "central", nats_server.url))
    error_log = tmp_path / "central" / "data" / "errorLog" / "errorCentral" / "error.log"
    async with central:
        [msg_id] = await central.submit(
            [append_message("ghost", "nobody\n", retries=1, method_args=["a", "b"])]
        )
        await wait_for(lambda: "max retries reached" in file_text(error_log))
        [row] = await central.store.list_outbox(states=["failed"])
    assert row.msg_id == msg_id
    line = next(x for x in lines_of(error_log) if "max retries reached" in x)
    assert "node: central, info: toNode: ghost, fromNode: central" in line
    assert "subject: ghost.REQToFileAppend.EventACK, methodArgs: [a b]" in line


async def test_an_offline_destination_never_holds_up_another(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    central = Node(node_config(tmp_path, "central", nats_server.url))
    ship1 = Node(node_config(tmp_path, "ship1", nats_server.url))
    out = tmp_path / "ship1" / "data" / "out" / "ship1" / "out.log"
    async with central, ship1:
        # 50 messages wait for a node that is not there, each retrying every second...
        await central.submit([append_message("ghost", f"{i}\n", retries=100) for i in range(50)])
        # ...while messages to ship1, sent after them, go straight through.
        await central.submit([append_message("ship1", f"{i}\n") for i in range(50)])
        await wait_for(lambda: len(lines_of(out)) == 50)
        # ship1 wrote them; the ACKs reach central a moment later.
        await wait_for(lambda: central.outbox.stats.delivered >= 50)
        held = await central.store.list_outbox()
        assert {r.to_node for r in held} == {"ghost"}


async def test_nodes_say_hello_to_central_periodically(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    central = Node(node_config(tmp_path, "central", nats_server.url))
    ship1 = Node(node_config(tmp_path, "ship1", nats_server.url, start_pub_hello=1))
    hello = tmp_path / "central" / "data" / "hello-messages" / "ship1" / "hello.log"
    async with central, ship1:
        await wait_for(lambda: 'Received hello from "ship1"' in file_text(hello))
        first = file_text(hello)
        await wait_for(lambda: file_text(hello) not in ("", first))
