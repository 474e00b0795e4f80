"""The sender's state machine for one destination: a pure object, fed events, returning actions.

It owns no I/O and no clock: every call that depends on time takes ``now``. The Publisher
(:mod:`steward_otp.outbound.publisher`) carries out what it returns: publishing, store
updates, error reports. Its guarantees, each tested under hypothesis:

* at most ``window`` messages are outstanding (sent and not yet settled) at any time;
* a message is transmitted at most ``attempts`` times, each ``ack_timeout`` apart at the
  least, with ``retry_wait`` between an ACK timeout and the next transmission;
* every message offered is eventually settled exactly once: :class:`Delivered` (an ACK named
  it, or a fire-and-forget publish was flushed), :class:`GaveUp` (its attempts ran out) or
  :class:`Refused` (the receiver rejected it) -- unless the driver calls :meth:`release` or
  :meth:`forget` for it first;
* an ACK for a message it does not hold (late, duplicated, or from a previous life) changes
  nothing;
* when the broker says nobody listens at the destination (:meth:`SenderMachine.nobody_listening`),
  the messages sent and not settled are *unheard*; while the destination stays silent one of
  them is sent again as a probe, :data:`PROBE_FIRST` seconds later and then at doubling
  intervals up to the shortest ACK timeout outstanding (so a long outage costs about one probe
  per ACK timeout), and the first ACK has every unheard one sent again at once
  (``Transmit.resend``): a destination that comes back gets its window within moments, not
  after the ACK timeouts. Probes and resends do not count as attempts: what they repeat
  reached nobody (a repeat that did arrive is ACKed again and not run again by the
  receiver's dedupe).

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
    """Publish these messages now: ``first`` for the first time, ``again`` as retries,
    ``resend`` again without counting an attempt (a probe, or unheard ones once the
    destination answers)."""

    first: tuple[str, ...] = ()
    again: tuple[str, ...] = ()
    resend: tuple[str, ...] = ()


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
    unheard: bool = False
    """Sent while nobody listened at the destination (see ``nobody_listening``)."""


DEFAULT_WINDOW = 512
"""Messages outstanding per destination at most: about half a receiver's batch (1,024), so a
window is taken in one or two store commits on each side. (128 held a drain to one store
round trip per 128 messages: measured with bench/throughput.py, 3.6-3.8k messages/s at 128,
4.7-4.9k at 512, and a third less receiver CPU per message.)"""

PROBE_FIRST = 0.05
"""Seconds from the first "no responders" to the first probe of a silent destination."""


class SenderMachine:
    """One destination's outgoing window. See the module docstring for the guarantees."""

    def __init__(self, window: int = DEFAULT_WINDOW) -> None:
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
        self._silent = False
        self._all_unheard = False
        """Every SENT entry is unheard already: a further "no responders" changes nothing
        (a window of them must not cost a scan of the window each)."""
        self._probe_delay = PROBE_FIRST
        self._probe_due = math.inf
        self.probes = 0
        """Probes sent to the destination while it was silent."""

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
        due = timers[0][0] if timers else math.inf
        if self._silent:
            due = min(due, self._probe_due)
        return None if due == math.inf else due

    @property
    def silent(self) -> bool:
        """Whether the destination is taken as absent (no responders, no ACK since)."""
        return self._silent

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

    def nobody_listening(self, now: float) -> None:
        """The broker answered a transmission with "no responders": nobody subscribes at
        the destination now. What is sent and not settled becomes unheard and the
        destination silent until an ACK arrives (see the module docstring)."""
        if not self._all_unheard:
            for entry in self._outstanding.values():
                if entry.phase is _Phase.SENT:
                    entry.unheard = True
            self._all_unheard = True
        if not self._silent:
            self._silent = True
            self._probe_delay = PROBE_FIRST
            self._probe_due = now + PROBE_FIRST

    def _probe(self, now: float) -> list[str]:
        """The oldest unheard message, when a probe is due; schedules the next one."""
        if not self._silent or now < self._probe_due:
            return []
        unheard = [
            (msg_id, entry)
            for msg_id, entry in self._outstanding.items()
            if entry.unheard and entry.phase is _Phase.SENT
        ]
        cap = min((entry.item.ack_timeout for _, entry in unheard), default=math.inf)
        self._probe_delay = min(self._probe_delay * 2, max(cap, PROBE_FIRST))
        self._probe_due = now + self._probe_delay
        if not unheard:
            return []  # all waiting for their retry: those transmissions probe
        self.probes += 1
        return [unheard[0][0]]

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
                entry.unheard = False
                self._all_unheard = False
                entry.transmissions += 1
                self._set_due(msg_id, entry, now + entry.item.ack_timeout)
                again.append(msg_id)
        resend = self._probe(now)
        first: list[str] = []
        while self._queue and len(self._outstanding) < self.window:
            msg_id, item = self._queue.popitem(last=False)
            if item.wants_ack:
                entry = _Outstanding(item, _Phase.SENT, now)
                self._all_unheard = False
                self._outstanding[msg_id] = entry
                self._set_due(msg_id, entry, now + item.ack_timeout)
            else:
                self._outstanding[msg_id] = _Outstanding(item, _Phase.FLUSHING, math.inf)
            first.append(msg_id)
        if gave_up:
            actions.append(GaveUp(tuple(gave_up)))
        if first or again or resend:
            actions.append(Transmit(tuple(first), tuple(again), tuple(resend)))
        return actions

    def acked(self, ack: Ack) -> list[Action]:
        """Settle what ``ack`` names; ids this machine does not hold are ignored. The first
        ACK from a silent destination has its unheard messages sent again at once."""
        delivered = tuple(i for i in ack.accepted if self._settle(i))
        actions: list[Action] = [Delivered(delivered)] if delivered else []
        actions += [Refused(i, reason) for i, reason in ack.rejected if self._settle(i)]
        if self._silent:
            self._silent = False
            self._all_unheard = False
            self._probe_due = math.inf
            resend = []
            for msg_id, entry in self._outstanding.items():
                if entry.unheard:
                    entry.unheard = False
                    if entry.phase is _Phase.SENT:
                        resend.append(msg_id)
            if resend:
                actions.append(Transmit(resend=tuple(resend)))
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
