"""The line splitter behind REQTailFile: bytes in, whole lines out."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from steward_otp.handlers.tail import LineSplitter


def test_lines_keep_their_newline_and_partial_lines_wait() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"one\ntw") == [b"one\n"]
    assert splitter.feed(b"o\nthree") == [b"two\n"]
    assert splitter.flush() == b"three\n"
    assert splitter.flush() is None


def test_an_over_long_line_is_cut_into_lines() -> None:
    splitter = LineSplitter(max_line=4)
    assert splitter.feed(b"abcdefghij") == [b"abcd\n", b"efgh\n"]
    assert splitter.flush() == b"ij\n"


@given(st.lists(st.binary(max_size=30), max_size=20))
def test_any_chunking_gives_back_the_same_bytes(chunks: list[bytes]) -> None:
    splitter = LineSplitter()
    out = [line for chunk in chunks for line in splitter.feed(chunk)]
    rest = splitter.flush()
    text = b"".join(chunks)
    expected = text if text.endswith(b"\n") or not text else text + b"\n"
    assert b"".join(out) + (rest or b"") == expected
    assert all(line.endswith(b"\n") and line.count(b"\n") == 1 for line in out)
