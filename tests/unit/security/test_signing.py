"""Message signatures: what is signed, and every way a signed message can be refused."""

from __future__ import annotations

from typing import Any

import attrs
import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import assume, given
from hypothesis import strategies as st

from steward_otp import codec
from steward_otp.message import FIELD_NAMES, Message
from steward_otp.security.signing import (
    Expected,
    RefusalKind,
    Signature,
    canonical_bytes,
    check,
    sign,
    sign_values,
    verifies_with,
)
from tests.property.strategies import any_messages, messages

NOW = 1_750_000_000.0
DAY = 86400.0
CENTRAL_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
CENTRAL_PUBLIC = CENTRAL_KEY.public_key().public_bytes_raw()
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
OTHER_PUBLIC = OTHER_KEY.public_key().public_bytes_raw()
SIGNED_FIELDS = [name for name in FIELD_NAMES if name != "arg_signature"]


def keys(node: str) -> bytes | None:
    return {"central": CENTRAL_PUBLIC}.get(node)


def signed(message: Message, *, now: float = NOW) -> Message:
    return sign(message, CENTRAL_KEY, signer="central", now=now)


def where(message: Message, *, now: float = NOW, max_age: float = 6 * DAY) -> Expected:
    """Where ``message`` arrives when nobody re-targets it."""
    return Expected(node=message.to_node, method=message.method, now=now, max_age=max_age)


def command(**fields: Any) -> Message:
    values: dict[str, Any] = {
        "id": "central-0191",
        "to_node": "ship1",
        "from_node": "central",
        "method": "REQCliCommand",
        "method_args": ("bash", "-c", "uptime"),
        "ack_timeout": 5,
        "reply_method": "REQToFileAppend",
        "directory": "out",
        "file_name": "uptime.txt",
    }
    values.update(fields)
    return Message(**values)


# -- properties -------------------------------------------------------------------------------


@given(any_messages())
def test_a_signed_message_verifies_where_it_was_sent(message: Message) -> None:
    assert check(signed(message), keys, where(message)) is None


@given(any_messages())
def test_signing_the_field_values_signs_as_signing_the_message(message: Message) -> None:
    values = list(message.field_values())
    sign_values(values, CENTRAL_KEY, signer="central", now=NOW)
    from_values = Message.from_field_values(values)
    assert check(from_values, keys, where(message)) is None
    assert Signature.parse(from_values.arg_signature) == Signature.parse(
        signed(message).arg_signature
    )  # Ed25519 signatures are deterministic: the same bytes were signed
    assert attrs.evolve(from_values, arg_signature=b"") == attrs.evolve(message, arg_signature=b"")


@given(messages(), st.booleans())
def test_the_signature_survives_the_wire_encoding(message: Message, compress: bool) -> None:
    sent = signed(message)
    encoded = codec.encode(sent, compress_threshold=64 if compress else None)
    received = codec.decode(encoded.payload, encoded.headers)
    assert check(received, keys, where(message)) is None


@given(any_messages(), st.data())
def test_changing_any_field_after_signing_breaks_the_signature(
    message: Message, data: st.DataObject
) -> None:
    field = data.draw(st.sampled_from(SIGNED_FIELDS), label="field")
    other = data.draw(any_messages(max_depth=1), label="other")
    new_value = getattr(other, field)
    assume(new_value != getattr(message, field))
    tampered = attrs.evolve(signed(message), **{field: new_value})

    refusal = check(tampered, keys, where(message))

    assert refusal is not None
    expected = RefusalKind.DATA_ALTERED if field == "data" else RefusalKind.BAD_SIGNATURE
    assert refusal.kind is expected, refusal.reason


@given(any_messages(), st.text(min_size=1, max_size=12))
def test_a_signed_message_published_to_another_node_is_retargeted(
    message: Message, node: str
) -> None:
    assume(node != message.to_node)
    arrived = Expected(node=node, method=message.method, now=NOW, max_age=DAY)

    refusal = check(signed(message), keys, arrived)

    assert refusal is not None and refusal.kind is RefusalKind.RETARGETED
    assert f"signed for toNode {message.to_node!r}, arrived at {node!r}" in refusal.reason


@given(any_messages(), any_messages())
def test_different_messages_have_different_canonical_bytes(a: Message, b: Message) -> None:
    a, b = attrs.evolve(a, arg_signature=b""), attrs.evolve(b, arg_signature=b"")
    same = canonical_bytes(a, signer="n", signed_at_ms=1) == canonical_bytes(
        b, signer="n", signed_at_ms=1
    )
    assert same == (a == b)


@given(any_messages())
def test_the_signer_and_the_time_are_signed_too(message: Message) -> None:
    base = canonical_bytes(message, signer="central", signed_at_ms=1)
    assert canonical_bytes(message, signer="ship1", signed_at_ms=1) != base
    assert canonical_bytes(message, signer="central", signed_at_ms=2) != base


# -- examples ---------------------------------------------------------------------------------


