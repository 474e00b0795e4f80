"""Signing and signature checks between real nodes on the in-memory broker.

Every node signs what it sends; a node with ``enable_signature_check`` runs only what an
allowed key signed. Keys are exchanged by hand here (``trust``) or through hello and
REQKeysAllow on the key authority.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from steward_otp import codec
from steward_otp.delivery.protocol import VERSION_HEADER, Ack
from steward_otp.loopback import LoopbackTransport
from steward_otp.message import Message
from steward_otp.node import Node
from steward_otp.security.keyfiles import encode_key_text
from steward_otp.security.signing import Signature
from steward_otp.security.trust import TrustState
from tests.unit.handlers.loopback_nodes import (
    LoopbackNet,
    file_text,
    message,
    wait_for,
    wait_for_text,
)

CHECKED: dict[str, Any] = {"enable_signature_check": True}


def trust(node: Node, *others: Node) -> None:
    """Let ``node`` run what ``others`` sign."""
    for other in others:
        node.security.trust.update(adding(other.node_name, other.security.public_key))


def adding(node: str, key: bytes) -> Callable[[TrustState], TrustState]:
    """The trust change that allows ``key`` for ``node``."""
    return lambda s: s.add(node, key)


def echo(text: str, **fields: object) -> Message:
    return message("REQCliCommand", ["echo", text], **fields)


async def ack_for(transport: LoopbackTransport, subject: str, sent: Message) -> Ack:
    """Publish ``sent`` as a protocol-2 sender would and return the ACK for it."""
    inbox = transport.new_inbox()
    acks = transport.subscribe(inbox)
    encoded = codec.encode(sent, compress_threshold=None)
    transport.publish_nowait(
        subject, encoded.payload, {**encoded.headers, VERSION_HEADER: "2"}, inbox
    )
    with trio.fail_after(10):
        return Ack.decode((await acks.receive.receive()).payload)


async def test_a_checking_node_runs_what_an_allowed_key_signed_and_replies(
    net: LoopbackNet,
) -> None:
    central, ship1 = net.node("central"), net.node("ship1", **CHECKED)
    trust(ship1, central)
    trust(central, ship1)  # not checking, but trusting is harmless
    async with central, ship1:
        await central.submit([echo("signed by central")])
        await wait_for_text(net.result("out", "out.txt"), "signed by central\n")


async def test_central_public_key_from_the_configuration_is_trusted(net: LoopbackNet) -> None:
    central = net.node("central")
    ship1 = net.node(
        "ship1", **CHECKED, central_public_key=encode_key_text(central.security.public_key)
    )
    async with central, ship1:
        await central.submit([echo("configured key")])
        await wait_for_text(net.result("out", "out.txt"), "configured key\n")
    assert ship1.security.trust.state == TrustState()  # nothing written to keys.json


async def failure_reason(node: Node, msg_id: str) -> str:
    """Wait until ``msg_id`` failed in ``node``'s outbox; its reason."""
    with trio.fail_after(10):
        while True:
            for row in await node.store.list_outbox(states=["failed"]):
                if row.msg_id == msg_id:
                    return row.reason or ""
            await trio.sleep(0.02)


async def test_an_unknown_signer_is_refused_and_the_sender_is_told_why(net: LoopbackNet) -> None:
    central = net.node("central")
    ship1 = net.node("ship1", **CHECKED)  # trusts nobody
    async with central, ship1:
        ids = await central.submit([echo("never")])
        reason = await failure_reason(central, ids[0])
        errors = await wait_for_text(net.error_log(), "unknown signer")
    assert f"refused by ship1: signature check: message {ids[0]} from central: unknown " in reason
    assert (
        f"error: ship1.REQCliCommand.EventACK: signature check: message {ids[0]} from central: "
        "unknown signer 'central': no allowed public key for it on ship1"
    ) in errors
    assert not net.result("out", "out.txt").exists()


async def test_a_relayed_message_keeps_its_original_signature_end_to_end(
    net: LoopbackNet,
) -> None:
    operator = net.node("operator")
    relay = net.node("relay", **CHECKED)
    ship1 = net.node("ship1", **CHECKED)
    trust(relay, operator, ship1)  # the request goes through, and the reply comes back
    trust(ship1, operator)  # ship1 does not trust the relay node: the operator's signature counts
    async with operator, relay, ship1:
        await operator.submit([echo("through the relay", relay_via_node="relay")])
        await wait_for_text(net.result("out", "out.txt", on="operator"), "through the relay\n")


async def test_a_message_altered_on_the_way_is_refused(net: LoopbackNet) -> None:
    central, ship1 = net.node("central"), net.node("ship1", **CHECKED)
    trust(ship1, central)
    probe = net.transports["central"]
    async with central, ship1:
        signed = central.security.sign(
            echo("harmless", id="central:1", from_node="central", ack_timeout=5)
        )
        altered = attrs.evolve(signed, method_args=("touch", "/tmp/pwned"))
        ack = await ack_for(probe, "ship1.REQCliCommand.EventACK", altered)
    assert ack.accepted == ()
    assert [msg_id for msg_id, _ in ack.rejected] == ["central:1"]
    assert "bad signature" in ack.rejected[0][1]


