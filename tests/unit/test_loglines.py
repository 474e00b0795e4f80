"""Error-log hygiene: clean lines, bounded floods, summaries (kernel and central log)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import trio
from hypothesis import given
from hypothesis import strategies as st

from steward_otp.error_kernel import ErrorKernel
from steward_otp.handlers.output import MAX_LINES_PER_REPORT, central_log_lines
from steward_otp.loglines import (
    MAX_LINE_CHARS,
    RepeatLimiter,
    Suppressed,
    clean_line,
    similarity_key,
)
from steward_otp.message import Message


def test_control_characters_are_escaped() -> None:
    assert clean_line("a\x00b\x1b[2J\x07c\nforged line\r\x7f\x9b") == (
        "a\\x00b\\x1b[2J\\x07c\\nforged line\\r\\x7f\\x9b"
    )
    assert clean_line("plain text, ünïcode € and spaces") == "plain text, ünïcode € and spaces"


def test_text_that_cannot_be_encoded_is_escaped_so_the_line_always_encodes() -> None:
    # os.scandir gives the byte 0xff of a name that is not UTF-8 as the surrogate U+DCFF.
    line = clean_line("file x\udcff\udc80.json and a stray \ud800")
    assert line == "file x\\xff\\x80.json and a stray \\ud800"
    assert line.encode("utf-8").decode("utf-8") == line


def test_huge_values_are_cut_with_a_marker() -> None:
    line = clean_line("x" * 4_000_000)
    assert line.startswith("x" * MAX_LINE_CHARS)
    assert line.endswith("… [cut: 4000000 characters in all]")
    assert len(line) < MAX_LINE_CHARS + 50


def test_lines_differing_only_in_numbers_and_ids_are_similar() -> None:
    a = similarity_key("error: message 12 from ship1:0191a2b3c4d5e6f7 refused at offset 99")
    b = similarity_key("error: message 7 from ship1:ffffffffffff0000 refused at offset 3")
    assert a == b
    assert a != similarity_key("error: something else entirely")


def test_the_limiter_lets_a_burst_through_then_counts_and_summarises() -> None:
    limiter = RepeatLimiter(burst=3, total_burst=100, window=10)
    passed = [limiter.allow("k", f"line {i}", now=1.0) for i in range(10)]
    assert passed == [True] * 3 + [False] * 7
    assert limiter.summaries(now=5.0) == []  # the window has not passed yet
    [summary] = limiter.summaries(now=11.0)
    assert (summary.count, summary.sample) == (7, "line 3")
    text = limiter.summary_text(summary)
    assert text.startswith("7 similar lines suppressed in the last 10 s")
    assert text.endswith("like: line 3")
    assert limiter.allow("k", "again", now=12.0)  # a new window
    assert limiter.summaries(now=30.0) == []  # nothing held back: nothing to say


def test_the_limiter_bounds_many_different_lines_too() -> None:
    limiter = RepeatLimiter(burst=5, total_burst=50, window=10)
    passed = sum(limiter.allow(f"kind {i}", f"line {i}", now=0.0) for i in range(5000))
    assert passed == 50
    assert sum(s.count for s in limiter.summaries(now=10.0)) == 4950


class EveryWindowLooked(RepeatLimiter):
    """The limiter with summaries that look at every window, not only the oldest ones."""

    def summaries(self, now: float) -> list[Suppressed]:
        due: list[Suppressed] = []
        for key, window in list(self._windows.items()):
            if now - window.start < self.window:
                continue
            del self._windows[key]
            if window.held:
                due.append(Suppressed(key, window.held, window.sample))
        return due


@given(
    st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=8),  # time since the step before
            st.one_of(st.none(), st.integers(min_value=0, max_value=6)),  # a line's kind
        ),
        max_size=200,
    )
)
def test_summaries_taken_from_the_oldest_windows_are_those_of_every_passed_window(
    steps: list[tuple[float, int | None]],
) -> None:
    limiter = RepeatLimiter(burst=2, total_burst=6, window=5, max_keys=4)
    reference = EveryWindowLooked(burst=2, total_burst=6, window=5, max_keys=4)
    now = 0.0
    for elapsed, kind in steps:
        now += elapsed
        if kind is None:  # a summary round
            assert limiter.summaries(now) == reference.summaries(now)
        else:
            line = f"line of kind {kind}"
            assert limiter.allow(kind, line, now) == reference.allow(kind, line, now)
    assert limiter.summaries(now + 5) == reference.summaries(now + 5)


async def _drained(kernel: ErrorKernel) -> list[Message]:
    sent: list[Message] = []

    async def submit(messages: Sequence[Message]) -> list[str]:
        sent.extend(messages)
        return [m.id for m in messages]

    kernel._submit = submit
    async with trio.open_nursery() as nursery:
        nursery.start_soon(kernel.run)
        await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    return sent


async def test_the_kernel_cleans_and_bounds_a_flood_and_summarises_it() -> None:
    now = [100.0]
    kernel = ErrorKernel("ship1", None, clock=lambda: now[0])  # type: ignore[arg-type]
    for i in range(5000):
        kernel.report("error", f"error: decoding failed, subject: x: garbage {i}\x00\x1b[2J\x07")
    kernel.report("error", "error: " + "y" * 100_000)
    first = await _drained(kernel)
    assert kernel.reported == 5001
    assert len(first) == 21  # 20 similar lines, and the one of another kind
    lines = [m.data.decode() for m in first]
    assert all("\x00" not in line and "\x1b" not in line and "\x07" not in line for line in lines)
    assert "garbage 0\\x00\\x1b[2J\\x07" in lines[0]
    assert len(lines[-1]) < MAX_LINE_CHARS + 200 and "[cut: 100007 characters in all]" in lines[-1]
    assert kernel.suppressed == 4980

    now[0] += 11  # the window has passed: the next report (or the kernel's wake-up) summarises
    kernel.report("info", "info: something new")
    later = [m.data.decode() for m in await _drained(kernel)]
    assert any("4980 similar lines suppressed in the last 10 s" in line for line in later)
    assert any("something new" in line for line in later)


def _report(sender: str, data: str) -> Message:
    return Message(
        to_node="errorCentral", from_node=sender, method="REQErrorLog", data=data.encode()
    )


def test_the_central_log_cleans_cuts_and_bounds_each_sender(tmp_path: Path) -> None:
    services: object = object.__new__(type("Services", (), {}))
    forged = "Mon Jan  1 00:00:00 2026, node: evil, a\x1b[31mred\x00\n" * 50
    written = central_log_lines(services, _report("evil", forged), now=0.0).decode()
    lines = written.splitlines()
    assert len(lines) == MAX_LINES_PER_REPORT + 1
    assert lines[-1] == "… [cut: 40 more lines in this report]"
    assert "\\x1b[31mred\\x00" in lines[0] and "\x1b" not in written and "\x00" not in written

    for _ in range(100):
        central_log_lines(services, _report("evil", "error: same thing\n"), now=1.0)
    # Another sender is not held back by evil's flood.
    assert central_log_lines(services, _report("good", "error: same thing\n"), now=1.0)
    assert central_log_lines(services, _report("evil", "error: same thing\n"), now=2.0) == b""
    later = central_log_lines(services, _report("evil", "error: same thing\n"), now=20.0)
    first, second = later.decode().splitlines()
    assert "node: evil, warning: errorCentral: 81 similar lines suppressed" in first
    assert second == "error: same thing"
