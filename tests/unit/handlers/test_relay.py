"""REQRelay: a message with ``relayViaNode`` travels through that node, and so does its reply."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from steward_otp import codec
from steward_otp.handlers.base import HandlerError
from steward_otp.handlers.relay import relay
from steward_otp.loopback import FaultRule
from steward_otp.message import Message
from tests.unit.handlers.fakes import FakeServices, context, request
from tests.unit.handlers.loopback_nodes import (
    LoopbackNet,
    message,
    subscriber_restarts,
    wait_for,
    wait_for_exact,
    wait_for_text,
)

INNER = Message(
    id="operator:inner-1",
    to_node="ship1",
    from_node="operator",
    method="REQCliCommand",
    method_args=("echo", "hi"),
    directory="relayed",
    file_name="out.txt",
    ack_timeout=2,
    retries=3,
    relay_via_node="central",
)


def envelope(data: bytes) -> Message:
    """A REQRelay from operator to central carrying ``data``."""
    return request(
        "REQRelay", id="operator:env-1", from_node="operator", to_node="central", data=data
    )


# ----------------------------------------------------------------- the handler, directly


async def test_relay_unwraps_the_message_and_queues_it_unchanged(tmp_path: Path) -> None:
    services = FakeServices(tmp_path, node_name="central")
    msg = envelope(codec.encode(INNER, compress_threshold=None).payload)
    assert await relay(context(services, msg), msg) is None
    assert services.submitted == [INNER]


async def test_relay_of_a_compressed_message_is_refused_not_misread(tmp_path: Path) -> None:
    # The envelope always carries plain CBOR (relay_envelope encodes without compression).
    services = FakeServices(tmp_path, node_name="central")
    big = attrs.evolve(INNER, data=b"x" * 10_000)
    packed = codec.encode(big, compress_threshold=100).payload
    msg = envelope(packed)
    with pytest.raises(HandlerError, match='field "data" does not hold a message: '):
        await relay(context(services, msg), msg)
    assert services.submitted == []


@pytest.mark.parametrize(
    ("data", "complaint"),
    [
        (b"", 'field "data" does not hold a message: '),
        (b"\xff garbage", 'field "data" does not hold a message: '),
        (
            codec.encode(attrs.evolve(INNER, to_node=""), compress_threshold=None).payload,
            'the relayed message has no "toNode"',
        ),
    ],
)
async def test_relay_of_something_that_is_no_message_is_a_handler_error(
    tmp_path: Path, data: bytes, complaint: str
) -> None:
    services = FakeServices(tmp_path, node_name="central")
    msg = envelope(data)
    with pytest.raises(HandlerError) as raised:
        await relay(context(services, msg), msg)
    assert str(raised.value).startswith(complaint)
    assert services.submitted == []


async def test_relay_the_node_cannot_route_is_a_handler_error(tmp_path: Path) -> None:
    services = FakeServices(
        tmp_path, node_name="central", submit_error=ValueError("unknown method REQWhatever")
    )
    msg = envelope(codec.encode(INNER, compress_threshold=None).payload)
    with pytest.raises(HandlerError) as raised:
        await relay(context(services, msg), msg)
    assert str(raised.value) == (
        "cannot forward REQCliCommand to ship1: unknown method REQWhatever"
    )


# ----------------------------------------------------------------- three nodes, end to end


def forbid(net: LoopbackNet, sender: str, receiver: str) -> FaultRule:
    """Lose every message ``sender`` publishes to ``receiver`` (as broker permissions would)."""
    inbox = net.transports[sender].inbox_prefix
    return net.broker.faults.drop(
        f"{receiver}.>", count=None, where=lambda m: m.reply.startswith(inbox)
    )


def relayed_command(**fields: object) -> Message:
    settings: dict[str, object] = {"directory": "relayed", "relay_via_node": "central"}
    settings.update(fields)
    return message("REQCliCommand", ["echo", "hello via central"], **settings)


async def test_operator_reaches_ship1_only_through_central_and_gets_the_reply(
    net: LoopbackNet,
) -> None:
    operator, central, ship1 = net.node("operator"), net.node("central"), net.node("ship1")
    to_ship1, to_operator = forbid(net, "operator", "ship1"), forbid(net, "ship1", "operator")
    result = net.result("relayed", "out.txt", on="operator")
    async with operator, central, ship1:
        # Direct: lost on the way (the guard works)...
        await operator.submit([relayed_command(relay_via_node="", file_name="direct.txt")])
        await wait_for(lambda: to_ship1.hits >= 1, timeout=10)
        # ...through central: delivered, run on ship1, and the reply comes back the same way.
        await operator.submit([relayed_command()])
        await wait_for_exact(result, "hello via central\n")
        relays = central.snapshot().find("node/inbound/REQRelay")
        assert relays is not None and relays.info["executed"] >= 2  # the request and the reply
    assert to_operator.hits == 0  # ship1 never even tried to answer directly
    assert not result.with_name("direct.txt").exists()


async def test_a_relay_that_carries_no_message_is_an_error_reply_and_relaying_goes_on(
    net: LoopbackNet,
) -> None:
    operator, central, ship1 = net.node("operator"), net.node("central"), net.node("ship1")
    error = net.result("relayed", "bad.txt.error", on="operator", ran="central")
    result = net.result("relayed", "out.txt", on="operator")
    async with operator, central, ship1:
        await operator.submit(
            [
                message(
                    "REQRelay",
                    to_node="central",
                    directory="relayed",
                    file_name="bad.txt",
                    data=b"not a message",
                )
            ]
        )
        text = await wait_for_text(error, 'field "data" does not hold a message')
        assert text.startswith('error: REQRelay: field "data" does not hold a message: ')

        await operator.submit([relayed_command()])
        await wait_for_exact(result, "hello via central\n")
        assert subscriber_restarts(central, "REQRelay") == 0


async def test_an_error_reply_to_a_relayed_request_comes_back_through_the_relay(
    net: LoopbackNet,
) -> None:
    operator, central, ship1 = net.node("operator"), net.node("central"), net.node("ship1")
    forbid(net, "operator", "ship1")
    direct = forbid(net, "ship1", "operator")
    error = net.result("relayed", "out.txt.error", on="operator")
    async with operator, central, ship1:
        await operator.submit(
            [message("REQCliCommand", [], directory="relayed", relay_via_node="central")]
        )
        text = await wait_for_text(error, "names no program")
        assert text.startswith('error: REQCliCommand: field "methodArgs"')
    assert direct.hits == 0
