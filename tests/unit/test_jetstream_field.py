"""The per-message ``jetstream`` field: input, validation, wire, signing, replies, routing key."""

from __future__ import annotations

from typing import Any

import attrs
import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from steward_otp.codec import RAW_CBOR_HEADERS, decode, encode
from steward_otp.message import Message, build_reply, parse_messages
from steward_otp.outbound.relay import relay_envelope
from steward_otp.outbound.router import publisher_id
from steward_otp.security.signing import canonical_bytes, sign

REQUEST = Message(
    id="central:1",
    to_node="ship1",
    from_node="central",
    method="REQCliCommand",
    method_args=("true",),
    ack_timeout=5,
)


@pytest.mark.parametrize(("text", "expected"), [("true", True), ("false", False), ("null", None)])
def test_json_input_reads_the_field(text: str, expected: bool | None) -> None:
    result = parse_messages('{"toNode": "ship1", "method": "REQPing", "jetstream": ' + text + "}")
    assert not result.errors
    assert result.messages[0].jetstream is expected


def test_yaml_input_reads_the_field() -> None:
    result = parse_messages("toNode: ship1\nmethod: REQPing\njetstream: true\n")
    assert not result.errors
    assert result.messages[0].jetstream is True


def test_absent_is_the_node_default() -> None:
    result = parse_messages('{"toNode": "ship1", "method": "REQPing"}')
    assert result.messages[0].jetstream is None
    assert "jetstream" not in result.messages[0].to_dict()


@pytest.mark.parametrize("raw", ['"yes"', "1", '"true"', "[true]"])
def test_a_non_boolean_is_refused_naming_the_field(raw: str) -> None:
    result = parse_messages('{"toNode": "ship1", "method": "REQPing", "jetstream": ' + raw + "}")
    assert not result.messages
    (error,) = result.errors
    assert error.field == "jetstream"
    assert "is not true or false" in str(error)
    assert "delivery default" in str(error)


def test_yaml_yes_is_not_a_boolean_here() -> None:
    result = parse_messages("toNode: ship1\nmethod: REQPing\njetstream: yes\n")
    assert [e.field for e in result.errors] == ["jetstream"]


def test_the_constructor_refuses_other_types() -> None:
    with pytest.raises(TypeError, match="jetstream"):
        Message(jetstream="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize("flag", [True, False, None])
def test_the_field_survives_json_and_the_wire(flag: bool | None) -> None:
    message = Message(to_node="ship1", method="REQPing", jetstream=flag)
    assert Message.from_dict(message.to_dict()) == message
    assert decode(*encode(message)) == message
    values = cbor2.loads(encode(message).payload)
    if flag is None:
        assert len(values) == 23  # as before the field existed: Go Steward reads it
    else:
        assert len(values) == 28
        assert values[23:27] == ["", "", "", ""]
        assert values[27] is flag


def test_an_older_decoder_layout_without_the_field_reads_as_unset() -> None:
    values = [*cbor2.loads(encode(REQUEST).payload), "via", "", "", "REQX"]  # 27 elements
    decoded = decode(cbor2.dumps(values), RAW_CBOR_HEADERS)
    assert decoded.jetstream is None
    assert decoded.relay_via_node == "via"


def test_a_non_boolean_on_the_wire_is_a_decode_error() -> None:
    values = [*cbor2.loads(encode(REQUEST).payload), "", "", "", "", "yes"]
    with pytest.raises(ValueError, match="jetstream"):
        decode(cbor2.dumps(values), RAW_CBOR_HEADERS)


def test_signing_covers_the_field_and_is_unchanged_when_it_is_unset() -> None:
    plain = canonical_bytes(REQUEST, signer="central", signed_at_ms=1)
    # Unset: the canonical bytes of a node that predates the field (27 signed fields).
    assert len(cbor2.loads(plain)[3]) == 26
    chosen = Message(**{**_fields(REQUEST), "jetstream": True})
    assert canonical_bytes(chosen, signer="central", signed_at_ms=1) != plain
    key = Ed25519PrivateKey.from_private_bytes(bytes(32))
    signed = sign(chosen, key, signer="central", now=1.0)
    assert signed.jetstream is True


def test_a_reply_to_a_message_that_chose_goes_core_else_the_default() -> None:
    for flag, expected in ((True, False), (False, False), (None, None)):
        request = Message(**{**_fields(REQUEST), "jetstream": flag})
        reply = build_reply(request, b"out")
        assert reply is not None
        assert reply.jetstream is expected


def test_messages_that_choose_have_their_own_publisher() -> None:
    assert publisher_id("ship1", "REQPing") == "ship1.REQPing"
    assert publisher_id("ship1", "REQPing", True) == "ship1.REQPing@jetstream"
    assert publisher_id("ship1", "REQPing", False) == "ship1.REQPing@core"


def test_a_relay_envelope_goes_the_way_its_message_chose() -> None:
    message = Message(**{**_fields(REQUEST), "jetstream": True, "relay_via_node": "hub"})
    assert relay_envelope(message, "hub", "central").jetstream is True


def _fields(message: Message) -> dict[str, Any]:
    return {field.name: getattr(message, field.name) for field in attrs.fields(type(message))}
