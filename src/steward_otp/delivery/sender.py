"""The sender's state machine for one destination: a pure object, fed events, returning actions.

It owns no I/O and no clock: every call that depends on time takes ``now``. The Publisher
(:mod:`steward_otp.outbound`) carries out what it returns: publishing, store updates, error
reports. Its guarantees, each tested under hypothesis:

* at most ``window`` messages are outstanding (sent and not yet settled) at any time;
* a message is transmitted at most ``attempts`` times, each ``ack_timeout`` apart at the
  least, with ``retry_wait`` between an ACK timeout and the next transmission;
* every message offered is eventually settled exactly once: :class:`Delivered` (an ACK named
  it, or a fire-and-forget publish was flushed), :class:`GaveUp` (its attempts ran out) or
  :class:`Refused` (the receiver rejected it) -- unless the driver calls :meth:`release` or
  :meth:`forget` for it first;
* an ACK for a message it does not hold (late, duplicated, or from a previous life) changes
  nothing.

Message lifecycle::

    queued --poll--> sent --ACK--> Delivered
                      |--deadline, attempts left--> waiting --poll, retry_wait over--> sent
                      |--deadline, no attempts left--> GaveUp
                      '--rejected in an ACK--> Refused
    queued --poll--> flushing --flushed--> Delivered         (fire and forget: ack_timeout < 1)
"""

from __future__ import annotations

import collections
import enum
import heapq
import itertools
import math
from collections.abc import Iterable

import attrs

from steward_otp.delivery.protocol import Ack


@attrs.frozen
class Outgoing:
    """What the machine needs to know about one message."""

    msg_id: str
    ack_timeout: float
    """Seconds to wait for an ACK; below 1: fire and forget (no ACK expected)."""
    attempts: int = 1
    """Transmissions allowed in all (``retries + 1``); at least 1."""
    retry_wait: float = 0.0
    """Seconds between an ACK timeout and the next transmission."""

    @property
    def wants_ack(self) -> bool:
        """Whether the receiver is asked to acknowledge the message."""
        return self.ack_timeout >= 1


@attrs.frozen
class Transmit:
    """Publish these messages now: ``first`` for the first time, ``again`` as retries."""

    first: tuple[str, ...] = ()
    again: tuple[str, ...] = ()


@attrs.frozen
class Delivered:
    """These messages reached the receiver (ACKed, or flushed when fire-and-forget)."""

    msg_ids: tuple[str, ...]


@attrs.frozen
class GaveUp:
    """These messages were never ACKed within their attempts: they failed."""

    msg_ids: tuple[str, ...]


@attrs.frozen
class Refused:
    """The receiver rejected this message; it will never run there."""

    msg_id: str
    reason: str


Action = Transmit | Delivered | GaveUp | Refused


class _Phase(enum.Enum):
    SENT = "sent"
    WAITING = "waiting"
    FLUSHING = "flushing"


@attrs.define
class _Outstanding:
    item: Outgoing
    phase: _Phase
    due: float
    """SENT: the ACK deadline; WAITING: when to transmit again; FLUSHING: unused."""
    transmissions: int = 1
    timer: int = 0
    """Which entry of the machine's timer heap is current for this message."""