async def test_a_node_that_does_not_check_warns_at_start(
    net: LoopbackNet, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="steward_otp.node")
    async with net.node("ship1"):
        pass
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "node ship1: signature checking is off (enable_signature_check = false): anyone who "
        "can publish to the broker can make node ship1 run " in w
        for w in warnings
    ), warnings


async def test_a_checking_node_that_trusts_nobody_says_so(
    net: LoopbackNet, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="steward_otp.node")
    async with net.node("ship1", **CHECKED):
        pass
    text = caplog.text
    assert "signature checking is on but no other node's key is allowed" in text
    assert "signature checking is off" not in text


async def test_public_key_replies_with_the_nodes_key(net: LoopbackNet) -> None:
    central, ship1 = net.node("central"), net.node("ship1")
    result = net.result("out", "key.bin")
    async with central, ship1:
        await central.submit(
            [message("REQPublicKey", file_name="key.bin", reply_method="REQToFile")]
        )
        await wait_for(lambda: result.exists() and result.stat().st_size == 32)
    assert result.read_bytes() == ship1.security.public_key


# -------------------------------------------------------------- the key authority (central)


def authority(net: LoopbackNet) -> Node:
    return net.node(
        "central", **CHECKED, is_central_auth=True, start_pub_hello=0, is_central_error_logger=True
    )


async def test_a_hello_makes_a_new_nodes_key_pending_and_allowing_it_lets_it_in(
    net: LoopbackNet,
) -> None:
    central = authority(net)
    ship9 = net.node("ship9", start_pub_hello=0.2)
    pong = net.result("out", "ping.txt", on="ship9", ran="central")
    async with central, ship9:
        await wait_for(lambda: "ship9" in central.security.trust.state.pending)
        assert central.security.trust.state.pending["ship9"].key == ship9.security.public_key
        hello = net.data("central") / "hello-messages" / "ship9" / "hello.log"
        assert 'Received hello from "ship9"' in file_text(hello)
        # Pending is not allowed: ship9's ping is refused.
        await ship9.submit([message("REQPing", to_node="central", file_name="ping.txt")])
        errors = await wait_for_text(net.error_log(), "unknown signer 'ship9'")
        assert "detected new public key for node: ship9" in errors
        # The operator allows it (a message central signs itself), and ship9 gets in.
        await central.submit(
            [message("REQKeysAllow", ["ship9"], to_node="central", file_name="allow.txt")]
        )
        await wait_for(lambda: "ship9" in central.security.trust.state.allowed)
        await ship9.submit([message("REQPing", to_node="central", file_name="ping.txt")])
        await wait_for(pong.exists)
    allowed = net.result("out", "allow.txt", on="central", ran="central")
    assert file_text(allowed) == "allowed public keys for the nodes=[ship9]\n"


async def test_a_rotated_key_is_pending_and_refused_until_allowed(net: LoopbackNet) -> None:
    central = authority(net)
    old = net.node("ship9")
    central.security.trust.update(lambda s: s.add("ship9", old.security.public_key))
    # ship9 gets a new key pair (its key files were lost and made again).
    for name in ("private.key", "public.key"):
        (net.home("ship9") / "etc" / "signing" / name).unlink()
    ship9 = net.node("ship9", start_pub_hello=0.2)
    assert ship9.security.public_key != old.security.public_key
    async with central, ship9:
        await wait_for(lambda: "ship9" in central.security.trust.state.pending)
        await ship9.submit([message("REQPing", to_node="central", file_name="ping.txt")])
        errors = await wait_for_text(net.error_log(), "bad signature")
        assert "node ship9 presents a public key different from its allowed one" in errors
        assert central.security.trust.state.allowed["ship9"] == old.security.public_key
        await central.security.allow(["ship9"])
        await ship9.submit([message("REQPing", to_node="central", file_name="ping2.txt")])
        await wait_for(lambda: net.result("out", "ping2.txt", on="ship9", ran="central").exists())


async def test_keys_allow_is_refused_on_a_node_that_is_not_the_authority(
    net: LoopbackNet,
) -> None:
    central, ship1 = net.node("central"), net.node("ship1")
    error = net.result("out", "out.txt.error")
    async with central, ship1:
        await central.submit([message("REQKeysAllow", ["ship9"])])
        text = await wait_for_text(error, "not the key authority")
    assert text.startswith("error: REQKeysAllow: REQKeysAllow: this node is not the key authority")


async def test_a_hello_not_signed_by_the_key_it_carries_is_not_recorded(
    net: LoopbackNet,
) -> None:
    central = net.node("central", is_central_auth=True, is_central_error_logger=True)
    probe = net.transports["central"]
    forged_key = bytes(32)
    async with central:
        hello = central.security.sign(
            Message(
                id="x:1",
                to_node="central",
                from_node="ship9",
                method="REQHello",
                data=forged_key,
                directory="hello-messages",
                file_name="hello.log",
                ack_timeout=5,
                reply_method="REQNone",
            )
        )
        ack = await ack_for(probe, "central.REQHello.EventNACK", hello)
        assert ack.accepted == ("x:1",)  # central does not check: the hello runs...
        errors = await wait_for_text(net.error_log(), "key of ship9 not recorded")
    assert "the hello is not signed by ship9 with the key it carries" in errors
    assert central.security.trust.state == TrustState()  # ...but no key is recorded
    assert Signature.parse(hello.arg_signature).signer == "central"
    assert Path(net.error_log()).exists()