def test_the_signature_travels_in_arg_signature_as_a_record() -> None:
    message = signed(command())
    record = Signature.parse(message.arg_signature)

    assert record.signer == "central"
    assert record.signed_at_ms == NOW * 1000
    assert cbor2.loads(message.arg_signature)[0] == 1  # version
    assert verifies_with(message, CENTRAL_PUBLIC)
    assert not verifies_with(message, OTHER_PUBLIC)


def test_an_unsigned_message_is_refused() -> None:
    refusal = check(command(), keys, where(command()))

    assert refusal is not None and refusal.kind is RefusalKind.NOT_SIGNED
    assert refusal.reason == (
        'message is not signed (field "argSignature" is empty); this node runs only messages '
        "signed by an allowed key"
    )


def test_a_steward_signature_is_refused_with_a_hint() -> None:
    steward = command(arg_signature=CENTRAL_KEY.sign(b"bash -c uptime"))

    refusal = check(steward, keys, where(steward))

    assert refusal is not None and refusal.kind is RefusalKind.MALFORMED
    assert "Go Steward signature over methodArgs only" in refusal.reason


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"\xff\x00", "not a steward-otp signature record"),
        (cbor2.dumps([1, "central", 5]), "expected [version, signer, signedAt"),
        (
            cbor2.dumps([9, "central", 5, b"\0" * 32, b"\0" * 64]),
            "version 9 is not supported; allowed: 1, 2",
        ),
        (cbor2.dumps([1, "", 5, b"\0" * 32, b"\0" * 64]), "signer's node name is missing"),
        (cbor2.dumps([1, "central", 5, b"\0" * 31, b"\0" * 64]), "digest is not 32 bytes"),
        (cbor2.dumps([1, "central", 5, b"\0" * 32, b"\0" * 63]), "signature is not 64 bytes"),
    ],
)
def test_a_malformed_signature_record_is_refused(raw: bytes, problem: str) -> None:
    message = command(arg_signature=raw)

    refusal = check(message, keys, where(message))

    assert refusal is not None and refusal.kind is RefusalKind.MALFORMED
    assert problem in refusal.reason


def test_a_signer_without_an_allowed_key_is_unknown() -> None:
    message = sign(command(), OTHER_KEY, signer="mallory", now=NOW)

    refusal = check(message, keys, where(message))

    assert refusal is not None and refusal.kind is RefusalKind.UNKNOWN_SIGNER
    assert refusal.reason == "unknown signer 'mallory': no allowed public key for it on ship1"


def test_a_known_signer_with_another_key_has_a_bad_signature() -> None:
    message = sign(command(), OTHER_KEY, signer="central", now=NOW)

    refusal = check(message, keys, where(message))

    assert refusal is not None and refusal.kind is RefusalKind.BAD_SIGNATURE
    assert "does not verify with the allowed key of 'central'" in refusal.reason


def test_a_message_sent_to_the_subject_of_another_method_is_retargeted() -> None:
    message = signed(command(method="REQToFile", data=b"* * * * * root evil\n"))
    arrived = Expected(node="ship1", method="REQCliCommand", now=NOW, max_age=DAY)

    refusal = check(message, keys, arrived)

    assert refusal is not None and refusal.kind is RefusalKind.RETARGETED
    assert "signed for method 'REQToFile', arrived on the subject of 'REQCliCommand'" in (
        refusal.reason
    )


def test_copy_sub_methods_match_their_subject_by_base_name() -> None:
    message = signed(command(method="REQSUBCopySrc.0b6f"))
    arrived = Expected(node="ship1", method="REQSUBCopySrc", now=NOW, max_age=DAY)

    assert check(message, keys, arrived) is None


def test_a_message_older_than_the_maximum_age_is_refused() -> None:
    message = signed(command(), now=NOW - 8 * DAY)

    refusal = check(message, keys, where(message, max_age=6 * DAY))

    assert refusal is not None and refusal.kind is RefusalKind.TOO_OLD
    assert refusal.reason == (
        "too old: signed 8.0 days ago by 'central'; signature_max_age here is 6.0 days"
    )


def test_a_message_that_waited_less_than_the_maximum_age_runs() -> None:
    message = signed(command(), now=NOW - 5 * DAY)

    assert check(message, keys, where(message, max_age=6 * DAY)) is None


def test_a_message_signed_in_the_future_beyond_the_clock_allowance_is_refused() -> None:
    ahead = signed(command(), now=NOW + 600)
    slightly = signed(command(), now=NOW + 100)

    refusal = check(ahead, keys, where(ahead))

    assert refusal is not None and refusal.kind is RefusalKind.FUTURE
    assert "signed 10 min in the future by 'central'" in refusal.reason
    assert check(slightly, keys, where(slightly)) is None


def test_sign_replaces_an_existing_signature() -> None:
    once = signed(command())
    again = sign(once, OTHER_KEY, signer="ship2", now=NOW)

    assert Signature.parse(again.arg_signature).signer == "ship2"
    assert verifies_with(again, OTHER_PUBLIC)
