"""The bridge's client reads and writes header blocks exactly as nats-py itself does."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from nats import errors
from nats.aio.client import Client

from steward_otp.bridge.hardened_client import HardenedClient, RefusedFrames

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


_NAMES = st.one_of(
    st.sampled_from(["serial", "cmp", "sotp", "fromNode", "Nats-Msg-Id", " padded ", ""]),
    st.text(alphabet="abcXYZ-_.~ :\t", max_size=5),
)
_VALUES = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=8)


async def written_by(client: Client, headers: dict[str, str]) -> bytes | str:
    """What ``client`` sends for a publish with ``headers``, or the error it raises."""
    sent: list[bytes] = []

    async def capture(command: bytes, priority: bool = False) -> None:
        sent.append(command)

    client._send_command = capture  # type: ignore[method-assign,assignment]
    try:
        await client._send_publish("ship1.REQPing.EventACK", "_INBOX.x", b"data", 4, headers)
    except errors.BadHeaderError as exc:
        return f"BadHeaderError: {exc}"
    return b"".join(sent)


@given(st.dictionaries(_NAMES, _VALUES, max_size=5))
async def test_header_blocks_are_written_as_nats_py_writes_them(headers: dict[str, str]) -> None:
    ours = await written_by(HardenedClient(RefusedFrames()), headers)
    assert ours == await written_by(Client(), headers)
