"""REQOpProcessList / Start / Stop across two real nodes: central steers ship1's tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from steward_otp.message import Message
from steward_otp.node import Node
from tests.conftest import NatsServer
from tests.nodes import file_text, node_config, wait_for

pytestmark = pytest.mark.integration


def operation(method: str, args: list[str], file_name: str = "ops.log") -> Message:
    return Message(
        to_node="ship1",
        method=method,
        method_args=args,
        directory="ops",
        file_name=file_name,
        ack_timeout=5,
        retries=3,
        method_timeout=10,
        reply_method="REQToFileAppend",
    )


def ping(retries: int = 3) -> Message:
    return Message(
        to_node="ship1",
        method="REQPing",
        reply_method="REQPong",
        directory="ping",
        file_name="ping.log",
        ack_timeout=1,
        retries=retries,
    )


def running(node: Node, path: str) -> bool:
    entry = node.snapshot().find(path)
    return entry is not None and entry.state == "running"


async def test_process_list_replies_with_the_supervision_tree(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    central = Node(node_config(tmp_path, "central", nats_server.url))
    ship1 = Node(node_config(tmp_path, "ship1", nats_server.url))
    out = tmp_path / "central" / "data" / "ops" / "ship1" / "ops.log"
    async with central, ship1:
        await central.submit([operation("REQOpProcessList", [])])
        await wait_for(lambda: "REQOpProcessStop" in file_text(out))
    lines = file_text(out).splitlines()
    assert lines[0].split() == ["PROCESS", "KIND", "STATE", "RESTARTS", "UPTIME", "INFO"]
    assert lines[1].split()[:3] == ["node", "rest_for_one", "running"]
    assert any("REQPing" in line and "subject=ship1.REQPing.EventACK" in line for line in lines)
    assert any(line.split()[1:4] == ["inbound", "one_for_one", "running"] for line in lines)


async def test_a_stopped_subscriber_leaves_pings_unanswered_until_it_is_started_again(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    central = Node(node_config(tmp_path, "central", nats_server.url))
    ship1 = Node(node_config(tmp_path, "ship1", nats_server.url))
    out = tmp_path / "central" / "data" / "ops" / "ship1" / "ops.log"
    pong = tmp_path / "central" / "data" / "ping" / "ship1" / "ping.log"
    error_log = tmp_path / "central" / "data" / "errorLog" / "errorCentral" / "error.log"
    async with central, ship1:
        await central.submit([operation("REQOpProcessStop", ["REQPing", "ship1", "subscriber"])])
        await wait_for(lambda: "info: OpProcessStop: process stopped" in file_text(out))
        assert "method: ship1.REQPing.EventACK on: ship1" in file_text(out)
        assert ship1.snapshot().find("node/inbound/REQPing") is None

        [unanswered] = await central.submit([ping(retries=1)])
        await wait_for(lambda: "max retries reached" in file_text(error_log))
        [row] = await central.store.list_outbox(states=["failed"])
        assert row.msg_id == unanswered
        assert not pong.exists()

        await central.submit([operation("REQOpProcessStart", ["REQPing"])])
        await wait_for(lambda: "info: OpProcessStart: started" in file_text(out))
        assert "subject: ship1.REQPing.EventACK: node: ship1" in file_text(out)
        assert running(ship1, "node/inbound/REQPing")

        await central.submit([ping()])
        await wait_for(lambda: "pong received from ship1" in file_text(pong))


async def test_process_control_refuses_what_it_cannot_do_with_an_error_reply(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    central = Node(node_config(tmp_path, "central", nats_server.url))
    ship1 = Node(node_config(tmp_path, "ship1", nats_server.url))
    error = tmp_path / "central" / "data" / "ops" / "ship1" / "ops.log.error"
    async with central, ship1:
        await central.submit(
            [
                operation("REQOpProcessStop", ["REQOpProcessStop"]),
                operation("REQOpProcessStart", ["REQPing"]),
                operation("REQOpProcessStart", ["REQNoSuchMethod"]),
                operation("REQOpProcessStop", ["REQPing", "ship1", "publisher"]),
                operation("REQOpProcessStart", []),
            ]
        )
        await wait_for(lambda: "keep the node controllable" in file_text(error))
        await wait_for(lambda: "a subscriber for REQPing runs already on ship1" in file_text(error))
        await wait_for(lambda: "value 'REQNoSuchMethod' is not a method" in file_text(error))
        await wait_for(lambda: "value 'publisher' cannot be stopped" in file_text(error))
        await wait_for(lambda: 'field "methodArgs": value [] names no method' in file_text(error))
        # Stopping what is not running says so, once it is gone.
        await central.submit([operation("REQOpProcessStop", ["REQTailFile"])])
        await wait_for(lambda: "process stopped" in file_text(error.with_suffix("")))
        await central.submit([operation("REQOpProcessStop", ["REQTailFile"])])
        await wait_for(
            lambda: "did not find process to stop: ship1.REQTailFile.EventACK" in file_text(error)
        )
        assert running(ship1, "node/inbound/REQOpProcessStop")
