"""The wire codec: layout, headers, compression, limits and Steward compatibility."""

from __future__ import annotations

import gzip
import io
import os
from typing import Any

import cbor2
import lz4.frame
import pytest

from steward_otp import codec
from steward_otp.codec import DecodeError, EncodedMessage, decode, encode
from steward_otp.message import FIELD_NAMES, Message

CBOR = {"serial": "cbor", "cmp": "none"}

REQUEST = Message(
    to_node="ship1",
    from_node="central",
    id="central:0190",
    method="REQCliCommand",
    method_args=("bash", "-c", "echo hi"),
    reply_method="REQToFileAppend",
    ack_timeout=5,
    retries=3,
    method_timeout=10,
    directory="cli",
    file_name="out.txt",
)


def steward_array(**overrides: Any) -> list[Any]:
    """A message as Go Steward's CBOR encoder writes it: 23 fields, nil lists as null."""
    fields: list[Any] = [
        "ship1", None, 42, b"payload", "REQCliCommand", ["ls"], None, "", None, False,
        "central", 5, 0, False, 3, 0, 0, 10, 0, "dir", "file", None, None,
    ]  # fmt: skip
    names = list(FIELD_NAMES[:23])
    for name, value in overrides.items():
        fields[names.index(name)] = value
    return fields


def test_small_message_is_an_uncompressed_cbor_array_in_stewards_order() -> None:
    encoded = encode(REQUEST)
    assert isinstance(encoded, EncodedMessage)
    assert encoded.headers == {"serial": "cbor", "cmp": "none", "fromNode": "central"}
    values = cbor2.loads(encoded.payload)
    assert len(values) == 23
    assert values[0] == "ship1"
    assert values[2] == "central:0190"
    assert values[4] == "REQCliCommand"
    assert values[5] == ["bash", "-c", "echo hi"]
    assert values[11] == 5  # ACKTimeout
    assert values[17] == 10  # methodTimeout
    assert values[1] is None and values[21] is None and values[22] is None
    assert decode(*encoded) == REQUEST


def test_relay_fields_extend_the_array() -> None:
    message = Message(method="REQPing", relay_via_node="central", relay_original_method="REQX")
    values = cbor2.loads(encode(message).payload)
    assert len(values) == 27
    assert values[23:] == ["central", "", "", "REQX"]
    assert decode(*encode(message)) == message


def test_previous_message_is_a_nested_array() -> None:
    reply = Message(method="REQToFile", is_reply=True, previous_message=REQUEST)
    values = cbor2.loads(encode(reply).payload)
    assert values[21][4] == "REQCliCommand"
    assert decode(*encode(reply)) == reply


def test_empty_from_node_sends_no_header() -> None:
    assert "fromNode" not in encode(Message(method="REQPing")).headers
    assert "fromNode" not in encode(Message(from_node="a\r\nb: c")).headers


def test_large_compressible_messages_are_lz4_compressed() -> None:
    message = Message(method="REQToFile", data=b"line of output\n" * 200)
    encoded = encode(message)
    assert encoded.headers["cmp"] == "lz4"
    assert len(encoded.payload) < 1000
    assert lz4.frame.decompress(encoded.payload)
    assert decode(*encoded) == message


def test_threshold_is_respected() -> None:
    message = Message(data=b"a" * 600)
    assert encode(message).headers["cmp"] == "none"
    assert encode(message, compress_threshold=100).headers["cmp"] == "lz4"
    big = Message(data=b"a" * 5000)
    assert encode(big, compress_threshold=None).headers["cmp"] == "none"


def test_incompressible_payloads_are_sent_as_is() -> None:
    message = Message(data=os.urandom(5000))
    encoded = encode(message)
    assert encoded.headers["cmp"] == "none"
    assert decode(*encoded) == message


def test_lone_surrogates_cannot_be_encoded() -> None:
    with pytest.raises(ValueError, match="not valid Unicode"):
        encode(Message(directory="\ud800"))


