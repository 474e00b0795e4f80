"""JetStream delivery against a real nats-server with JetStream (file storage).

Messages wait in the broker, not in the sender: the sender may be gone for good by the time
the destination starts. Each message still runs exactly once (the receiver's inbox dedupes
what the broker delivers again).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from steward_otp import codec
from steward_otp.delivery.protocol import with_version
from steward_otp.jetstream import STREAM, StreamLimits, ensure_stream_and_consumer, stream_info
from steward_otp.message import Message
from steward_otp.node import Node
from steward_otp.tree_view import render_status
from tests.conftest import NatsServer
from tests.integration.test_bridge import running_bridge
from tests.nodes import NodeProcess, file_text, node_config, wait_for

pytestmark = pytest.mark.integration


def js_node(tmp_path: Path, name: str, server: NatsServer, **overrides: Any) -> Node:
    return Node(node_config(tmp_path, name, server.url, delivery="jetstream", **overrides))


def line(to_node: str, text: str) -> Message:
    return Message(
        to_node=to_node,
        method="REQToFileAppend",
        data=f"{text}\n".encode(),
        directory="out",
        file_name="out.log",
        ack_timeout=5,
        retries=10,
        reply_method="REQNone",
    )


def out_lines(tmp_path: Path, node: str) -> list[str]:
    return file_text(tmp_path / node / "data" / "out" / node / "out.log").split()


async def test_messages_wait_in_the_broker_for_a_node_after_the_sender_is_gone(
    jetstream_server: NatsServer, tmp_path: Path
) -> None:
    async with js_node(tmp_path, "central", jetstream_server) as central:
        await central.submit([line("ship1", str(i)) for i in range(100)])
        # Done for the sender once the broker has stored them.
        await wait_for(lambda: central.outbox.stats.delivered == 100)
        assert await central.store.pending() == []
    # central is gone for good; ship1 comes up later and gets everything, once.
    async with js_node(tmp_path, "ship1", jetstream_server):
        await wait_for(lambda: len(out_lines(tmp_path, "ship1")) >= 100, timeout=30)
    assert sorted(out_lines(tmp_path, "ship1"), key=int) == [str(i) for i in range(100)]


async def test_a_broker_restart_while_messages_wait_loses_nothing(
    jetstream_server: NatsServer, tmp_path: Path
) -> None:
    async with js_node(tmp_path, "central", jetstream_server) as central:
        await central.submit([line("ship1", str(i)) for i in range(50)])
        await wait_for(lambda: central.outbox.stats.delivered == 50)
    await jetstream_server.astop()
    await jetstream_server.astart()
    async with js_node(tmp_path, "ship1", jetstream_server):
        await wait_for(lambda: len(out_lines(tmp_path, "ship1")) >= 50, timeout=30)
        # Nothing more arrives (no second delivery of anything already run).
        ship1_lines = sorted(out_lines(tmp_path, "ship1"), key=int)
    assert ship1_lines == [str(i) for i in range(50)]


async def test_a_resend_with_the_same_id_is_stored_once(
    jetstream_server: NatsServer, tmp_path: Path
) -> None:
    message = Message(
        id="central:same",
        to_node="ship9",
        from_node="central",
        method="REQToFileAppend",
        data=b"x\n",
        ack_timeout=5,
    )
    encoded = codec.encode(message, compress_threshold=None)
    headers = {**with_version(encoded.headers), "Nats-Msg-Id": message.id}
    async with running_bridge(jetstream_server.url, "central") as bridge:
        await ensure_stream_and_consumer(bridge, "ship9", StreamLimits())
        answers = [
            json.loads(
                (
                    await bridge.request(
                        f"{STREAM}.ship9.REQToFileAppend.EventACK",
                        encoded.payload,
                        headers,
                        timeout=5,
                    )
                ).payload
            )
            for _ in range(3)
        ]
        state = await stream_info(bridge)
    assert [a.get("duplicate", False) for a in answers] == [False, True, True]
    assert state["messages"] == 1


async def test_broadcast_reaches_every_node_once_including_one_that_starts_later(
    jetstream_server: NatsServer, tmp_path: Path
) -> None:
    central = js_node(tmp_path, "central", jetstream_server)
    ship1 = js_node(tmp_path, "ship1", jetstream_server)
    ship2 = js_node(tmp_path, "ship2", jetstream_server)
    async with central, ship1, ship2:
        # ship3 has never run: its consumer does not exist yet when the broadcast is sent,
        # but the stream keeps the message and its consumer starts from the beginning.
        await central.submit([line("all", "hello")])
        await wait_for(lambda: out_lines(tmp_path, "ship1") == ["hello"], timeout=20)
        await wait_for(lambda: out_lines(tmp_path, "ship2") == ["hello"], timeout=20)
        async with js_node(tmp_path, "ship3", jetstream_server):
            await wait_for(lambda: out_lines(tmp_path, "ship3") == ["hello"], timeout=20)
    for node in ("ship1", "ship2", "ship3"):
        assert out_lines(tmp_path, node) == ["hello"]


async def test_a_node_without_jetstream_on_its_broker_says_so(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async with js_node(tmp_path, "ship1", nats_server) as ship1:

        def intake_info() -> dict[str, Any]:
            entry = ship1.snapshot().find("node/inbound/stream")
            assert entry is not None
            return entry.info

        await wait_for(lambda: "JetStream" in str(intake_info()), timeout=20)
        info = intake_info()
    assert info["stream_ready"] is False
    assert "no JetStream on the broker" in str(info["problem"])


async def test_a_node_killed_while_taking_its_messages_loses_none(
    jetstream_server: NatsServer, tmp_path: Path
) -> None:
    ship1 = NodeProcess(
        tmp_path / "ship1",
        "ship1",
        jetstream_server.url,
        "--delivery",
        "jetstream",
        "--jetstream-ack-wait-seconds",
        "3",
    )
    try:
        async with js_node(tmp_path, "central", jetstream_server) as central:
            await central.submit([line("ship1", str(i)) for i in range(1500)])
            await wait_for(lambda: central.outbox.stats.delivered == 1500)
        await ship1.start()
        await wait_for(lambda: len(out_lines(tmp_path, "ship1")) >= 20, timeout=30)
        ship1.kill()  # SIGKILL in the middle of taking them
        taken_before_the_kill = len(out_lines(tmp_path, "ship1"))
        await ship1.start()
        await wait_for(lambda: len(set(out_lines(tmp_path, "ship1"))) >= 1500, timeout=90)
    finally:
        ship1.kill()
    written = out_lines(tmp_path, "ship1")
    assert taken_before_the_kill >= 20
    # Appends cut short by the kill run again (their completion was not stored yet), but the
    # append journal finds their lines already written: each line appears exactly once.
    assert sorted(written, key=int) == [str(i) for i in range(1500)]


async def test_status_shows_the_delivery_mode_and_the_stream(
    jetstream_server: NatsServer, tmp_path: Path
) -> None:
    async with js_node(tmp_path, "ship1", jetstream_server) as ship1:
        await wait_for(lambda: ship1.stream_intake is not None and ship1.stream_intake.ready)
        answer = await ship1.control({"op": "status"})
    status = answer["status"]
    assert status["delivery"]["mode"] == "jetstream"
    assert status["delivery"]["stream_ready"] is True
    assert status["delivery"]["max_age_seconds"] == 7 * 24 * 3600
    assert status["security"]["signature_check"] is False
    text = render_status(status)
    assert "delivery:    jetstream, stream ready" in text
    assert "signatures:  check OFF" in text


async def test_signature_checks_apply_to_messages_from_the_stream(
    jetstream_server: NatsServer, tmp_path: Path
) -> None:
    central = js_node(tmp_path, "central", jetstream_server)
    ship1 = js_node(
        tmp_path,
        "ship1",
        jetstream_server,
        enable_signature_check=True,
        central_public_key=central.security.key.public_text,
    )
    forged = Message(
        id="mallory:1",
        to_node="ship1",
        from_node="central",
        method="REQToFileAppend",
        data=b"forged\n",
        directory="out",
        file_name="out.log",
        ack_timeout=5,
        reply_method="REQNone",
    )
    encoded = codec.encode(forged, compress_threshold=None)
    headers = {**with_version(encoded.headers), "Nats-Msg-Id": forged.id}
    async with central, ship1, running_bridge(jetstream_server.url, "mallory") as mallory:
        await wait_for(lambda: ship1.stream_intake is not None and ship1.stream_intake.ready)
        answer = await mallory.request(
            f"{STREAM}.ship1.REQToFileAppend.EventACK", encoded.payload, headers, timeout=5
        )
        assert json.loads(answer.payload)["stream"] == STREAM  # stored by the broker
        await central.submit([line("ship1", "signed")])
        await wait_for(lambda: out_lines(tmp_path, "ship1") == ["signed"], timeout=20)
        await wait_for(
            lambda: ship1.stream_intake is not None and ship1.stream_intake.received >= 2
        )
    assert out_lines(tmp_path, "ship1") == ["signed"]  # the unsigned one never ran
