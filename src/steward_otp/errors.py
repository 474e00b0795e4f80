"""The error kernel: every error and info event is logged locally and sent to the central log.

Any part of a node calls :meth:`ErrorKernel.report` (synchronous, never blocks). The kernel
process turns each event into Steward's line ``TS, node: <node>, <text>`` and sends it as a
``REQErrorLog`` message to the virtual node ``errorCentral``, whose subscriber (on the central
error logger) appends it to ``<data>/errorLog/errorCentral/error.log``.

Loops are impossible by construction: the kernel never reports the failure of a
``REQErrorLog`` delivery. When events arrive faster than they can be queued, the surplus is
counted and logged locally (``dropped``), never allowed to block the reporter.
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
    nodes configured without a central log).
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
        self.info: dict[str, object] = {"reported": 0, "dropped": 0}

    def report(self, level: Level, text: str) -> None:
        """Log ``text`` at ``level`` here and queue it for the central error log."""
        log.log(_LOG_LEVELS.get(level, logging.INFO), "%s", text)
        self.reported += 1
        self.reported_by_level[level] += 1
        self.info["reported"] = self.reported
        if not self.forward:
            return
        try:
            self._send.send_nowait(ErrorEvent(level, text, time.time()))
        except trio.WouldBlock:
            self.dropped += 1
            self.info["dropped"] = self.dropped

    async def run(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """Forward queued events in batches until cancelled.

        Nothing is lost across restarts of this process: the queue outlives them, and a
        batch taken off the queue but not yet durable in the outbox is submitted again by the
        next incarnation.
        """
        task_status.started()
        while True:
            if not self._unsent:
                events = [await self._receive.receive()]
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
