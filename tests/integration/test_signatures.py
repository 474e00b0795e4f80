"""Signed messages against a real nats-server: what a bare NATS client can and cannot make a
checking node do.

ship1 runs with ``enable_signature_check`` and trusts one key, central's (given as
``central_public_key``). A bare client (a NatsBridge, no node) publishes protocol-2
REQCliCommand messages to ship1's subject and reads ship1's ACKs. Unsigned, signed by an
unknown key, altered after signing, re-targeted and old replayed messages are rejected by id
with the reason, never run, and ship1's central error log (ship1 is its own central error
logger here) says why. The same command properly signed runs exactly once, even sent twice.
"""

from __future__ import annotations

import time
from pathlib import Path

import attrs
import cbor2
import pytest
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from steward_otp import codec
from steward_otp.bridge import ConnectionState, NatsBridge
from steward_otp.config import Config
from steward_otp.delivery.protocol import VERSION_HEADER, Ack
from steward_otp.message import Message
from steward_otp.node import Node
from steward_otp.security.keyfiles import SigningKey
from steward_otp.security.nkey import nkey_from_ssh_key
from steward_otp.security.signing import Signature, sign, sign_batch
from tests.conftest import NatsServer
from tests.integration.test_bridge import running_bridge
from tests.nodes import file_text, node_config, wait_for

pytestmark = pytest.mark.integration

SUBJECT = "ship1.REQCliCommand.EventACK"
DAY = 86400.0
CENTRAL = SigningKey.generate()
MALLORY = SigningKey.generate()


def command(msg_id: str, marker: Path, **fields: object) -> Message:
    values: dict[str, object] = {
        "id": msg_id,
        "to_node": "ship1",
        "from_node": "central",
        "method": "REQCliCommand",
        "method_args": ("sh", "-c", f"echo {msg_id} >> {marker}"),
        "ack_timeout": 5,
        "method_timeout": 10,
        "reply_method": "REQNone",
    }
    values.update(fields)
    return Message(**values)  # type: ignore[arg-type]


def by(key: SigningKey, message: Message, *, signer: str = "central", ago: float = 0.0) -> Message:
    return sign(message, key.private, signer=signer, now=time.time() - ago)


def checking_ship1(tmp_path: Path, nats_server: NatsServer, **settings: object) -> Config:
    """ship1 checking signatures, trusting central's key alone."""
    return node_config(
        tmp_path,
        "ship1",
        nats_server.url,
        enable_signature_check=True,
        central_public_key=CENTRAL.public_text,
        **settings,
    )


class Client:
    """A bare NATS client publishing as a protocol-2 sender and reading the ACKs."""

    def __init__(self, bridge: NatsBridge) -> None:
        self.bridge = bridge
        self.inbox = bridge.new_inbox()
        self.acks = bridge.subscribe(self.inbox)

    def publish(self, message: Message, subject: str = SUBJECT) -> None:
        encoded = codec.encode(message, compress_threshold=None)
        headers = {**encoded.headers, VERSION_HEADER: "2"}
        self.bridge.publish_nowait(subject, encoded.payload, headers, self.inbox)

    async def send(self, message: Message, subject: str = SUBJECT) -> Ack:
        self.publish(message, subject)
        with trio.fail_after(10):
            return Ack.decode((await self.acks.receive.receive()).payload)

    async def until_served(self, message: Message) -> Ack:
        """Send ``message`` until ship1's subscription answers (it may still be starting)."""
        with trio.fail_after(30):
            while True:
                self.publish(message)
                with trio.move_on_after(0.5):
                    return Ack.decode((await self.acks.receive.receive()).payload)


