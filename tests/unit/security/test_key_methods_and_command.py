"""The key methods called directly, the signing outbox, and the ``keys`` command."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from steward_otp import codec
from steward_otp.config import Config
from steward_otp.handlers.base import HandlerError
from steward_otp.handlers.keys import key_handlers
from steward_otp.message import Message, MessageDefaults
from steward_otp.methods import builtin_table
from steward_otp.security.keyfiles import encode_key_text, load_or_create, signing_dir
from steward_otp.security.keys_cli import app
from steward_otp.security.outbox import SigningOutbox
from steward_otp.security.service import NodeSecurity
from steward_otp.security.signing import Signature, verifies_with
from steward_otp.security.trust import TrustStore
from steward_otp.store import Store
from tests.unit.handlers.fakes import FakeServices, context, request

K1 = bytes([1]) * 32


def security(home: Path, *, authority: bool) -> NodeSecurity:
    return NodeSecurity(Config(home=home, node_name="central", is_central_auth=authority))


async def test_public_key_replies_with_the_raw_key(tmp_path: Path) -> None:
    node = security(tmp_path, authority=False)
    public_key, *_ = key_handlers(node)
    msg = request("REQPublicKey")

    assert await public_key(context(FakeServices(tmp_path), msg), msg) == node.public_key


async def test_keys_allow_and_delete_on_the_authority(tmp_path: Path) -> None:
    node = security(tmp_path, authority=True)
    node.trust.update(lambda s: s.record_hello("ship9", K1, 1.0)[0])
    _, allow, delete, *_ = key_handlers(node)
    services = FakeServices(tmp_path)

    allowed = request("REQKeysAllow", "ship9")
    assert await allow(context(services, allowed), allowed) == (
        b"allowed public keys for the nodes=[ship9]\n"
    )
    assert node.trust.state.allowed == {"ship9": K1}
    assert services.reported("info") == [
        "info: REQKeysAllow : allowed new/updated public key for ship9 to allowed public key map"
    ]
    deleted = request("REQKeysDelete", "ship9")
    assert await delete(context(services, deleted), deleted) == (
        b"deleted public keys for the nodes=[ship9]\n"
    )
    assert node.trust.state.allowed == {}


@pytest.mark.parametrize(
    ("authority", "args", "problem"),
    [
        (False, ("ship9",), "REQKeysAllow: this node is not the key authority"),
        (True, (), 'REQKeysAllow: field "methodArgs": name at least one node'),
        (True, ("ship9",), "REQKeysAllow: no pending key for ship9; nodes with a pending key: "),
    ],
)
async def test_keys_allow_refusals(
    tmp_path: Path, authority: bool, args: tuple[str, ...], problem: str
) -> None:
    _, allow, *_ = key_handlers(security(tmp_path, authority=authority))
    msg = request("REQKeysAllow", *args)

    with pytest.raises(HandlerError) as caught:
        await allow(context(FakeServices(tmp_path), msg), msg)
    assert str(caught.value).startswith(problem)


# -- the signing outbox -----------------------------------------------------------------------


def outbox(tmp_path: Path, node: NodeSecurity) -> SigningOutbox:
    return SigningOutbox(
        Store(tmp_path / "db.sqlite"),
        "central",
        table=builtin_table(),
        defaults=MessageDefaults(),
        compress_threshold=None,
        signer=node,
    )


def test_prepare_signs_the_message_as_this_node(tmp_path: Path) -> None:
    node = security(tmp_path, authority=False)

    prepared = outbox(tmp_path, node).prepare(Message(to_node="ship1", method="REQPing"))

    assert prepared.id and prepared.from_node == "central"
    assert Signature.parse(prepared.arg_signature).signer == "central"
    assert verifies_with(prepared, node.public_key)


def signed_by_operator(tmp_path: Path) -> Message:
    """A ping the node ``operator`` signed, as its outbox prepared it: defaults applied."""
    operator = NodeSecurity(Config(home=tmp_path / "op", node_name="operator"))
    return operator.sign(
        Message(
            id="operator:1",
            from_node="operator",
            to_node="ship1",
            method="REQPing",
            method_timeout=10,
        )
    )


def test_a_message_signed_elsewhere_is_forwarded_untouched(tmp_path: Path) -> None:
    original = signed_by_operator(tmp_path)

    forwarded = outbox(tmp_path, security(tmp_path, authority=False)).prepare(original)

    assert forwarded == original


def test_through_a_relay_the_message_and_its_envelope_are_both_signed(tmp_path: Path) -> None:
    node = security(tmp_path, authority=False)

    envelope = outbox(tmp_path, node).prepare(
        Message(to_node="ship1", method="REQPing", relay_via_node="relay1")
    )

    assert (envelope.method, envelope.to_node) == ("REQRelay", "relay1")
    assert verifies_with(envelope, node.public_key)
    inner = codec.decode(envelope.data, codec.RAW_CBOR_HEADERS)
    assert inner.to_node == "ship1"
    assert verifies_with(inner, node.public_key)


def test_messages_prepared_together_share_one_batch_signature(tmp_path: Path) -> None:
    node = security(tmp_path, authority=False)
    forwarded = signed_by_operator(tmp_path)
    messages = [
        Message(to_node="ship1", method="REQPing"),
        forwarded,
        Message(to_node="ship2", method="REQPing", relay_via_node="relay1"),
        Message(to_node="ship3", method="REQPing"),
        Message(to_node="ship4", method="REQPing", data=b"x"),
    ]

    prepared = outbox(tmp_path, node).prepare_all(messages)

    assert [m.to_node for m in prepared] == ["ship1", "ship1", "relay1", "ship3", "ship4"]
    assert prepared[1] == forwarded  # signed elsewhere: untouched
    assert prepared[2].method == "REQRelay" and verifies_with(prepared[2], node.public_key)
    batch = [prepared[0], prepared[3], prepared[4]]
    records = [Signature.parse(m.arg_signature) for m in batch]
    assert {r.value for r in records} == {records[0].value}  # one Ed25519 signature
    assert [r.batch.index for r in records if r.batch] == [0, 1, 2]
    assert all(verifies_with(m, node.public_key) for m in batch)


def test_a_refused_message_fails_the_whole_prepare_all(tmp_path: Path) -> None:
    node = security(tmp_path, authority=False)
    with pytest.raises(ValueError, match='field "toNode" is empty'):
        outbox(tmp_path, node).prepare_all(
            [Message(to_node="ship1", method="REQPing"), Message(method="REQPing")]
        )


# -- the keys command -------------------------------------------------------------------------

runner = CliRunner()


def keys(home: Path, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, [*args, "--home", str(home)])
    return result.exit_code, result.stdout, result.stderr


def test_show_prints_the_public_key_and_creates_the_pair_once(tmp_path: Path) -> None:
    code, out, err = keys(tmp_path, "show")
    key, _ = load_or_create(signing_dir(tmp_path / "etc"))

    assert code == 0
    assert out == key.public_text + "\n"
    assert "created a new key pair" in err
    assert keys(tmp_path, "show")[1:] == (out, "")


def test_add_ls_allow_delete(tmp_path: Path) -> None:
    store = TrustStore(signing_dir(tmp_path / "etc"))
    store.update(lambda s: s.record_hello("ship9", K1, 0.0)[0])
    central = encode_key_text(bytes([3]) * 32)

    assert keys(tmp_path, "add", "central", central)[0] == 0
    code, out, _ = keys(tmp_path, "ls")
    assert code == 0
    assert out.splitlines() == [
        f"allowed  central  {central}",
        f"pending  ship9  {encode_key_text(K1)}  first seen 1970-01-01T00:00:00+00:00",
    ]
    assert keys(tmp_path, "allow", "ship9")[1] == "allowed public keys for the nodes=[ship9]\n"
    assert keys(tmp_path, "delete", "central")[0] == 0
    assert TrustStore(signing_dir(tmp_path / "etc")).state.allowed == {"ship9": K1}


def test_refusals_are_one_line_with_status_1(tmp_path: Path) -> None:
    assert keys(tmp_path, "allow", "ship9") == (
        1,
        "",
        "keys: error: no pending key for ship9; nodes with a pending key: none\n",
    )
    code, _, err = keys(tmp_path, "add", "central", "abc")
    assert code == 1 and err.startswith("keys: error: KEY holds 2 bytes")


def test_with_signature_batches_off_every_message_is_signed_alone(tmp_path: Path) -> None:
    node = NodeSecurity(Config(home=tmp_path, node_name="central", signature_batches=False))
    messages = [Message(to_node=f"ship{i}", method="REQPing") for i in range(3)]

    prepared = outbox(tmp_path, node).prepare_all(messages)

    records = [Signature.parse(m.arg_signature) for m in prepared]
    assert all(r.batch is None for r in records)  # version 1, as an older node reads them
    assert len({r.value for r in records}) == 3
    assert all(verifies_with(m, node.public_key) for m in prepared)
