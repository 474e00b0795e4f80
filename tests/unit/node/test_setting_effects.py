"""Settings change what a node does: each test sets a non-default value and looks at its effect.

Real nodes on the in-memory broker (:class:`~tests.unit.handlers.loopback_nodes.LoopbackNet`).
What a node sends is read from its outbox (the stored CBOR of each message) or from a raw
:class:`~steward_otp.loopback.LoopbackTransport` on the same broker, which sees the headers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import trio

from steward_otp import codec
from steward_otp.bridge import NatsBridge
from steward_otp.handlers import HandlerContext, handler
from steward_otp.inbound.handler_runs import method_deadline
from steward_otp.loopback import LoopbackTransport
from steward_otp.message import Message
from steward_otp.node import Node
from steward_otp.transport import InboundMessage
from tests.nodes import node_config
from tests.unit.handlers.loopback_nodes import LoopbackNet, wait_for, wait_for_text


@pytest.fixture
def net(tmp_path: Path) -> LoopbackNet:
    return LoopbackNet(tmp_path)


async def sent_by(node: Node, method: str, count: int = 1) -> list[Message]:
    """The first ``count`` messages of ``method`` in ``node``'s outbox, once there."""
    found: list[Message] = []
    with trio.fail_after(20):
        while True:
            rows = await node.store.list_outbox(limit=None)
            found = [
                codec.decode(r.payload, codec.RAW_CBOR_HEADERS) for r in rows if r.method == method
            ]
            if len(found) >= count:
                return found[:count]
            await trio.sleep(0.02)


async def first_published(
    transport: LoopbackTransport, subject: str, send: Node, message: Message
) -> InboundMessage:
    """What ``send`` publishes for ``message``, as a raw subscriber on ``subject`` sees it."""
    subscription = transport.subscribe(subject)
    await send.submit([message])
    with trio.fail_after(20):
        return await subscription.receive.receive()


def ping(to_node: str = "ghost", **fields: object) -> Message:
    settings: dict[str, object] = {"to_node": to_node, "method": "REQPing", "ack_timeout": 5}
    settings.update(fields)
    return Message(**settings)  # type: ignore[arg-type]


def big_line(size: int = 4000) -> Message:
    """A REQToFileAppend to ship1 whose CBOR is about ``size`` bytes, and compresses well."""
    return Message(
        to_node="ship1",
        method="REQToFileAppend",
        data=b"x" * size,
        directory="out",
        file_name="out.log",
        ack_timeout=5,
        retries=3,
        reply_method="REQNone",
    )


# -- default_message_timeout ------------------------------------------------------------------


async def test_default_message_timeout_is_the_ack_timeout_of_what_the_node_sends_itself(
    net: LoopbackNet,
) -> None:
    node = net.node(
        "ship1",
        default_message_timeout=7,  # default 10
        start_pub_hello=3600,  # the first hello at start
        enable_acl_updates=True,
        enable_key_updates=True,
    )
    async with node:
        [hello] = await sent_by(node, "REQHello")
        [acl] = await sent_by(node, "REQAclRequestUpdate")
        [keys] = await sent_by(node, "REQKeysRequestUpdate")
    assert hello.ack_timeout == 7
    assert (acl.ack_timeout, acl.reply_ack_timeout) == (7, 7)
    assert (keys.ack_timeout, keys.reply_ack_timeout) == (7, 7)


# -- default_method_timeout -------------------------------------------------------------------


async def test_default_method_timeout_goes_rounded_up_into_messages_sent_without_one(
    net: LoopbackNet,
) -> None:
    node = net.node("ship1", default_method_timeout=2.5, start_pub_hello=3600)
    async with node:
        await node.submit([ping(data=b"unset"), ping(data=b"set", method_timeout=5)])
        unset, given = await sent_by(node, "REQPing", 2)
        [hello] = await sent_by(node, "REQHello")
    assert (unset.data, unset.method_timeout) == (b"unset", 3)  # 2.5 rounded up, not 10
    assert (given.data, given.method_timeout) == (b"set", 5)  # a message's own one stays
    assert hello.method_timeout == 3


async def run_raw(net: LoopbackNet, message: Message) -> None:
    """Publish ``message`` to ship1 as a sender without an outbox does (nothing defaulted)."""
    sender = LoopbackTransport(net.broker, name="probe")
    encoded = codec.encode(message, compress_threshold=None)
    subject = f"ship1.{message.method}.EventACK"
    await sender.request(subject, encoded.payload, encoded.headers, timeout=10)


