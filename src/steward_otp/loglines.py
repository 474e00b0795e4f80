"""Log-line hygiene: what one report may put into a log file, and how often.

* :func:`clean_line` makes any text one safe log line: control characters (NUL, ESC, BEL,
  newlines, DEL, the C1 range...) become visible escapes (``\\x00``, ``\\x1b``, ``\\n``),
  so a report can neither drive a terminal nor forge a second line; lone surrogates (the
  bytes of a file name that is not UTF-8, as Python reads it) become ``\\xff`` too, so the
  line can always be encoded; text longer than :data:`MAX_LINE_CHARS` is cut with a marker
  saying how long it was.
* :class:`RepeatLimiter` lets at most ``burst`` *similar* lines (see :func:`similarity_key`)
  through per key and ``window``, and at most ``total_burst`` lines of all keys; the
  others are counted, and :meth:`RepeatLimiter.summaries` turns each count into one line
  (``N similar lines suppressed in the last 10 s, like: ...``) once its window has passed.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from typing import Final

import attrs

__all__ = [
    "MAX_LINE_CHARS",
    "RepeatLimiter",
    "Suppressed",
    "clean_line",
    "similarity_key",
]

MAX_LINE_CHARS: Final = 4096
"""Longest line (in characters) a report puts into a log, marker excluded."""

_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_NAMED: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_VARIABLE: Final = re.compile(r"[0-9a-fA-F]{8,}|\d+")
_KEY_CHARS: Final = 120


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte a file name (or other OS text) had that is not UTF-8
        return f"\\x{code - 0xDC00:02x}"
    if code >= 0xD800:  # any other lone surrogate: no character at all
        return f"\\u{code:04x}"
    return _NAMED.get(char) or f"\\x{code:02x}"


def clean_line(text: str, limit: int = MAX_LINE_CHARS) -> str:
    """``text`` as one printable log line that always encodes as UTF-8: control characters
    and lone surrogates escaped, cut at ``limit`` characters with ``… [cut: N characters in
    all]`` when longer."""
    if len(text) > limit:
        text = f"{text[:limit]}… [cut: {len(text)} characters in all]"
    return _CONTROL.sub(_escape, text)


def similarity_key(text: str) -> str:
    """What makes two lines "similar": the same text up to numbers and ids (runs of digits,
    and of 8 or more hex digits, are masked), judged on the first 120 characters."""
    return _VARIABLE.sub("#", text[: _KEY_CHARS * 2])[:_KEY_CHARS]


@attrs.frozen
class Suppressed:
    """Lines held back for one key during one window."""

    key: Hashable
    count: int
    sample: str
    """The first line held back, for the summary."""


@attrs.define
class _Window:
    start: float
    passed: int = 0
    held: int = 0
    sample: str = ""


class RepeatLimiter:
    """Per-key and overall rate limit for log lines; see the module docstring.

    Time comes from the caller (any monotonic clock in seconds). At most ``max_keys`` keys
    are tracked per window; lines of further keys share one key (``None``).
    """

    def __init__(
        self,
        *,
        burst: int = 20,
        total_burst: int = 200,
        window: float = 10.0,
        max_keys: int = 1000,
    ) -> None:
        self.burst = burst
        self.total_burst = total_burst
        self.window = window
        self.max_keys = max_keys
        self._windows: dict[Hashable, _Window] = {}
        self._total = _Window(-float("inf"))
        self.suppressed = 0
        """Lines held back so far, in all."""

    def allow(self, key: Hashable, line: str, now: float) -> bool:
        """Whether ``line`` (of ``key``) may go out now; when not, it is counted."""
        if now - self._total.start >= self.window:
            self._total = _Window(now)
        window = self._windows.get(key)
        if window is None:
            if len(self._windows) >= self.max_keys:
                key = None
                window = self._windows.get(key)
            if window is None:
                window = self._windows[key] = _Window(now)
        if window.passed < self.burst and self._total.passed < self.total_burst:
            window.passed += 1
            self._total.passed += 1
            return True
        if not window.held:
            window.sample = line
        window.held += 1
        self.suppressed += 1
        return False

    def summaries(self, now: float) -> list[Suppressed]:
        """The keys whose window has passed with lines held back (each reported once), and
        forget every window that has passed."""
        # Windows are kept in the order they started (the clock is monotonic, and a key's
        # next window starts after its last is forgotten): the passed ones come first.
        passed: list[tuple[Hashable, _Window]] = []
        for key, window in self._windows.items():
            if now - window.start < self.window:
                break
            passed.append((key, window))
        due: list[Suppressed] = []
        for key, window in passed:
            del self._windows[key]
            if window.held:
                due.append(Suppressed(key, window.held, window.sample))
        return due

    def summary_text(self, item: Suppressed, prefix: str = "") -> str:
        """``item`` as one line: ``N similar lines suppressed in the last W s, like: ...``."""
        like = clean_line(item.sample, 200)
        kind = "similar " if item.key is not None else ""
        return (
            f"{prefix}{item.count} {kind}lines suppressed in the last {self.window:g} s "
            f"(at most {self.burst} similar and {self.total_burst} in all pass), like: {like}"
        )
