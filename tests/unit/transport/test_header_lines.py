"""The bridge's client reads a header block exactly as nats-py's own parser does."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from nats.aio.client import Client

from steward_otp.bridge.hardened_client import HardenedClient

_PIECES = st.sampled_from(
    [b"serial", b"cmp", b"sotp", b"fromNode", b"Nats-Msg-Id", b"a b", b"\xff", b"\x1c", b"\x0b"]
)
_LINES = st.builds(
    lambda name, sep, value: name + sep + value,
    st.one_of(_PIECES, st.binary(max_size=6)),
    st.sampled_from([b": ", b":", b":\t", b" : ", b""]),
    st.one_of(st.binary(max_size=8), st.sampled_from([b"cbor", b" 2 ", b"\xc3\xa9", b"\xff"])),
)


@given(st.lists(_LINES, max_size=6), st.booleans())
def test_header_lines_parse_as_nats_py_parses_them(lines: list[bytes], blank_end: bool) -> None:
    raw = b"\r\n".join(lines) + (b"\r\n\r\n" if blank_end else b"")
    assert HardenedClient._parse_header_lines(raw) == Client._parse_header_lines(raw)
