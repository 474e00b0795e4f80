"""Liveness methods: REQHello, REQPing/REQPong and the in-process REQTest hook."""

from __future__ import annotations

import re
from pathlib import Path

import attrs
import pytest
import trio

from steward_otp.handlers import liveness
from steward_otp.handlers.base import HandlerError
from steward_otp.handlers.liveness import hello, ping, pong
from steward_otp.handlers.paths import UnsafePath
from steward_otp.message import Message, build_reply
from steward_otp.node import Node
from steward_otp.timers import hello_message
from tests.unit.handlers.fakes import FakeServices, context, request
from tests.unit.handlers.loopback_nodes import (
    LoopbackNet,
    file_text,
    message,
    subscriber_restarts,
    wait_for,
    wait_for_text,
)

TIMESTAMP = r"\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}"
"""Steward's timestamp, e.g. ``Wed Dec  2 11:04:07 2026``."""

# ----------------------------------------------------------------- the handlers, directly


async def test_hello_writes_who_said_hello_under_the_senders_folder(tmp_path: Path) -> None:
    services = FakeServices(tmp_path, node_name="central")
    msg = attrs.evolve(hello_message("ship1", "central", ack_timeout=5), id="ship1:h1")
    assert await hello(context(services, msg), msg) is None
    [write] = services.writes
    assert write.path == tmp_path / "data" / "hello-messages" / "ship1" / "hello.log"
    assert not write.append
    assert re.fullmatch(f'{TIMESTAMP}, Received hello from "ship1"\n', write.data.decode())
    assert services.hellos == ["ship1"]
    assert services.submitted == []


async def test_hello_from_a_node_whose_name_is_no_folder_name_is_refused(tmp_path: Path) -> None:
    services = FakeServices(tmp_path, node_name="central")
    msg = attrs.evolve(hello_message("..", "central", ack_timeout=5), id="x:h1")
    with pytest.raises(UnsafePath, match=r"node name '\.\.' cannot be used as a folder name"):
        await hello(context(services, msg), msg)
    assert services.writes == []
    assert services.hellos == []


async def test_ping_writes_who_pinged_and_answers_with_an_empty_reply(tmp_path: Path) -> None:
    services = FakeServices(tmp_path)
    msg = request("REQPing", directory="ping", file_name="ping.log", reply_method="REQPong")
    assert await ping(context(services, msg), msg) == b""
    [write] = services.writes
    assert write.path == tmp_path / "data" / "ping" / "ship1" / "ping.log"
    assert re.fullmatch(f"{TIMESTAMP}, ping received from central\n", write.data.decode())


async def test_pong_writes_which_node_answered_where_the_ping_said(tmp_path: Path) -> None:
    services = FakeServices(tmp_path, node_name="central")
    asked = request("REQPing", directory="ping", file_name="ping.log", reply_method="REQPong")
    reply = build_reply(asked, b"")
    assert reply is not None and reply.method == "REQPong"
    assert await pong(context(services, reply), reply) is None
    [write] = services.writes
    assert write.path == tmp_path / "data" / "ping" / "ship1" / "ping.log"
    assert re.fullmatch(f"{TIMESTAMP}, pong received from ship1\n", write.data.decode())


async def test_pong_that_answers_no_ping_is_a_handler_error(tmp_path: Path) -> None:
    services = FakeServices(tmp_path)
    msg = request("REQPong")
    with pytest.raises(HandlerError) as raised:
        await pong(context(services, msg), msg)
    assert str(raised.value).startswith('field "previousMessage" is missing')
    assert 'send REQPing with replyMethod "REQPong"' in str(raised.value)
    assert services.writes == []


async def test_test_hook_hands_the_message_to_the_listener(tmp_path: Path) -> None:
    services = FakeServices(tmp_path)
    msg = request("REQTest", data=b"probe")
    assert await liveness.test_hook(context(services, msg), msg) is None
    assert services.test_events == [msg]
    assert services.writes == []
    assert services.submitted == []


# ----------------------------------------------------------------- two nodes, end to end


def ping_message(**fields: str) -> Message:
    return message("REQPing", directory="ping", file_name="ping.log", **fields)


async def test_ping_is_answered_with_a_pong_written_on_the_pinging_node(
    net: LoopbackNet, pair: tuple[Node, Node]
) -> None:
    central, ship1 = pair
    pinged = net.result("ping", "ping.log", on="ship1")
    ponged = net.result("ping", "ping.log")
    async with central, ship1:
        await central.submit([ping_message(reply_method="REQPong")])
        await wait_for_text(pinged, "ping received from central")
        text = await wait_for_text(ponged, "pong received from ship1")
    assert re.fullmatch(f"{TIMESTAMP}, pong received from ship1\n", text)


async def test_a_nodes_hello_is_written_and_remembered_on_central(
    net: LoopbackNet, pair: tuple[Node, Node]
) -> None:
    central = pair[0]
    ship1 = net.node("ship1", start_pub_hello=60)  # says hello when it starts
    written = net.result("hello-messages", "hello.log")
    async with central, ship1:
        await wait_for_text(written, 'Received hello from "ship1"')
        await wait_for(lambda: "ship1" in central.last_hellos(), timeout=10)


async def test_test_messages_and_replies_reach_the_in_process_listener(
    pair: tuple[Node, Node],
) -> None:
    central, ship1 = pair
    async with central, ship1:
        await central.submit([message("REQTest", data=b"probe", reply_method="REQNone")])
        with trio.fail_after(10):
            received = await ship1.test_events.receive()
        assert (received.data, received.from_node) == (b"probe", "central")

        # As a replyMethod: the (empty) answer to a ping comes back to central's listener.
        await central.submit([ping_message(reply_method="REQTest")])
        with trio.fail_after(10):
            reply = await central.test_events.receive()
        assert reply.is_reply and reply.from_node == "ship1" and reply.data == b""
        assert reply.previous_message is not None
        assert reply.previous_message.method == "REQPing"


async def test_a_pong_without_its_ping_is_an_error_reply_and_pings_still_work(
    net: LoopbackNet, pair: tuple[Node, Node]
) -> None:
    central, ship1 = pair
    error = net.result("out", "out.txt.error")
    ponged = net.result("ping", "ping.log")
    async with central, ship1:
        await central.submit([message("REQPong")])
        text = await wait_for_text(error, 'field "previousMessage" is missing')
        assert text.startswith('error: REQPong: field "previousMessage" is missing')

        await central.submit([ping_message(reply_method="REQPong")])
        await wait_for_text(ponged, "pong received from ship1")
        assert subscriber_restarts(ship1, "REQPong") == 0
    assert "pong" not in file_text(net.result("out", "out.txt"))