async def test_a_bare_client_cannot_make_a_checking_node_run_what_central_did_not_sign(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    marker = tmp_path / "ran.txt"
    config = checking_ship1(tmp_path, nats_server, is_central_error_logger=True)
    error_log = tmp_path / "ship1" / "data" / "errorLog" / "errorCentral" / "error.log"
    proper = by(CENTRAL, command("central:ok", marker))
    attempts = {
        "unsigned": (
            command("x:unsigned", marker),
            'message is not signed (field "argSignature" is empty)',
        ),
        "unknown key": (
            by(MALLORY, command("x:mallory", marker), signer="mallory"),
            "unknown signer 'mallory': no allowed public key for it on ship1",
        ),
        "forged central": (
            by(MALLORY, command("x:forged", marker)),
            "bad signature: the message does not verify with the allowed key of 'central'",
        ),
        "altered args": (
            attrs.evolve(
                by(CENTRAL, command("x:altered", marker)),
                method_args=("sh", "-c", f"echo pwned >> {marker}"),
            ),
            "bad signature",
        ),
        "altered data": (
            attrs.evolve(by(CENTRAL, command("x:data", marker)), data=b"other"),
            'field "data" was changed after signing',
        ),
        "re-targeted": (
            by(CENTRAL, command("x:retarget", marker, to_node="ship2")),
            "re-targeted: signed for toNode 'ship2', arrived at 'ship1'",
        ),
        "hostile record": (
            attrs.evolve(
                command("x:hostile", marker),
                arg_signature=cbor2.dumps([[1], "central", 1, bytes(32), bytes(64)]),
            ),
            "signature version (not a small integer) is not supported; allowed: 1, 2",
        ),
        "old replay": (
            by(CENTRAL, command("x:old", marker), ago=7 * DAY),
            "too old: signed 7.0 days ago by 'central'; signature_max_age here is 6.0 days",
        ),
    }
    async with Node(config), running_bridge(nats_server.url, "attacker") as bridge:
        client = Client(bridge)
        await bridge.flush()
        first, first_reason = attempts.pop("unsigned")
        acks = {"unsigned": await client.until_served(first)}
        for name, (message, _) in attempts.items():
            acks[name] = await client.send(message)
        attempts["unsigned"] = (first, first_reason)

        ok = await client.send(proper)
        replayed = await client.send(proper)  # the same bytes again, right away
        await wait_for(lambda: file_text(marker) == "central:ok\n")
        await wait_for(lambda: all(m.id in file_text(error_log) for m, _ in attempts.values()))
        await trio.sleep(0.5)  # time for a second run, which must not come
        log_text = file_text(error_log)

    for name, (message, reason) in attempts.items():
        ack = acks[name]
        assert ack.accepted == (), name
        assert [msg_id for msg_id, _ in ack.rejected] == [message.id], name
        assert reason in ack.rejected[0][1], (name, ack.rejected)
        assert ack.rejected[0][1].startswith("signature check: "), name
        assert reason in log_text, name
    assert ok.accepted == ("central:ok",) and ok.rejected == ()
    assert replayed.accepted == ("central:ok",)  # ACKed again as a duplicate...
    assert file_text(marker) == "central:ok\n"  # ...and run once; nothing else ran
    assert "error: ship1.REQCliCommand.EventACK: signature check: " in log_text


async def test_messages_signed_as_one_batch_each_run_once_and_a_changed_one_is_refused(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    marker = tmp_path / "ran.txt"
    config = checking_ship1(tmp_path, nats_server)
    values = [list(command(f"central:b{i}", marker).field_values()) for i in range(5)]
    sign_batch(values, CENTRAL.private, signer="central", now=time.time())
    batch = [Message.from_field_values(v) for v in values]
    assert all(Signature.parse(m.arg_signature).batch for m in batch)
    changed = attrs.evolve(
        batch[2], id="x:changed", method_args=("sh", "-c", f"echo pwned >> {marker}")
    )
    async with Node(config), running_bridge(nats_server.url, "central") as bridge:
        client = Client(bridge)
        await bridge.flush()
        acks = [await client.until_served(batch[0])]
        acks += [await client.send(m) for m in [*batch[1:], changed]]
        await wait_for(lambda: len(file_text(marker).splitlines()) == 5)
        await trio.sleep(0.5)  # time for a run that must not come

    assert [a.accepted for a in acks[:5]] == [(m.id,) for m in batch]
    assert acks[5].accepted == () and acks[5].rejected[0][0] == "x:changed"
    assert "bad signature" in acks[5].rejected[0][1]
    assert sorted(file_text(marker).splitlines()) == [m.id for m in batch]


# -------------------------------------------------------------- nkey from an SSH key


def ssh_key(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    return path


async def test_a_node_authenticates_with_the_nkey_of_its_ssh_key(tmp_path: Path) -> None:
    allowed = ssh_key(tmp_path / "keys" / "allowed")
    other = ssh_key(tmp_path / "keys" / "other")
    server_config = tmp_path / "nats.conf"
    server_config.write_text(
        f'authorization {{ users = [ {{ nkey: "{nkey_from_ssh_key(allowed).public}" }} ] }}\n'
    )
    server = NatsServer(tmp_path / "nats", config_file=server_config)
    await server.astart()
    try:
        good = Node(
            node_config(tmp_path, "ship1", server.url, nkey_from_ed25519_ssh_key_file=str(allowed))
        )
        bad = Node(
            node_config(tmp_path, "ship2", server.url, nkey_from_ed25519_ssh_key_file=str(other))
        )
        async with good, bad:
            await wait_for(lambda: good.bridge.state is ConnectionState.CONNECTED)
            await trio.sleep(1.0)
            assert bad.bridge.state is not ConnectionState.CONNECTED
    finally:
        await server.astop()
