"""Against nats-server: frames any client of the broker can send, which nats-py itself
cannot read, do not deafen a node (see ``steward_otp.bridge.hardened_client``).

A bare client speaks the NATS protocol over a socket, so it can send what no client
library would: a reply subject that is not UTF-8, a header block that is ``NATS/1.0``
alone, a subject with a byte that is not UTF-8 under a node's ACK inbox. Each of these
once ended nats-py's read loop for good while the connection stayed up; a subject or reply
with a vertical tab or form feed made it drop the connection.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import pytest
import trio

from steward_otp import codec
from steward_otp.bridge.hardened_client import HardenedClient
from steward_otp.message import Message
from steward_otp.metrics import NodeMetrics
from steward_otp.node import Node
from tests.conftest import NatsServer
from tests.nodes import file_text, node_config, wait_for

pytestmark = pytest.mark.integration

SUBJECT = b"ship1.REQToFileAppend.EventACK"
PAYLOAD = codec.cbor_payload(
    Message(id="m:1", to_node="ship1", from_node="m", method="REQToFileAppend", data=b"-\n")
)
"""A well-encoded message, sent with the odd frames."""


class BareClient:
    """A client of the broker that writes protocol frames as given."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.received = b""

    async def _until(self, marker: bytes) -> bytes:
        """Read until ``marker``; return what came before it (and drop it from the buffer)."""
        with trio.fail_after(10):
            while marker not in self.received:
                self.received += await self.stream.receive_some(4096)
        before, _, self.received = self.received.partition(marker)
        return before

    async def send(self, frame: bytes) -> None:
        """Send ``frame`` and wait until the broker has taken it (PING, PONG)."""
        await self.stream.send_all(frame + b"PING\r\n")
        before = await self._until(b"PONG\r\n")
        assert b"-ERR" not in before, before

    async def reply_subject_of_next_message(self) -> bytes:
        """The reply subject of the next message of a subscription (``MSG``/``HMSG``)."""
        await self._until(b"MSG ")
        line = await self._until(b"\r\n")
        return line.split()[2]

    async def publish(self, subject: bytes, reply: bytes, payload: bytes) -> None:
        size = str(len(payload)).encode()
        await self.send(
            b"PUB " + subject + b" " + reply + b" " + size + b"\r\n" + payload + b"\r\n"
        )

    async def publish_with_headers(self, subject: bytes, headers: bytes, payload: bytes) -> None:
        sizes = f"{len(headers)} {len(headers) + len(payload)}".encode()
        await self.send(b"HPUB " + subject + b" " + sizes + b"\r\n" + headers + payload + b"\r\n")


@asynccontextmanager
async def bare_client(server: NatsServer) -> AsyncIterator[BareClient]:
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    async with stream:
        await stream.receive_some(4096)  # INFO
        options = {"verbose": False, "pedantic": False, "headers": True, "protocol": 1}
        await stream.send_all(b"CONNECT " + json.dumps(options).encode() + b"\r\n")
        yield BareClient(stream)


def append(text: str) -> Message:
    return Message(
        to_node="ship1",
        method="REQToFileAppend",
        data=text.encode(),
        directory="out",
        file_name="out.log",
        ack_timeout=2,
        retries=5,
        reply_method="REQNone",
    )


def two_nodes(server: NatsServer, base: Path) -> tuple[Node, Node, Path]:
    """``central`` and ``ship1`` on ``server``, and the file ship1 writes ``append`` to."""
    central = Node(node_config(base, "central", server.url))
    ship1 = Node(node_config(base, "ship1", server.url))
    return central, ship1, base / "ship1" / "data" / "out" / "ship1" / "out.log"


def bridge_info(node: Node) -> dict[str, object]:
    entry = node.snapshot().find("node/bridge")
    assert entry is not None
    return dict(entry.info)


def bridge_restarts(node: Node) -> int:
    entry = node.snapshot().find("node/bridge")
    assert entry is not None
    return entry.restart_count