# --- reading Steward's CBOR form


def test_go_steward_cbor_arrays_are_read() -> None:
    message = decode(cbor2.dumps(steward_array()), CBOR)
    assert message.id == ""  # Steward's ring-buffer number is not a message id
    assert message.to_nodes == () and message.arg_signature == b""
    assert message.method_args == ("ls",)
    assert message.data == b"payload"
    assert message.retries == 3


def test_go_style_nested_previous_message() -> None:
    payload = cbor2.dumps(steward_array(previous_message=steward_array(method="REQPing")))
    message = decode(payload, CBOR)
    assert message.previous_message is not None
    assert message.previous_message.method == "REQPing"


def test_extra_trailing_fields_from_newer_versions_are_ignored() -> None:
    values = [*cbor2.loads(encode(REQUEST).payload), "", "", "", "", None, "future", 1]
    assert decode(cbor2.dumps(values), CBOR) == REQUEST


# --- headers


@pytest.mark.parametrize(
    ("headers", "text"),
    [
        (None, "gob"),
        ({}, "gob"),
        ({"serial": "gob"}, "gob-encoded"),
        ({"serial": ""}, "gob"),
        ({"serial": "json"}, "unknown serialization 'json'"),
        ({"Serial": "cbor"}, "gob"),
    ],
)
def test_serialisations_other_than_cbor_are_refused(
    headers: dict[str, str] | None, text: str
) -> None:
    with pytest.raises(DecodeError, match=text):
        decode(encode(REQUEST).payload, headers)


def test_gzip_is_read() -> None:
    payload = gzip.compress(encode(REQUEST, compress_threshold=None).payload)
    assert decode(payload, {"serial": "cbor", "cmp": "g"}) == REQUEST


def test_multi_member_gzip_is_read() -> None:
    raw = encode(REQUEST, compress_threshold=None).payload
    payload = gzip.compress(raw[:10]) + gzip.compress(raw[10:])
    assert decode(payload, {"serial": "cbor", "cmp": "g"}) == REQUEST


@pytest.mark.parametrize("cmp", [None, "none", "", "snappy"])
def test_missing_none_or_unknown_compression_means_uncompressed(cmp: str | None) -> None:
    headers = {"serial": "cbor"} if cmp is None else {"serial": "cbor", "cmp": cmp}
    assert decode(encode(REQUEST).payload, headers) == REQUEST


def test_zstd_without_a_library_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec, "_zstd", None)
    with pytest.raises(DecodeError, match="zstd not supported"):
        decode(b"\x28\xb5\x2f\xfd", {"serial": "cbor", "cmp": "z"})


class _FakeZstd:
    """Stands in for the optional ``zstandard`` module: 'compression' is identity."""

    class ZstdDecompressor:
        def stream_reader(self, data: bytes) -> io.BytesIO:
            return io.BytesIO(data)


def test_zstd_with_a_library_is_read_within_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec, "_zstd", _FakeZstd)
    raw = encode(REQUEST, compress_threshold=None).payload
    assert decode(raw, {"serial": "cbor", "cmp": "z"}) == REQUEST
    with pytest.raises(DecodeError, match="exceeds the limit"):
        decode(raw, {"serial": "cbor", "cmp": "z"}, max_size=10)


# --- limits and broken input


def test_lz4_bomb_is_refused_without_inflating_it() -> None:
    bomb = lz4.frame.compress(b"\x00" * (8 * 1024 * 1024))
    with pytest.raises(DecodeError, match="exceeds the limit of 1048576 bytes"):
        decode(bomb, {"serial": "cbor", "cmp": "lz4"}, max_size=1024 * 1024)


def test_lz4_bomb_without_declared_size_is_refused() -> None:
    bomb = lz4.frame.compress(b"\x00" * (8 * 1024 * 1024), store_size=False)
    with pytest.raises(DecodeError, match="exceeds the limit"):
        decode(bomb, {"serial": "cbor", "cmp": "lz4"}, max_size=3 * 1024 * 1024)


