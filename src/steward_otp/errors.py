"""The error kernel: every error and info event is logged locally and sent to the central log.

Any part of a node calls :meth:`ErrorKernel.report` (synchronous, never blocks). The kernel
process turns each event into Steward's line ``TS, node: <node>, <text>`` and sends it as a
``REQErrorLog`` message to the virtual node ``errorCentral``, whose subscriber (on the central
error logger) appends it to ``<data>/errorLog/errorCentral/error.log``.

Loops are impossible by construction: the kernel never reports the failure of a
``REQErrorLog`` delivery. When events arrive faster than they can be queued, the surplus is
counted and logged locally (``dropped``), never allowed to block the reporter.

Hygiene (:mod:`steward_otp.loglines`): every text becomes one printable line (control
characters escaped, cut at :data:`~steward_otp.loglines.MAX_LINE_CHARS` characters with a
marker), and a flood is summarised: at most ``burst`` similar lines (same text up to numbers
and ids) and ``total_burst`` lines in all per ``window`` seconds go out, locally and to the
central log; the rest are counted (``suppressed``) and, once the window has passed, one line
per kind says ``N similar lines suppressed in the last 10 s, like: ...``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs
import trio

from steward_otp.handlers.base import Level
from steward_otp.loglines import RepeatLimiter, clean_line, similarity_key
from steward_otp.message import Message, ensure_id
from steward_otp.timestamps import steward_timestamp

log = logging.getLogger(__name__)

ERROR_CENTRAL_NODE = "errorCentral"
ERROR_LOG_METHOD = "REQErrorLog"
ERROR_LOG_DIRECTORY = "errorLog"
ERROR_LOG_FILE = "error.log"

_LOG_LEVELS = {
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}


@attrs.frozen
class ErrorEvent:
    """One reported event."""

    level: Level
    text: str
    at: float


def error_log_message(node: str, event: ErrorEvent, *, ack_timeout: int, retries: int) -> Message:
    """The ``REQErrorLog`` message carrying ``event`` to the central error log."""
    line = f"{steward_timestamp(event.at)}, node: {node}, {event.text}\n"
    return Message(
        to_node=ERROR_CENTRAL_NODE,
        from_node=node,
        method=ERROR_LOG_METHOD,
        directory=ERROR_LOG_DIRECTORY,
        file_name=ERROR_LOG_FILE,
        data=line.encode(),
        ack_timeout=ack_timeout,
        retries=retries,
        reply_method="REQNone",
    )


class ErrorKernel:
    """Supervised process forwarding reported events to the central error log.

    ``submit`` is the node's outbox entry point; ``forward=False`` keeps events local (for
    nodes configured without a central log). ``limiter`` bounds repeated lines (see the
    module docstring); its defaults are 20 similar and 200 lines in all per 10 s, timed by
    ``clock`` (seconds).
    """

    def __init__(
        self,
        node_name: str,
        submit: Callable[[Sequence[Message]], Awaitable[Any]],
        *,
        ack_timeout: int = 60,
        retries: int = 10,
        capacity: int = 10_000,
        forward: bool = True,
        limiter: RepeatLimiter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node_name = node_name
        self._submit = submit
        self.ack_timeout = ack_timeout
        self.retries = retries
        self.forward = forward
        self._send, self._receive = trio.open_memory_channel[ErrorEvent](capacity)
        self._unsent: list[Message] = []
        self.reported = 0
        self.reported_by_level: Counter[str] = Counter()
        self.dropped = 0
        self.limiter = limiter or RepeatLimiter()
        self._clock = clock
        self._next_summary = 0.0
        self.info: dict[str, object] = {"reported": 0, "dropped": 0, "suppressed": 0}

    @property
    def suppressed(self) -> int:
        """Reports held back by the rate limit so far (counted in summary lines)."""
        return self.limiter.suppressed

    def report(self, level: Level, text: str) -> None:
        """Log ``text`` at ``level`` here and queue it for the central error log, as one
        clean line, unless the rate limit holds it back (then it is counted and summarised).
        Never blocks."""
        self.reported += 1
        self.reported_by_level[level] += 1
        self.info["reported"] = self.reported
        line = clean_line(text)
        now = self._clock()
        if self.limiter.allow(similarity_key(line), line, now):
            self._emit(level, line)
        else:
            self.info["suppressed"] = self.limiter.suppressed
        if now >= self._next_summary:
            self._summarise(now)

    def _emit(self, level: Level, line: str) -> None:
        log.log(_LOG_LEVELS.get(level, logging.INFO), "%s", line)
        if not self.forward:
            return
        try:
            self._send.send_nowait(ErrorEvent(level, line, time.time()))
        except trio.WouldBlock:
            self.dropped += 1
            self.info["dropped"] = self.dropped

    def _summarise(self, now: float) -> None:
        """Emit one line per kind of report held back in a window that has passed."""
        self._next_summary = now + 1.0
        for item in self.limiter.summaries(now):
            self._emit("warning", self.limiter.summary_text(item, "warning: error kernel: "))

    async def run(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """Forward queued events in batches until cancelled.

        Nothing is lost across restarts of this process: the queue outlives them, and a
        batch taken off the queue but not yet durable in the outbox is submitted again by the
        next incarnation.
        """
        task_status.started()
        while True:
            if not self._unsent:
                # Woken at least once a window, so held-back lines are summarised in time.
                with trio.move_on_after(self.limiter.window) as idle:
                    first = await self._receive.receive()
                if idle.cancelled_caught:
                    self._summarise(self._clock())
                    continue
                events = [first]
                while len(events) < 500:
                    try:
                        events.append(self._receive.receive_nowait())
                    except trio.WouldBlock:
                        break
                # Ids are fixed now, so submitting the batch again after an interruption
                # cannot store an event twice (the outbox is idempotent on ids).
                self._unsent = [
                    ensure_id(
                        error_log_message(
                            self.node_name, e, ack_timeout=self.ack_timeout, retries=self.retries
                        )
                    )
                    for e in events
                ]
            await self._submit(self._unsent)
            self._unsent = []
