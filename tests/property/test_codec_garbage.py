"""Garbage in never crashes: ``decode`` raises only DecodeError, ``parse_messages`` only
reports MessageErrors."""

from __future__ import annotations

import gzip
import json
from typing import Any

import cbor2
import lz4.frame
from hypothesis import given, settings
from hypothesis import strategies as st

from steward_otp.codec import DecodeError, decode, encode
from steward_otp.message import (
    MESSAGE_FIELDS,
    Message,
    MessageError,
    ParseResult,
    parse_messages,
    validate_message,
)

from .strategies import any_messages

SMALL_LIMIT = 64 * 1024

header_values = st.sampled_from(["cbor", "gob", "", "lz4", "g", "z", "none", "x"]) | st.text(
    max_size=6
)
headers = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {"serial": st.just("cbor"), "cmp": st.sampled_from(["none", "lz4", "g", "z", "?"])}
    ),
    st.dictionaries(
        st.sampled_from(["serial", "cmp", "fromNode"]) | st.text(max_size=5),
        header_values,
        max_size=4,
    ),
)

cbor_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.text(max_size=10),
    st.binary(max_size=10),
)
cbor_values = st.recursive(
    cbor_leaves,
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=40,
)
message_shaped = st.lists(cbor_values, min_size=20, max_size=30)


def _decode_or_decode_error(payload: bytes, hdrs: Any) -> Message | None:
    try:
        return decode(payload, hdrs, max_size=SMALL_LIMIT)
    except DecodeError as exc:
        assert str(exc)
        return None


@given(st.binary(max_size=400), headers)
def test_random_bytes_raise_only_decode_error(payload: bytes, hdrs: Any) -> None:
    _decode_or_decode_error(payload, hdrs)


@given(st.one_of(cbor_values, message_shaped), st.sampled_from(["none", "lz4", "g"]))
def test_random_cbor_values_raise_only_decode_error(value: Any, cmp: str) -> None:
    payload = cbor2.dumps(value)
    if cmp == "lz4":
        payload = lz4.frame.compress(payload)
    elif cmp == "g":
        payload = gzip.compress(payload)
    message = _decode_or_decode_error(payload, {"serial": "cbor", "cmp": cmp})
    assert message is None or isinstance(message, Message)


@given(any_messages(max_depth=1), st.data())
def test_corrupted_encodings_raise_only_decode_error(message: Message, data: st.DataObject) -> None:
    encoded = encode(message)
    payload = bytearray(encoded.payload)
    for _ in range(data.draw(st.integers(1, 4))):
        choice = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if choice == "flip" and payload:
            i = data.draw(st.integers(0, len(payload) - 1))
            payload[i] ^= data.draw(st.integers(1, 255))
        elif choice == "cut":
            del payload[data.draw(st.integers(0, len(payload))) :]
        else:
            i = data.draw(st.integers(0, len(payload)))
            payload[i:i] = data.draw(st.binary(min_size=1, max_size=8))
    _decode_or_decode_error(bytes(payload), encoded.headers)


def _check_result(result: ParseResult) -> None:
    assert isinstance(result, ParseResult)
    for problem in result.errors + result.warnings:
        assert isinstance(problem, MessageError)
        text = str(problem)
        assert "internal error" not in text
        assert "\n" not in text
        text.encode("utf-8")
        json.dumps(problem.to_dict())
    for message in result.messages:
        assert validate_message(message) == []


@given(st.binary(max_size=300))
def test_random_bytes_give_only_message_errors(document: bytes) -> None:
    _check_result(parse_messages(document))


@given(st.text(max_size=300))
def test_random_text_gives_only_message_errors(document: str) -> None:
    _check_result(parse_messages(document))


YAML_PIECES = [
    "- ", "toNode: ", "method: ", "REQPing", "data: ", "methodArgs: ", "!!binary ", "&a ", "*a",
    "[", "]", "{", "}", ", ", ": ", "\n", "  ", "\t", "'", '"', "---\n", "? ", "!!set ",
    "!!python/object:os.system ", "0x1F", "1e5", "~", "yes", ".inf", "<<: *a", "!!int ",
    "previousMessage:", "schedule: ", "0", "-1", "ACKTimeout: ", "%YAML 1.1\n", "|\n", ">-\n",
    "!!timestamp ", "2001-12-14", "\x00", "\ufeff", "#", "=", "!!float ", "!!omap ", "!!str ",
]  # fmt: skip


@given(st.lists(st.sampled_from(YAML_PIECES), max_size=40).map("".join))
def test_yaml_fragments_give_only_message_errors(document: str) -> None:
    _check_result(parse_messages(document))


json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=8),
    st.sampled_from(["REQPing", "REQNone", "ship1", "local", "", "a b", "REQSUBCopySrc.x"]),
)
json_keys = st.sampled_from(
    [f.key for f in MESSAGE_FIELDS] + ["PreviousMessage", "previousmessage", "base64"]
) | st.text(max_size=6)
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(json_keys, inner, max_size=8),
    max_leaves=30,
)
message_like = st.dictionaries(json_keys, json_values, max_size=12)


@settings(max_examples=200)
@given(st.one_of(st.lists(message_like | json_values, max_size=4), message_like, json_values))
def test_message_shaped_json_gives_only_message_errors(document: Any) -> None:
    _check_result(parse_messages(json.dumps(document)))
