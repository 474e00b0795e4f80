"""Key distribution, node and central side, without a network: documents, hashes, trust on
first contact, and every delivery a node must refuse."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest

from steward_otp.config import load_config
from steward_otp.message import Message
from steward_otp.security.key_updates import (
    EMPTY_HASH,
    KeyDocument,
    KeyUpdateError,
    keys_hash,
)
from steward_otp.security.keyfiles import SigningKey, encode_key_text
from steward_otp.security.service import NodeSecurity
from steward_otp.security.signing import sign
from steward_otp.security.trust import TrustState


def security(base: Path, name: str, **settings: object) -> NodeSecurity:
    config = load_config(base / name, {"node_name": name, **settings})
    return NodeSecurity(config)


def adding(node: str, key: bytes) -> Callable[[TrustState], TrustState]:
    """The trust change that allows ``key`` for ``node``."""
    return lambda s: s.add(node, key)


def delivery(central: NodeSecurity, data: bytes, *, to: str = "ship1") -> Message:
    return central.sign(
        Message(to_node=to, from_node="central", method="REQKeysDeliverUpdate", data=data)
    )


def test_the_hash_is_of_the_keys_only_and_empty_is_zero() -> None:
    a, b = SigningKey.generate().public, SigningKey.generate().public
    assert keys_hash({}) == EMPTY_HASH
    assert keys_hash({"x": a, "y": b}) == keys_hash({"y": b, "x": a})
    assert keys_hash({"x": a}) != keys_hash({"x": b})
    document = KeyDocument("central", {"x": a, "y": b})
    assert KeyDocument.from_json(document.to_json()).keys == {"x": a, "y": b}
    assert document.hash == keys_hash({"x": a, "y": b})


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"not json", "not JSON"),
        (b"[" * 5000, "not JSON"),
        (b'{"keys": {}}', '"central": NAME'),
        (b'{"central": "central", "keys": {"x": 5}}', "must be a base64 string"),
        (b'{"central": "central", "keys": {"x": "abc"}}', "the key of 'x'"),
    ],
)
def test_a_damaged_document_is_refused_saying_what_is_wrong(data: bytes, problem: str) -> None:
    with pytest.raises(KeyUpdateError, match=problem):
        KeyDocument.from_json(data)


async def test_central_answers_only_when_the_node_holds_other_keys(tmp_path: Path) -> None:
    central = security(tmp_path, "central", is_central_auth=True)
    document = central.key_updates.document()
    assert document.keys == {"central": central.public_key}
    assert central.key_updates.answer_request(document.hash) is None
    assert central.key_updates.answer_request(EMPTY_HASH) == document.to_json()

    ship1 = security(tmp_path, "ship1")
    with pytest.raises(KeyUpdateError, match="not the key authority"):
        ship1.key_updates.answer_request(EMPTY_HASH)


async def test_a_node_trusts_centrals_key_on_first_contact_and_then_never_another(
    tmp_path: Path,
) -> None:
    central = security(tmp_path, "central", is_central_auth=True)
    ship1 = security(tmp_path, "ship1", enable_key_updates=True)
    ship2_key = SigningKey.generate().public
    central.trust.update(lambda s: s.add("ship2", ship2_key))
    assert ship1.key_for("central") is None

    count, first = await ship1.key_updates.adopt(
        delivery(central, central.key_updates.document().to_json())
    )

    assert (count, first) == (2, True)
    assert ship1.key_for("central") == central.public_key
    assert ship1.key_for("ship2") == ship2_key
    assert keys_hash(ship1.key_updates.held()) != central.key_updates.document().hash  # ship1
    # is not allowed on central yet; once it is, both views agree.
    central.trust.update(lambda s: s.add("ship1", ship1.public_key))
    await ship1.key_updates.adopt(delivery(central, central.key_updates.document().to_json()))
    assert keys_hash(ship1.key_updates.held()) == central.key_updates.document().hash

    # An impostor with a key of its own, calling itself central: refused, nothing changes.
    impostor = security(tmp_path / "elsewhere", "central", is_central_auth=True)
    forged = delivery(impostor, impostor.key_updates.document().to_json())
    with pytest.raises(KeyUpdateError, match="different from the one trusted here"):
        await ship1.key_updates.adopt(forged)
    assert ship1.key_for("central") == central.public_key


async def test_a_delivery_not_signed_by_central_is_refused(tmp_path: Path) -> None:
    central = security(tmp_path, "central", is_central_auth=True)
    ship1 = security(
        tmp_path,
        "ship1",
        central_public_key=encode_key_text(central.public_key),
        enable_key_updates=True,
    )
    data = central.key_updates.document().to_json()
    mallory = SigningKey.generate()

    cases = {
        "unsigned": Message(
            to_node="ship1", from_node="central", method="REQKeysDeliverUpdate", data=data
        ),
        "another signer": sign(
            Message(to_node="ship1", from_node="ship2", method="REQKeysDeliverUpdate", data=data),
            mallory.private,
            signer="ship2",
            now=time.time(),
        ),
        "forged central": sign(
            Message(to_node="ship1", from_node="central", method="REQKeysDeliverUpdate", data=data),
            mallory.private,
            signer="central",
            now=time.time(),
        ),
        "altered": attrs.evolve(delivery(central, data), data=data.replace(b"{", b"{ ", 1)),
        "for another node": delivery(central, data, to="ship2"),
    }
    reasons = {}
    for name, message in cases.items():
        with pytest.raises(KeyUpdateError) as caught:
            await ship1.key_updates.adopt(message)
        reasons[name] = str(caught.value)
    assert "must be signed by the central node" in reasons["unsigned"]
    assert "only the central node (central) delivers keys" in reasons["another signer"]
    assert "bad signature" in reasons["forged central"]
    assert "changed after signing" in reasons["altered"]
    assert "re-targeted" in reasons["for another node"]
    assert ship1.trust.state.allowed == {}


async def test_the_node_never_takes_its_own_name_from_central(tmp_path: Path) -> None:
    central = security(tmp_path, "central", is_central_auth=True)
    ship1 = security(
        tmp_path,
        "ship1",
        central_public_key=encode_key_text(central.public_key),
        enable_key_updates=True,
    )
    central.trust.update(lambda s: s.add("ship1", SigningKey.generate().public))
    await ship1.key_updates.adopt(delivery(central, central.key_updates.document().to_json()))
    assert ship1.key_for("ship1") == ship1.public_key
    assert "ship1" not in ship1.trust.state.allowed


def test_central_pushes_to_every_node_it_allows(tmp_path: Path) -> None:
    central = security(tmp_path, "central", is_central_auth=True)
    for node in ("ship1", "ship2"):
        central.trust.update(adding(node, SigningKey.generate().public))
    pushed = central.key_updates.push_messages(ack_timeout=5)
    assert [m.to_node for m in pushed] == ["ship1", "ship2"]
    assert {m.method for m in pushed} == {"REQKeysDeliverUpdate"}
    assert KeyDocument.from_json(pushed[0].data).keys.keys() == {"central", "ship1", "ship2"}


async def test_a_node_without_key_updates_takes_no_keys(tmp_path: Path) -> None:
    central = security(tmp_path, "central", is_central_auth=True)
    ship1 = security(tmp_path, "ship1")
    with pytest.raises(KeyUpdateError, match="key updates are off here"):
        await ship1.key_updates.adopt(delivery(central, central.key_updates.document().to_json()))
    assert ship1.key_for("central") is None
