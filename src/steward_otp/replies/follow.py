"""Following the replies to messages a node sent: the engine of the control socket's
``replies`` operation (behind ``steward-otp cmd`` and ``steward-otp send --wait``).

A reply comes back to the sending node as an ordinary message whose ``previousMessage.id``
is the id of the request it answers. Once that reply's handler (``REQToFileAppend``, ...)
has run, the node's audit log holds it, payload included; so does the final word on each
sent message (``delivered``, ``failed``, ``cancelled``, ``purged``). :func:`follow` reads the
audit log once from a known position onwards (what happened before the watch began), then
learns what comes later from the node's :class:`~steward_otp.replies.hub.ReplyHub` the moment
it happens -- each reply as its handler finishes, each outcome as it is committed -- and
turns what concerns the watched ids into events:

* ``{"event": "reply", "id", "node", "replyId", "method", "error", "output", "size", "time"}``
  -- one per reply; ``error`` is true for an error reply (its ``fileName`` ends in
  ``.error``, as every error reply's does), ``output`` the data as text (invalid UTF-8
  replaced);
* ``{"event": "state", "id", "node", "state", "attempts", "reason"}`` -- a watched message
  left the outbox: ``delivered``, ``failed`` (its retries ran out, or the receiver refused
  it), ``cancelled`` or ``purged``;
* ``{"event": "waiting", "pending": n}`` -- every ``heartbeat`` seconds without other news,
  with the number of ids not settled yet (a client that went away is noticed by it);
* ``{"event": "end", "timedOut", "messages": [...]}`` -- last: one entry per watched id with
  its node, final ``state`` (``replied``, ``delivered``, ``queued``, ``in_flight``,
  ``failed``, ``cancelled``, ``purged`` or ``unknown``), reply and error-reply counts,
  attempts and reason.

The watch ends once every id is *settled* -- it has a reply, or (for ids whose message asks
no reply) was delivered, or it failed, was cancelled or purged -- and nothing new came for
``quiet`` seconds (a command that failed sends its error reply and then its output: both are
shown), or when ``timeout`` runs out.

Each reply and each outcome is reported once, whether the audit log, the hub or both told
of it. Without a hub (a store not run by a node) the audit log is read every ``poll``
seconds instead.

Known limit: the audit log keeps payloads up to ``AUDIT_PAYLOAD_LIMIT`` (64 KiB); a larger
reply that came before the watch began is audited without its payload and cannot be matched
here (its output is still in the file its reply method wrote); one that comes during the
watch is handed over whole by the hub.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncGenerator, AsyncIterator, Collection
from typing import Any, Final, Protocol

import trio

from steward_otp.replies.hub import ReplyHub, ReplyNotice
from steward_otp.replies.watch import Watch
from steward_otp.store import AuditRecord, Direction, OutboxRow

POLL_INTERVAL: Final = 0.2
"""Seconds between two reads of the audit log while following without a reply hub."""
PAGE: Final = 500
"""Audit records read per store operation."""
HEARTBEAT: Final = 5.0
"""Seconds between two ``waiting`` events while nothing else happens."""
DEFAULT_QUIET: Final = 1.0
"""Seconds without news, once every id is settled, before the watch ends."""


class AuditSource(Protocol):
    """What :func:`follow` needs from the store."""

    async def audit_log(
        self, *, msg_id: str | None = None, limit: int | None = 1000, after_seq: int = 0
    ) -> list[AuditRecord]: ...

    async def list_outbox(
        self, *, to_node: str | None = None, states: Any = None, limit: int | None = 1000,
        after_seq: int = 0,
    ) -> list[OutboxRow]: ...  # fmt: skip


async def audit_end(store: AuditSource, known: int = 0) -> int:
    """The ``seq`` of the newest audit record (0 for an empty log), found in O(log n) reads.

    ``known`` is a seq the caller knows not to be past the end (a previous answer). The
    store reads "the first record after seq k"; seqs only grow (old ones are pruned, none
    reused), so an exponential then a binary search finds the last one.
    """

    async def first_after(seq: int) -> int | None:
        records = await store.audit_log(after_seq=seq, limit=1)
        return records[0].seq if records else None

    low = await first_after(known)
    if low is None:
        return known
    # Invariant: a record with seq `low` exists, none has a seq above `high`.
    step = 1024
    while True:
        found = await first_after(low + step)
        if found is None:
            high = low + step
            break
        low, step = found, step * 2
    while low < high:
        middle = (low + high) // 2
        found = await first_after(middle)
        if found is None:
            high = middle
        else:
            low = found
    return low


LOOKUPS: Final = 1000
"""Most ids looked up one by one in the audit log (an indexed read each)."""
OUTBOX_PAGES: Final = 100
"""Most outbox pages (of 1000) read to find the ids still held there."""


async def _earlier_outcomes(store: AuditSource, watch: Watch, upto: int | None = None) -> None:
    """What the audit log already says about ids not settled yet (delivered, failed, ...
    before the watch began: records up to seq ``upto``, all when None)."""
    open_ids = [i for i, w in watch.ids.items() if not w.settled]
    for msg_id in open_ids[:LOOKUPS]:
        for record in await store.audit_log(msg_id=msg_id, limit=10):
            if record.direction == Direction.OUTBOUND and (upto is None or record.seq <= upto):
                watch.feed(record)


async def _held(store: AuditSource, watch: Watch) -> None:
    """What the outbox says about ids not settled yet: queued, in flight, failed, ..."""
    open_ids = {i for i, w in watch.ids.items() if not w.settled}
    after = 0
    for _ in range(OUTBOX_PAGES):
        if not open_ids:
            return
        rows = await store.list_outbox(limit=1000, after_seq=after)
        for row in rows:
            if row.msg_id in open_ids:
                watch.note_held(row)
                open_ids.discard(row.msg_id)
        if len(rows) < 1000:
            return
        after = rows[-1].seq


async def follow(
    store: AuditSource,
    reply_ids: Collection[str],
    *,
    delivery_ids: Collection[str] = (),
    after_seq: int | None = None,
    timeout: float = 60.0,
    quiet: float = DEFAULT_QUIET,
    poll: float = POLL_INTERVAL,
    heartbeat: float = HEARTBEAT,
    hub: ReplyHub | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """Yield the events about ``reply_ids`` (replies wanted) and ``delivery_ids`` (delivery
    is enough) from the audit log after ``after_seq`` (None: from now on), then ``end``.

    With ``hub`` (the node's :class:`~steward_otp.replies.hub.ReplyHub`) the audit log is read
    once, and what comes later is what the hub says, as it happens; without one the audit log
    is read every ``poll`` seconds. See the module docstring for the events and when the
    watch ends.
    """
    watch = Watch(reply_ids, delivery_ids)
    if hub is None:
        events = _poll(
            store, watch, after_seq, timeout, quiet=quiet, poll=poll, heartbeat=heartbeat
        )
    else:
        events = _listen(store, watch, hub, after_seq, timeout, quiet=quiet, heartbeat=heartbeat)
    timed_out = False
    async with contextlib.aclosing(events) as stream:
        async for event in stream:
            if event is _TIMED_OUT:
                timed_out = True
                break
            yield event
    if timed_out:
        await _held(store, watch)
        await _earlier_outcomes(store, watch)
    yield {"event": "end", "timedOut": timed_out, "messages": watch.summary()}


_TIMED_OUT: Final[dict[str, Any]] = {"event": "timed out"}
"""Last item of :func:`_poll` and :func:`_listen` when the watch ran out of time."""


class _Pace:
    """When a watch ends and when it says it is still waiting: ``quiet`` seconds after the
    last news once every id is settled, at the latest ``timeout`` seconds after it began; a
    ``waiting`` line every ``heartbeat`` seconds without other lines."""

    def __init__(self, timeout: float, *, quiet: float, heartbeat: float) -> None:
        now = trio.current_time()
        self.deadline = now + timeout
        self.quiet = quiet
        self.heartbeat = heartbeat
        self.last_news = self.last_line = now

    def news(self) -> None:
        """An event about the watched ids was just reported."""
        self.last_news = self.last_line = trio.current_time()

    def idle(self, watch: Watch) -> tuple[list[dict[str, Any]], bool]:
        """Nothing new came: the events to report now, and whether the watch is over
        (the last event is then :data:`_TIMED_OUT` when it ran out of time unsettled)."""
        now = trio.current_time()
        if watch.settled and now - self.last_news >= self.quiet:
            return [], True
        if now >= self.deadline:
            return ([] if watch.settled else [_TIMED_OUT]), True
        if now - self.last_line >= self.heartbeat:
            self.last_line = now
            pending = sum(not w.settled for w in watch.ids.values())
            return [{"event": "waiting", "pending": pending}], False
        return [], False

    def wake(self, watch: Watch) -> float:
        """When :meth:`idle` may have something to say, if no news comes first."""
        wake = min(self.deadline, self.last_line + self.heartbeat)
        if watch.settled:
            wake = min(wake, self.last_news + self.quiet)
        return wake


async def _read_after(
    store: AuditSource, watch: Watch, position: int
) -> tuple[int, list[dict[str, Any]]]:
    """Feed every audit record after ``position``; the new position and the events."""
    events: list[dict[str, Any]] = []
    while True:
        records = await store.audit_log(after_seq=position, limit=PAGE)
        for record in records:
            position = record.seq
            event = watch.feed(record)
            if event is not None:
                events.append(event)
        if len(records) < PAGE:
            return position, events


async def _listen(
    store: AuditSource,
    watch: Watch,
    hub: ReplyHub,
    after_seq: int | None,
    timeout: float,
    *,
    quiet: float,
    heartbeat: float,
) -> AsyncGenerator[dict[str, Any]]:
    """The events of ``watch``: the audit log read once, then the hub's notices.

    The waiter is registered before the audit log is read, so a reply that comes meanwhile
    is in one or both; the watch reports each reply and each outcome once.
    """
    pace = _Pace(timeout, quiet=quiet, heartbeat=heartbeat)
    with hub.watch(watch.ids) as waiter:
        start = await audit_end(store) if after_seq is None else after_seq
        await _earlier_outcomes(store, watch, upto=start)
        position, events = await _read_after(store, watch, start)
        pace.news()
        for event in events:
            yield event
        while True:
            notices, lost = waiter.take()
            news: list[dict[str, Any]] = []
            for notice in notices:
                if isinstance(notice, ReplyNotice):
                    reply = watch.reply(notice.message, notice.time)
                    news += [reply] if reply is not None else []
                    continue
                for record in await store.audit_log(msg_id=notice.msg_id, limit=10):
                    outcome = watch.feed(record) if record.direction == Direction.OUTBOUND else None
                    news += [outcome] if outcome is not None else []
            if lost:  # the hub could not say what changed: read on from where we are
                position, read = await _read_after(store, watch, position)
                news += read
            if news:
                pace.news()
                for event in news:
                    yield event
                continue  # look at the mailbox again before waiting
            events, over = pace.idle(watch)
            for event in events:
                yield event
            if over:
                return
            await waiter.wait(pace.wake(watch))


async def _poll(
    store: AuditSource,
    watch: Watch,
    after_seq: int | None,
    timeout: float,
    *,
    quiet: float,
    poll: float,
    heartbeat: float,
) -> AsyncGenerator[dict[str, Any]]:
    """The events of ``watch`` from reading the audit log every ``poll`` seconds (a node
    without a reply hub)."""
    position = await audit_end(store) if after_seq is None else after_seq
    pace = _Pace(timeout, quiet=quiet, heartbeat=heartbeat)
    await _earlier_outcomes(store, watch, upto=position)
    while True:
        records = await store.audit_log(after_seq=position, limit=PAGE)
        for record in records:
            position = record.seq
            event = watch.feed(record)
            if event is not None:
                pace.news()
                yield event
        if len(records) == PAGE:
            continue  # more to read right away
        events, over = pace.idle(watch)
        for event in events:
            yield event
        if over:
            return
        await trio.sleep_until(min(pace.wake(watch), trio.current_time() + poll))


def checked_seconds(value: object, name: str, *, default: float, maximum: float) -> float:
    """``value`` as seconds in ``[0, maximum]`` (``default`` when None); ValueError naming
    ``name`` otherwise (a bool, NaN, an infinity or an int too large for a float included)."""
    if value is None:
        return default
    seconds = math.nan
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:  # an int too large for a float
            seconds = math.inf
    if not (math.isfinite(seconds) and 0 <= seconds <= maximum):
        raise ValueError(f'field "{name}": value {value!r}; allowed: seconds, 0 to {maximum:g}')
    return seconds
