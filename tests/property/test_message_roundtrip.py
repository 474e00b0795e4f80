"""Any message survives JSON, YAML and the wire codec unchanged."""

from __future__ import annotations

import json

import lz4.frame
from hypothesis import given, settings
from hypothesis import strategies as st

from steward_otp.codec import DEFAULT_COMPRESS_THRESHOLD, cbor_payload, decode, encode, frame
from steward_otp.message import (
    Message,
    dump_json,
    dump_yaml,
    parse_messages,
    validate_message,
)
from steward_otp.message.reading import _BAD, _FIELDS_BY_KEY, _SCALAR_FIELDS, _Reader

from .strategies import any_messages, messages


@given(messages())
def test_generated_messages_are_valid_input(message: Message) -> None:
    assert validate_message(message) == []


@given(messages())
def test_message_round_trips_through_json_text(message: Message) -> None:
    result = parse_messages(dump_json([message]))
    assert result.errors == []
    assert result.messages == [message]


@given(messages())
def test_message_round_trips_through_yaml_text(message: Message) -> None:
    result = parse_messages(dump_yaml([message]))
    assert result.errors == []
    assert result.messages == [message]


@settings(max_examples=50)
@given(messages(), messages(), messages())
def test_batch_round_trips_in_order_through_json_and_yaml(
    a: Message, b: Message, c: Message
) -> None:
    assert parse_messages(dump_json([a, b, c], indent=None)).messages == [a, b, c]
    assert parse_messages(dump_yaml([a, b, c]).encode()).messages == [a, b, c]


@given(any_messages())
def test_any_message_round_trips_through_to_dict_and_json(message: Message) -> None:
    assert Message.from_dict(json.loads(json.dumps(message.to_dict()))) == message


@given(any_messages())
def test_any_message_round_trips_through_the_wire_codec(message: Message) -> None:
    encoded = encode(message)
    assert decode(encoded.payload, encoded.headers) == message
    raw = encode(message, compress_threshold=None).payload
    worth_it = len(raw) > DEFAULT_COMPRESS_THRESHOLD and len(lz4.frame.compress(raw)) < len(raw)
    assert encoded.headers["cmp"] == ("lz4" if worth_it else "none")


@given(any_messages())
def test_wire_codec_round_trip_without_compression(message: Message) -> None:
    encoded = encode(message, compress_threshold=None)
    assert encoded.headers["cmp"] == "none"
    assert decode(encoded.payload, encoded.headers) == message


@given(any_messages(max_depth=0))
def test_from_field_values_equals_constructor(message: Message) -> None:
    assert Message.from_field_values(message.field_values()) == message
    assert Message.from_field_values(list(message.field_values())) == message


@given(any_messages(), st.sampled_from([None, 0, 64, DEFAULT_COMPRESS_THRESHOLD]))
def test_framing_the_stored_cbor_gives_what_encode_gives(
    message: Message, threshold: int | None
) -> None:
    raw = cbor_payload(message)
    assert raw == encode(message, compress_threshold=None).payload
    assert frame(raw, message.from_node, compress_threshold=threshold) == encode(
        message, compress_threshold=threshold
    )


_SCALAR_KEYS = sorted(_SCALAR_FIELDS)
_RAW_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(),
    st.text(alphabet=st.characters(codec="ascii")),
    st.lists(st.integers(min_value=0, max_value=255), max_size=3),
)


@given(st.sampled_from(_SCALAR_KEYS), _RAW_SCALARS)
def test_the_readers_fast_path_reads_scalars_as_the_checking_path_does(
    key: str, raw: object
) -> None:
    """Whatever a document gives for a text, bytes, integer or boolean field, the reader's
    shortcut for the common shapes ends where its full per-kind check ends: the same value,
    or the same error."""
    info = _FIELDS_BY_KEY[key]
    checking = _Reader(None)
    expected = checking.value(info, raw, key, 0)
    reader = _Reader(None)
    message = reader.message({key: raw}, "", 0)
    assert message is not None
    assert reader.errors == checking.errors
    if expected is not _BAD:
        assert getattr(message, info.name) == expected
        assert type(getattr(message, info.name)) is type(expected)
