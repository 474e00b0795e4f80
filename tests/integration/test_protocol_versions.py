"""The delivery protocol's version header against a real nats-server and a real node."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from steward_otp import codec
from steward_otp.delivery.protocol import VERSION_HEADER, Ack
from steward_otp.message import Message
from steward_otp.node import Node
from tests.conftest import NatsServer
from tests.integration.test_bridge import running_bridge
from tests.nodes import file_text, node_config, wait_for

pytestmark = pytest.mark.integration

SUBJECT = "ship1.REQToFileAppend.EventACK"


def append(msg_id: str, text: str) -> Message:
    return Message(
        id=msg_id,
        to_node="ship1",
        from_node="elsewhere",
        method="REQToFileAppend",
        data=text.encode(),
        directory="out",
        file_name="out.log",
        ack_timeout=5,
        reply_method="REQNone",
    )


async def test_unknown_version_is_rejected_by_id_and_steward_request_reply_still_works(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    out = tmp_path / "ship1" / "data" / "out" / "ship1" / "out.log"
    async with (
        Node(node_config(tmp_path, "ship1", nats_server.url)),
        running_bridge(nats_server.url, "elsewhere") as bridge,
    ):
        inbox = bridge.new_inbox()
        acks = bridge.subscribe(inbox)
        await bridge.flush()
        future = codec.encode(append("elsewhere:9", "never\n"), compress_threshold=None)
        with trio.fail_after(20):
            while True:  # until ship1's subscription is in place
                bridge.publish_nowait(
                    SUBJECT, future.payload, {**future.headers, VERSION_HEADER: "9"}, inbox
                )
                with trio.move_on_after(0.5):
                    ack = Ack.decode((await acks.receive.receive()).payload)
                    break
        steward = codec.encode(append("elsewhere:1", "steward\n"), compress_threshold=None)
        reply = await bridge.request(SUBJECT, steward.payload, steward.headers, timeout=10)
        await wait_for(lambda: file_text(out) == "steward\n")
    assert ack.accepted == ()
    assert ack.rejected == (
        (
            "elsewhere:9",
            "header \"sotp\": protocol version '9' is not supported; allowed: 2",
        ),
    )
    assert reply.payload == b""
    assert file_text(out) == "steward\n"


async def test_a_version_header_that_is_no_number_is_rejected_by_id_and_the_node_stays_up(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    out = tmp_path / "ship1" / "data" / "out" / "ship1" / "out.log"
    ship1 = Node(node_config(tmp_path, "ship1", nats_server.url))
    async with ship1, running_bridge(nats_server.url, "elsewhere") as bridge:
        inbox = bridge.new_inbox()
        acks = bridge.subscribe(inbox)
        await bridge.flush()
        rejected: list[tuple[str, str]] = []
        for n, version in enumerate(["²", "1" * 5000, "02"]):
            odd = codec.encode(append(f"elsewhere:odd{n}", "never\n"), compress_threshold=None)
            with trio.fail_after(20):
                while True:  # until ship1's subscription is in place
                    bridge.publish_nowait(
                        SUBJECT, odd.payload, {**odd.headers, VERSION_HEADER: version}, inbox
                    )
                    with trio.move_on_after(0.5):
                        rejected += Ack.decode((await acks.receive.receive()).payload).rejected
                        break
        good = codec.encode(append("elsewhere:1", "good\n"), compress_threshold=None)
        bridge.publish_nowait(SUBJECT, good.payload, {**good.headers, VERSION_HEADER: "2"}, inbox)
        with trio.fail_after(20):
            ack = Ack.decode((await acks.receive.receive()).payload)
        await wait_for(lambda: file_text(out) == "good\n")
        entry = ship1.snapshot().find("node/inbound/REQToFileAppend")
        assert entry is not None and entry.restart_count == 0
    assert [msg_id for msg_id, _ in rejected] == [f"elsewhere:odd{n}" for n in range(3)]
    assert all("is not supported; allowed: 2" in reason for _, reason in rejected)
    assert len(rejected[1][1]) < 200  # a long header value is shown cut short
    assert ack.accepted == ("elsewhere:1",)