async def test_default_method_timeout_limits_incoming_runs_without_method_timeout(
    tmp_path: Path,
) -> None:
    left: dict[str, float] = {}

    @handler("REQSecondsLeft", description="records how long it may run")
    async def seconds_left(ctx: HandlerContext, msg: Message) -> bytes | None:
        left[msg.id] = ctx.seconds_left
        return None

    net = LoopbackNet(tmp_path)
    ship1 = Node(
        node_config(
            tmp_path, "ship1", "nats://127.0.0.1:1", enable_socket=False,
            enable_read_folder=False, default_method_timeout=300,
        ),
        handlers=[seconds_left],
        transport=LoopbackTransport(net.broker, name="ship1"),
    )  # fmt: skip
    raw = {"from_node": "probe", "method": "REQSecondsLeft", "ack_timeout": 5}
    async with ship1:
        await run_raw(net, Message(id="probe:1", to_node="ship1", **raw))  # type: ignore[arg-type]
        await run_raw(
            net,
            Message(id="probe:2", to_node="ship1", method_timeout=20, **raw),  # type: ignore[arg-type]
        )
        await wait_for(lambda: len(left) == 2)
    assert 20 < left["probe:1"] <= 300  # the node's 300 s, not the built-in 10 s
    assert left["probe:2"] <= 20  # a message's own methodTimeout wins


@pytest.mark.parametrize("default", [2.5, 0.5])
async def test_incoming_runs_get_a_fractional_default_method_timeout_as_given(
    default: float, autojump_clock: trio.abc.Clock
) -> None:
    message = Message(id="probe:1", to_node="ship1", method="REQPing")  # no methodTimeout
    assert method_deadline(message, default) - trio.current_time() == default


# -- error_message_timeout, error_message_retries ---------------------------------------------


async def test_error_log_messages_carry_error_message_timeout_and_retries(
    net: LoopbackNet,
) -> None:
    # ship1 is not the central error logger: its reports go to errorCentral by message.
    node = net.node("ship1", error_message_timeout=7, error_message_retries=4)  # 60, 10
    async with node:
        node.report("error", "probe: a line for the central error log")
        sent: list[Message] = []
        with trio.fail_after(20):
            while not sent:
                rows = await node.store.list_outbox(limit=None)
                decoded = (codec.decode(r.payload, codec.RAW_CBOR_HEADERS) for r in rows)
                sent = [m for m in decoded if b"probe: a line" in m.data]
                await trio.sleep(0.02)
    [line] = sent
    assert (line.method, line.to_node) == ("REQErrorLog", "errorCentral")
    assert (line.ack_timeout, line.retries) == (7, 4)


# -- compression, compress_threshold_bytes ----------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "size", "cmp"),
    [
        ({}, 4000, "lz4"),  # the defaults: lz4 from 1024 bytes
        ({"compression": "none"}, 4000, "none"),
        ({"compress_threshold_bytes": 100_000}, 4000, "none"),
        ({"compress_threshold_bytes": 100}, 500, "lz4"),
        ({}, 500, "none"),
    ],
)
async def test_compression_settings_decide_whether_a_published_message_is_lz4(
    net: LoopbackNet, settings: dict[str, Any], size: int, cmp: str
) -> None:
    central = net.node("central", **settings)
    watcher = LoopbackTransport(net.broker, name="watcher")
    async with central:
        wire = await first_published(
            watcher, "ship1.REQToFileAppend.EventACK", central, big_line(size)
        )
    assert wire.headers is not None and wire.headers["cmp"] == cmp
    assert codec.decode(wire.payload, wire.headers).data == b"x" * size


# -- nats_conn_opt_timeout --------------------------------------------------------------------


def test_nats_conn_opt_timeout_is_the_connect_timeout_given_to_nats_py(tmp_path: Path) -> None:
    timeouts = {}
    for name, settings in (("default", {}), ("set", {"nats_conn_opt_timeout": 3.5})):
        node = Node(node_config(tmp_path, name, "nats://127.0.0.1:1", **settings))
        assert isinstance(node.bridge, NatsBridge)
        # What the bridge passes to nats.connect (nats-py's connect_timeout).
        timeouts[name] = node.bridge._connect_options()["connect_timeout"]
    assert timeouts == {"default": 20.0, "set": 3.5}


# -- read_folder ------------------------------------------------------------------------------


async def test_a_non_default_read_folder_is_the_one_read(net: LoopbackNet, tmp_path: Path) -> None:
    drop = tmp_path / "elsewhere" / "drop"
    node = net.node("central", enable_read_folder=True, read_folder=str(drop))
    document = {
        "toNode": "local",
        "method": "REQToFileAppend",
        "directory": "in",
        "fileName": "in.log",
        "data": "from the drop folder\n",
        "ACKTimeout": 5,
        "retries": 3,
        "replyMethod": "REQNone",
    }
    async with node:
        assert node.config.readfolder_dir == drop and drop.is_dir()
        temporary = drop / ".msg.json.tmp"
        temporary.write_text(json.dumps([document]))
        os.replace(temporary, drop / "msg.json")
        out = net.data("central") / "in" / "central" / "in.log"
        await wait_for_text(out, "from the drop folder\n")
        await wait_for(lambda: not (drop / "msg.json").exists())
    assert not (net.home("central") / "readfolder").exists()  # the default is not watched