class SenderMachine:
    """One destination's outgoing window. See the module docstring for the guarantees."""

    def __init__(self, window: int = 128) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        self.window = window
        self._queue: collections.OrderedDict[str, Outgoing] = collections.OrderedDict()
        self._outstanding: dict[str, _Outstanding] = {}
        # (due, timer, id): one entry per due time set; stale ones are skipped when popped.
        self._timers: list[tuple[float, int, str]] = []
        self._timer_ids = itertools.count(1)
        self.missed_acks = 0
        """ACK deadlines that passed (each one a lost message or a lost ACK)."""

    # ----------------------------------------------------------------- queries

    @property
    def queued(self) -> int:
        """Messages waiting for room in the window."""
        return len(self._queue)

    @property
    def outstanding(self) -> int:
        """Messages in the window: sent, waiting to be sent again, or being flushed."""
        return len(self._outstanding)

    def holds(self, msg_id: str) -> bool:
        """Whether ``msg_id`` is queued or outstanding here."""
        return msg_id in self._queue or msg_id in self._outstanding

    def held(self) -> list[str]:
        """Every id queued or outstanding, outstanding first."""
        return [*self._outstanding, *self._queue]

    def next_deadline(self) -> float | None:
        """The earliest time at which :meth:`poll` has something to do, None if never.

        ``-inf`` when queued messages fit in the window now.
        """
        if self._queue and len(self._outstanding) < self.window:
            return -math.inf
        timers = self._timers
        while timers and not self._current(timers[0]):
            heapq.heappop(timers)
        return timers[0][0] if timers else None

    def _current(self, timer: tuple[float, int, str]) -> bool:
        entry = self._outstanding.get(timer[2])
        return entry is not None and entry.timer == timer[1]

    def _set_due(self, msg_id: str, entry: _Outstanding, due: float) -> None:
        entry.due = due
        entry.timer = next(self._timer_ids)
        heapq.heappush(self._timers, (due, entry.timer, msg_id))

    # ----------------------------------------------------------------- events

    def offer(self, item: Outgoing) -> bool:
        """Queue ``item``; False (and nothing changes) when the id is held already."""
        if self.holds(item.msg_id):
            return False
        if item.attempts < 1:
            item = attrs.evolve(item, attempts=1)
        self._queue[item.msg_id] = item
        return True

    def poll(self, now: float) -> list[Action]:
        """Time out, retransmit and start what is due at ``now``."""
        actions: list[Action] = []
        gave_up: list[str] = []
        again: list[str] = []
        timers = self._timers
        while timers and timers[0][0] <= now:
            timer = heapq.heappop(timers)
            if not self._current(timer):
                continue  # settled, or its due time changed since
            msg_id = timer[2]
            entry = self._outstanding[msg_id]
            if entry.phase is _Phase.SENT:
                self.missed_acks += 1
                if entry.transmissions >= entry.item.attempts:
                    del self._outstanding[msg_id]
                    gave_up.append(msg_id)
                    continue
                entry.phase = _Phase.WAITING
                # Due at once when retryWait is 0: this loop pops it again right away.
                self._set_due(msg_id, entry, now + max(entry.item.retry_wait, 0.0))
            else:
                entry.phase = _Phase.SENT
                entry.transmissions += 1
                self._set_due(msg_id, entry, now + entry.item.ack_timeout)
                again.append(msg_id)
        first: list[str] = []
        while self._queue and len(self._outstanding) < self.window:
            msg_id, item = self._queue.popitem(last=False)
            if item.wants_ack:
                entry = _Outstanding(item, _Phase.SENT, now)
                self._outstanding[msg_id] = entry
                self._set_due(msg_id, entry, now + item.ack_timeout)
            else:
                self._outstanding[msg_id] = _Outstanding(item, _Phase.FLUSHING, math.inf)
            first.append(msg_id)
        if gave_up:
            actions.append(GaveUp(tuple(gave_up)))
        if first or again:
            actions.append(Transmit(tuple(first), tuple(again)))
        return actions

    def acked(self, ack: Ack) -> list[Action]:
        """Settle what ``ack`` names; ids this machine does not hold are ignored."""
        delivered = tuple(i for i in ack.accepted if self._settle(i))
        actions: list[Action] = [Delivered(delivered)] if delivered else []
        actions += [Refused(i, reason) for i, reason in ack.rejected if self._settle(i)]
        return actions

    def flushed(self, msg_ids: Iterable[str]) -> list[Action]:
        """Fire-and-forget messages that reached the broker are delivered."""
        delivered = tuple(
            i
            for i in msg_ids
            if (entry := self._outstanding.get(i)) is not None
            and entry.phase is _Phase.FLUSHING
            and self._settle(i)
        )
        return [Delivered(delivered)] if delivered else []

    def release(self, msg_ids: Iterable[str]) -> list[str]:
        """Let go of messages unsettled (the driver hands them back); returns those held."""
        return [i for i in msg_ids if self._settle(i)]

    def forget(self, msg_ids: Iterable[str]) -> None:
        """Drop messages the store no longer holds as active (cancelled, purged, settled)."""
        for msg_id in msg_ids:
            self._settle(msg_id)

    def _settle(self, msg_id: str) -> bool:
        if self._outstanding.pop(msg_id, None) is not None:
            return True
        return self._queue.pop(msg_id, None) is not None