def test_lz4_frames_without_declared_size_are_read_in_steps() -> None:
    message = Message(method="REQToFile", data=b"0123456789" * 300_000)
    raw = encode(message, compress_threshold=None).payload
    payload = lz4.frame.compress(raw, store_size=False)
    assert decode(payload, {"serial": "cbor", "cmp": "lz4"}) == message


def test_gzip_bomb_is_refused_without_inflating_it() -> None:
    bomb = gzip.compress(b"\x00" * (8 * 1024 * 1024))
    with pytest.raises(DecodeError, match="exceeds the limit"):
        decode(bomb, {"serial": "cbor", "cmp": "g"}, max_size=1024 * 1024)


def test_multi_member_gzip_counts_towards_the_limit() -> None:
    member = gzip.compress(b"\x00" * 600_000)
    with pytest.raises(DecodeError, match="exceeds the limit"):
        decode(member * 2, {"serial": "cbor", "cmp": "g"}, max_size=1024 * 1024)


def test_uncompressed_payload_above_the_limit_is_refused() -> None:
    encoded = encode(Message(data=b"x" * 5000), compress_threshold=None)
    with pytest.raises(DecodeError, match="larger than the limit"):
        decode(*encoded, max_size=1000)


def test_default_limit_is_64_mib() -> None:
    assert codec.DEFAULT_MAX_DECODED_SIZE == 64 * 1024 * 1024


@pytest.mark.parametrize(
    ("payload", "headers", "text"),
    [
        (b"", CBOR, "cannot decode"),
        (b"\xff\xff", CBOR, "cannot decode"),
        (cbor2.dumps({"toNode": "a"}), CBOR, "must be a CBOR array"),
        (cbor2.dumps(["a"] * 5), CBOR, "has 5 elements; at least 23"),
        (cbor2.dumps(steward_array(to_node=5)), CBOR, "to_node must be a str"),
        (cbor2.dumps(steward_array(ack_timeout=2**64)), CBOR, "outside the signed 64-bit"),
        (cbor2.dumps(steward_array(method_args=[1])), CBOR, "method_args"),
        (cbor2.dumps(steward_array(previous_message="x")), CBOR, "must be a CBOR array"),
        (lz4.frame.compress(b"x" * 100)[:-6], {"serial": "cbor", "cmp": "lz4"}, "lz4"),
        (lz4.frame.compress(b"x") + b"junk", {"serial": "cbor", "cmp": "lz4"}, "after the lz4"),
        (gzip.compress(b"x" * 100)[:-6], {"serial": "cbor", "cmp": "g"}, "truncated"),
        (b"not gzip", {"serial": "cbor", "cmp": "g"}, "cannot decode"),
        (b"not lz4", {"serial": "cbor", "cmp": "lz4"}, "cannot decode"),
    ],
)
def test_broken_payloads_raise_decode_error(
    payload: bytes, headers: dict[str, str], text: str
) -> None:
    with pytest.raises(DecodeError, match=text) as info:
        decode(payload, headers)
    assert isinstance(info.value, ValueError)


def test_self_referencing_cbor_is_refused() -> None:
    values: list[Any] = steward_array()
    values[21] = values  # CBOR value sharing can express cycles
    payload = cbor2.dumps(values, value_sharing=True)
    with pytest.raises(DecodeError, match="nest deeper"):
        decode(payload, CBOR)


def test_deeply_nested_cbor_is_refused() -> None:
    payload = b"\x81" * 100_000 + b"\x00"
    with pytest.raises(DecodeError):
        decode(payload, CBOR)


def test_memoryview_and_bytearray_payloads() -> None:
    raw = encode(REQUEST).payload
    assert decode(memoryview(raw), CBOR) == REQUEST
    assert decode(bytearray(raw), CBOR) == REQUEST
