"""Telling the error kernel, sparingly, that writes meet a full disk.

A flood of refused writes (redeliveries, retries) must cost a few error-log lines, never one
per message or per batch: :class:`DiskFullNotice` says so when an episode starts, at most once
per interval while it lasts, and once when it is over.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from steward_otp.handlers.base import Level
from steward_otp.store import StoreFull

__all__ = ["DISK_FULL_REPORT_INTERVAL", "DiskFullNotice"]

DISK_FULL_REPORT_INTERVAL = 60.0
"""While the disk stays full, seconds between two lines of one Subscriber saying so."""


class DiskFullNotice:
    """Tells the error kernel, sparingly, that one Subscriber's writes meet a full disk.

    The first refusal of an episode is reported at once; while the disk stays full at most
    one line per ``interval`` seconds (timed by ``clock``) follows, counting the messages
    met since the last line; the first write that succeeds afterwards reports one line
    saying the episode is over. A flood of redeliveries thus costs a few lines, never one
    per message or per batch. Never blocks.
    """

    def __init__(
        self,
        subject: str,
        method: str,
        report: Callable[[Level, str], None],
        *,
        interval: float = DISK_FULL_REPORT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.subject = subject
        self.method = method
        self.interval = interval
        self._report = report
        self._clock = clock
        self.refused = 0
        """Messages whose store write met a full disk since start (each attempt counts)."""
        self._since: float | None = None
        self._counted_from = 0.0
        self._unreported = 0
        self._in_episode = 0
        self._next_line = -math.inf

    @property
    def full(self) -> bool:
        """Whether the last write of this Subscriber met a full disk."""
        return self._since is not None

    def refused_messages(self, count: int, what: str, error: StoreFull) -> None:
        """``count`` messages were ``what`` because of ``error``; say so if a line is due."""
        now = self._clock()
        self.refused += count
        self._unreported += count
        self._in_episode += count
        if self._since is None:
            self._since = self._counted_from = now
        if now < self._next_line:
            return
        tally = ""
        if self._unreported:
            tally = f"{self._unreported} message(s) "
            if now > self._counted_from:
                tally += f"in the last {round(now - self._counted_from)} s "
        self._report(
            "error",
            f"error: {self.subject}: {self.method}: {tally}{what}: {error}; said again at most "
            f"every {round(self.interval)} s while it lasts",
        )
        self._unreported = 0
        self._counted_from = now
        self._next_line = now + self.interval

    def cleared(self) -> None:
        """A write succeeded: end the episode (one line) if there was one."""
        if self._since is None:
            return
        lasted = round(self._clock() - self._since)
        self._report(
            "info",
            f"info: {self.subject}: the store accepts writes for {self.method} again after "
            f"{lasted} s of a full disk ({self._in_episode} message write(s) refused meanwhile)",
        )
        self._since = None
        self._unreported = self._in_episode = 0
        self._next_line = -math.inf