async def test_frames_nats_py_cannot_read_are_dropped_and_the_node_still_hears(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    central, ship1, out = two_nodes(nats_server, tmp_path)
    async with central, ship1:
        await central.submit([append("before\n")])
        await wait_for(lambda: file_text(out) == "before\n")  # ship1 is subscribed
        async with bare_client(nats_server) as mallory:
            await mallory.publish(SUBJECT, b"_INBOX.\xff\xfe", PAYLOAD)
            await mallory.publish(SUBJECT, b"_INBOX.a\x0bb", PAYLOAD)  # nats-py: 2 tokens
            await mallory.publish_with_headers(SUBJECT, b"NATS/1.0", PAYLOAD)
        await central.submit([append("after\n")])
        await wait_for(lambda: file_text(out) == "before\nafter\n")
        info = bridge_info(ship1)
        metrics = NodeMetrics(ship1).render().decode()
    assert info["dropped_frames"] == 2
    assert info["unreadable_headers"] == 1
    assert info["reconnects"] == 0
    assert "\nsteward_nats_dropped_frames_total 2.0\n" in metrics
    assert "\nsteward_nats_unreadable_headers_total 1.0\n" in metrics


async def test_a_subject_not_utf8_under_the_ack_inbox_does_not_deafen_the_sender(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """A destination learns the sender's ACK inbox from every message it gets; here
    mallory plays ship2 and sends a frame under that inbox that nats-py cannot read."""
    central, ship1, out = two_nodes(nats_server, tmp_path)
    async with central, ship1, bare_client(nats_server) as mallory:
        await mallory.send(b"SUB ship2.> 1\r\n")
        await central.submit([attrs.evolve(append("for ship2\n"), to_node="ship2")])
        inbox = await mallory.reply_subject_of_next_message()  # central's ACK inbox
        await mallory.publish(inbox + b".\xff", b"", b"x")
        await mallory.publish(inbox + b".a\x0cb", b"", b"x")
        await central.submit([append("heard\n")])
        await wait_for(lambda: file_text(out) == "heard\n")  # ship1's ACK reached central
        await wait_for(lambda: central.outbox.stats.delivered >= 1)
        info = bridge_info(central)
    assert info["dropped_frames"] == 2
    assert info["reconnects"] == 0


async def test_a_reader_that_stops_for_another_reason_has_the_bridge_start_again(
    nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any other failure inside nats-py's read loop (here one made on purpose) ends the
    loop; the bridge notices, closes the connection and its supervisor starts it again."""
    real = HardenedClient._process_msg

    async def failing(
        self: HardenedClient, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes
    ) -> None:
        if data == b"kill the reader":
            raise RuntimeError("a bug in the client's parser")
        await real(self, sid, subject, reply, data, headers)

    monkeypatch.setattr(HardenedClient, "_process_msg", failing)
    central, ship1, out = two_nodes(nats_server, tmp_path)
    async with central, ship1:
        await central.submit([append("before\n")])
        await wait_for(lambda: file_text(out) == "before\n")
        async with bare_client(nats_server) as mallory:
            await mallory.publish(SUBJECT, b"", b"kill the reader")
        await wait_for(lambda: bridge_restarts(ship1) >= 1)
        await central.submit([append("after\n")])
        await wait_for(lambda: file_text(out) == "before\nafter\n", timeout=30)


def random_frames(seed: int, count: int, subjects: list[bytes], payload: bytes) -> list[bytes]:
    """``count`` PUB and HPUB frames of odd reply subjects, header blocks and payloads."""
    rnd = random.Random(seed)

    def odd_bytes(most: int) -> bytes:
        raw = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, most + 1)))
        return raw.translate(bytes.maketrans(b" \t\r\n.", b"xxxxx"))  # one protocol token

    def reply() -> bytes:
        token = rnd.choice([b"a", b"\xff", b"\xc3", b"\x0b", b"\x0c", b"\x00", odd_bytes(5)])
        return rnd.choice([b"", b"_INBOX.x", b"_INBOX." + token, token + b"." + token])

    def header_block() -> bytes:
        status = rnd.choice([b"", b" 503", b" 100", b" 404 x", b" abc", b" \xff", b"  "])
        lines = [b"NATS/1.0" + status]
        for _ in range(rnd.randrange(6)):
            key = rnd.choice([b"serial", b"cmp", b"sotp", b"fromNode", b"Status", odd_bytes(3)])
            value = rnd.choice([b"cbor", b"lz4", b"none", b"2", b"9", b"\xff\xfe", odd_bytes(4)])
            lines.append(key + rnd.choice([b": ", b":", b" : ", b""]) + value)
        return b"\r\n".join(lines) + rnd.choice([b"\r\n\r\n", b"\r\n", b""])

    frames = []
    for _ in range(count):
        subject = rnd.choice(subjects)
        to = subject + (b" " + r if (r := reply()) else b"")
        body = rnd.choice([payload, payload[:10], b"", odd_bytes(40)])
        if rnd.random() < 0.6:
            block = header_block()
            sizes = f" {len(block)} {len(block) + len(body)}\r\n".encode()
            frames.append(b"HPUB " + to + sizes + block + body + b"\r\n")
        else:
            frames.append(b"PUB " + to + f" {len(body)}\r\n".encode() + body + b"\r\n")
    return frames


async def test_random_odd_frames_leave_both_nodes_hearing(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    central, ship1, out = two_nodes(nats_server, tmp_path)
    subjects = [SUBJECT, b"ship1.REQHello.EventNACK", b"central.REQErrorLog.EventACK"]
    async with central, ship1:
        await central.submit([append("before\n")])
        await wait_for(lambda: file_text(out) == "before\n")
        async with bare_client(nats_server) as mallory:
            await mallory.send(b"".join(random_frames(7, 300, subjects, PAYLOAD)))
        await central.submit([append("after\n")])
        await wait_for(lambda: "after\n" in file_text(out))
        for node in (central, ship1):
            assert bridge_info(node)["reconnects"] == 0
            assert all(entry.restart_count == 0 for entry in node.snapshot().walk())
