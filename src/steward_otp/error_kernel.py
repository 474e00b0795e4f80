"""The error kernel: every error and info event is logged locally and sent to the central log.

Any part of a node calls :meth:`ErrorKernel.report` (synchronous, never blocks). The kernel
process turns each event into Steward's line ``TS, node: <node>, <text>`` and sends it as a
``REQErrorLog`` message to the virtual node ``errorCentral``, whose subscriber (on the central
error logger) appends it to ``<data>/errorLog/errorCentral/error.log``.

Loops are impossible by construction: the kernel never reports the failure of a
``REQErrorLog`` delivery. When events arrive faster than they can be queued, the surplus is
counted and logged locally (``dropped``), never allowed to block the reporter. A full disk
(the outbox refuses the batch with :class:`~steward_otp.store.schema.StoreFull`) does not
stop the kernel: the batch is kept and submitted again every few seconds until it is
stored, events queue up behind it meanwhile, and the local log says so once when it starts
and once when it ends (never through the kernel itself).

Hygiene (:mod:`steward_otp.loglines`): every text becomes one printable line (control
characters escaped, cut at :data:`~steward_otp.loglines.MAX_LINE_CHARS` characters with a
marker), and a flood is summarised: at most ``burst`` similar lines (same text up to numbers
and ids) and ``total_burst`` lines in all per ``window`` seconds go out, locally and to the
central log; the rest are counted (``suppressed``) and, once the window has passed, one line
per kind says ``N similar lines suppressed in the last 10 s, like: ...``.

On the central error logger, :class:`ErrorLogSenders` writes ``REQErrorLog`` lines only
from known nodes (see :class:`KnownNodes`); the lines of other senders are dropped and
counted, and one line per window says so. Without it, garbage published with a new
``fromNode`` each time would get a fresh rate-limit budget per invented name.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs
import trio

from steward_otp.config import Config, is_valid_node_name, node_names_setting
from steward_otp.handlers.base import Handler, HandlerContext, Level
from steward_otp.handlers.output import error_log as _write_error_log
from steward_otp.loglines import RepeatLimiter, clean_line, similarity_key
from steward_otp.logs import STDLIB_LEVELS
from steward_otp.message import Message, ensure_id
from steward_otp.store.schema import StoreFull
from steward_otp.timers import HELLO_DIRECTORY
from steward_otp.timestamps import steward_timestamp

if TYPE_CHECKING:
    from steward_otp.security.service import NodeSecurity

log = logging.getLogger(__name__)

ERROR_CENTRAL_NODE = "errorCentral"
ERROR_LOG_METHOD = "REQErrorLog"
ERROR_LOG_DIRECTORY = "errorLog"
ERROR_LOG_FILE = "error.log"

FULL_RETRY_SECONDS = 2.0
"""Seconds between two attempts to store the pending batch while the disk is full."""


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
        # The kernel cleaned the text; whatever else reaches here must never crash it.
        data=line.encode("utf-8", "backslashreplace"),
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
        self._full_since: float | None = None
        self.info: dict[str, object] = {
            "reported": 0,
            "reported_info": 0,
            "dropped": 0,
            "suppressed": 0,
        }
        """What the tree snapshot shows (and the metrics read): events reported (of every
        level, and of level info), dropped for a full queue and held back by the rate limit."""

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
        self.info["reported_info"] = self.reported_by_level["info"]
        line = clean_line(text)
        now = self._clock()
        if self.limiter.allow(similarity_key(line), line, now):
            self._emit(level, line)
        else:
            self.info["suppressed"] = self.limiter.suppressed
        if now >= self._next_summary:
            self._summarise(now)

    def _emit(self, level: Level, line: str) -> None:
        log.log(STDLIB_LEVELS.get(level, logging.INFO), "%s", line)
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
        next incarnation. A batch refused for a full disk is submitted again every
        :data:`FULL_RETRY_SECONDS` until it is stored (see the module docstring).
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
            if not await self._submit_unsent():
                await trio.sleep(FULL_RETRY_SECONDS)

    async def _submit_unsent(self) -> bool:
        """Submit the pending batch; False (and it stays pending) when the disk is full."""
        try:
            await self._submit(self._unsent)
        except StoreFull as exc:
            if self._full_since is None:
                self._full_since = time.monotonic()
                log.warning(
                    "error kernel: %d event(s) for the central error log wait: %s; "
                    "retrying every %s s",
                    len(self._unsent),
                    exc,
                    FULL_RETRY_SECONDS,
                )
            return False
        if self._full_since is not None:
            log.info(
                "error kernel: events for the central error log are stored again after %d s "
                "of a full disk",
                round(time.monotonic() - self._full_since),
            )
            self._full_since = None
        self._unsent = []
        return True


# --------------------------------------------------------------------------------------------
# Who may write to the central error log


ANY_NODE: Final = "*"
"""In the configured list of known nodes: every node is known."""


class KnownNodes:
    """Whether the central error log knows a node: a callable ``known(node) -> bool``.

    Known are this node and the central node, the ``configured`` names (``"*"``: every
    node), nodes that said hello since start (``hellos``, the node's live record), nodes
    with a hello file from earlier runs (``<hello_dir>/<node>/``), and the nodes for which
    ``trusted(node)`` is true (an allowed or pending key in the trust store). Hello files
    found are remembered; everything else is looked up at each call (all cheap).
    """

    def __init__(
        self,
        *,
        own: Iterable[str],
        configured: Iterable[str] = (),
        hellos: Mapping[str, object],
        hello_dir: Path | None = None,
        trusted: Callable[[str], bool] = lambda _node: False,
    ) -> None:
        self._fixed = frozenset(own) | frozenset(configured)
        self._any = ANY_NODE in self._fixed
        self._hellos = hellos
        self._hello_dir = hello_dir
        self._trusted = trusted
        self._seen: set[str] = set()

    def __call__(self, node: str) -> bool:
        if self._any or node in self._fixed or node in self._hellos or node in self._seen:
            return True
        if self._trusted(node):
            return True
        if (
            self._hello_dir is not None
            and is_valid_node_name(node)
            and (self._hello_dir / node).is_dir()
        ):
            self._seen.add(node)
            return True
        return False


class ErrorLogSenders:
    """The central error log's door: lines from known nodes go in, the others are counted.

    ``known`` decides (see :class:`KnownNodes`). The first line dropped is reported at once
    through ``warn``; after that at most one line per ``window`` seconds (timed by
    ``clock``) says how many were dropped since, from how many nodes, naming a few.
    """

    SAMPLE_NAMES: Final = 5

    def __init__(
        self,
        known: Callable[[str], bool],
        warn: Callable[[str], None],
        *,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._known = known
        self._warn = warn
        self.window = window
        self._clock = clock
        self.dropped = 0
        """REQErrorLog messages dropped since start."""
        self._pending = 0
        self._pending_senders: dict[str, None] = {}
        self._next_line = -float("inf")
        self._last_line: float | None = None

    def admit(self, sender: str) -> bool:
        """True when ``sender``'s lines may be written; otherwise count the drop (and say
        so, at most once a window)."""
        if self._known(sender):
            return True
        self.dropped += 1
        self._pending += 1
        if len(self._pending_senders) < 1000:
            self._pending_senders.setdefault(sender)
        now = self._clock()
        if now >= self._next_line:
            self._warn(self._line(now))
            self._pending = 0
            self._pending_senders.clear()
            self._last_line = now
            self._next_line = now + self.window
        return False

    def _line(self, now: float) -> str:
        senders = list(self._pending_senders)
        names = ", ".join(f"'{clean_line(n, 64)}'" for n in senders[: self.SAMPLE_NAMES])
        more = len(senders) - self.SAMPLE_NAMES
        if more > 0:
            names += f" and {more}{'+' if len(senders) >= 1000 else ''} more"
        since = "" if self._last_line is None else f" in the last {round(now - self._last_line)} s"
        return (
            f"warning: errorCentral: dropped {self._pending} REQErrorLog message(s){since} "
            f"from node(s) it does not know: {names} ({self.dropped} in all); it writes lines "
            "only from nodes that sent a hello, have a key in etc/signing/keys.json or are "
            "listed in error_log_known_nodes"
        )

    def handler(self) -> Handler:
        """The ``REQErrorLog`` handler that writes the lines of admitted senders only."""

        async def error_log(ctx: HandlerContext, msg: Message) -> bytes | None:
            if not self.admit(msg.from_node):
                return None
            return await _write_error_log(ctx, msg)

        return Handler(method=_write_error_log.method, func=error_log, info=self.info)

    def info(self) -> dict[str, object]:
        """What the serving Subscriber shows under ``handler`` in the tree snapshot (and the
        metrics read): the lines dropped since start because their sender is unknown."""
        return {"unknown_senders_dropped": self.dropped}


def error_log_senders_for(
    config: Config,
    security: NodeSecurity,
    hellos: Mapping[str, object],
    warn: Callable[[str], None],
) -> ErrorLogSenders:
    """The :class:`ErrorLogSenders` of a node: it knows the nodes of its configuration
    (``error_log_known_nodes``), its ``hellos``, the hello files in its data folder and the
    keys (allowed or pending) of its trust store."""

    def has_key(node: str) -> bool:
        security.refresh_trust()
        state = security.trust.state
        return node in state.allowed or node in state.pending

    known = KnownNodes(
        own=(config.node_name, config.central_node_name),
        configured=node_names_setting(config.error_log_known_nodes),
        hellos=hellos,
        hello_dir=config.data_dir / HELLO_DIRECTORY,
        trusted=has_key,
    )
    return ErrorLogSenders(known, warn)
