"""The loopback broker: one in-memory NATS server, routing each publish to its subscriptions.

:class:`LoopbackBroker` keeps the subscriptions of every transport made on it (as
:class:`RouteEntry` records), applies its :class:`~steward_otp.loopback.faults.Faults` to each
message entering it, and routes what comes out: to every matching plain subscription and to
one member of each matching queue group, round-robin. A message with a reply subject that
nobody receives is answered with a "no responders" notice. It can be taken down and brought
back (:meth:`LoopbackBroker.stop`, :meth:`LoopbackBroker.start`), telling the transports
attached to it.

Guarantees: delivery is synchronous (a publish reaches every receiving channel before
``publish`` returns), a full channel drops and counts rather than blocks, and delayed
messages are delivered by a Trio system task on the run's clock. One Trio run, one thread.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
from collections.abc import Callable
from typing import Protocol

import attrs
import trio

from steward_otp.limits import MAX_MESSAGE_BYTES
from steward_otp.loopback.faults import Faults
from steward_otp.loopback.subjects import split_subject, tokens_match
from steward_otp.transport import NO_RESPONDERS_STATUS, InboundMessage, Subscription

log = logging.getLogger(__name__)


class AttachedTransport(Protocol):
    """What the broker tells a transport made on it: that it went down or came back."""

    def _broker_down(self) -> None: ...

    def _broker_up(self) -> None: ...

    def _drain_buffer(self) -> None: ...


@attrs.define(eq=False)
class RouteEntry:
    """One subscription as the broker routes to it."""

    tokens: tuple[str, ...]
    queue: str
    deliver: Callable[[InboundMessage], bool]
    subscription: Subscription | None


class LoopbackBroker:
    """An in-memory NATS server shared by the :class:`LoopbackTransport` s made on it.

    See :mod:`steward_otp.loopback` for the routing rules. ``seed`` seeds :attr:`faults`' random
    generator. Counters: ``routed`` (messages the broker routed, whether or not anybody
    received them) and ``lost`` (publishes and delayed messages lost while the broker was
    down). ``max_payload`` is the server's announced limit (nats-server's default 1 MiB);
    it may be changed while running. Use it from one Trio run.
    """

    def __init__(self, *, seed: int | None = 0, max_payload: int = MAX_MESSAGE_BYTES) -> None:
        self.max_payload = max_payload
        self.faults = Faults(rng=random.Random(seed), release=self._route)
        self.routed = 0
        self.lost = 0
        self._up = True
        self._up_event = trio.Event()
        self._up_event.set()
        self._entries: dict[object, RouteEntry] = {}
        self._round_robin: dict[tuple[tuple[str, ...], str], int] = {}
        self._transports: list[AttachedTransport] = []
        self._ids = itertools.count(1)
        self._timed: list[tuple[float, int, InboundMessage]] = []
        self._sequence = itertools.count()
        self._timer_running = False
        self._timer_wake = trio.Event()

    @property
    def up(self) -> bool:
        """True unless the broker was taken down with :meth:`stop`."""
        return self._up

    def stop(self) -> None:
        """Take the broker down: running transports go RECONNECTING, publishes are lost.

        Subscriptions stay registered; messages already delayed by a fault and due while
        the broker is down are lost. Does nothing when already down.
        """
        if not self._up:
            return
        self._up = False
        self._up_event = trio.Event()
        log.warning("loopback broker: down")
        for transport in self._transports:
            transport._broker_down()

    def start(self) -> None:
        """Bring the broker back: running transports go CONNECTED (counting a reconnect where
        they had been connected), then each transport's reconnect buffer is delivered in order.
        Does nothing when already up."""
        if self._up:
            return
        self._up = True
        self._up_event.set()
        log.info("loopback broker: up")
        for transport in self._transports:
            transport._broker_up()
        for transport in self._transports:
            transport._drain_buffer()

    def interest(self, subject: str) -> int:
        """How many receivers a message on ``subject`` would reach now: one per matching plain
        subscription and one per matching queue group (reply inboxes included)."""
        tokens = split_subject(subject)
        groups: set[tuple[tuple[str, ...], str]] = set()
        plain = 0
        for entry in self._entries.values():
            if tokens_match(entry.tokens, tokens):
                if entry.queue:
                    groups.add((entry.tokens, entry.queue))
                else:
                    plain += 1
        return plain + len(groups)

    # ----------------------------------------------------------------- for the transports

    def _attach(self, transport: AttachedTransport) -> int:
        self._transports.append(transport)
        return next(self._ids)

    def _add(self, key: object, entry: RouteEntry) -> None:
        self._entries[key] = entry

    def _remove(self, key: object) -> None:
        self._entries.pop(key, None)

    async def _wait_up(self) -> None:
        while not self._up:
            await self._up_event.wait()

    def _publish(self, message: InboundMessage) -> None:
        """Take in one publish: faults first, then routing."""
        faults = self.faults
        if not faults.rules:
            self._route(message)
            return
        if faults._drops(message):
            return
        copies = faults._copies(message)
        delay = faults._delay(message)
        for _ in range(copies):
            if delay is None:
                self._arrive(message)
            else:
                faults.delayed += 1
                self._schedule(trio.current_time() + delay, message)

    def _arrive(self, message: InboundMessage) -> None:
        for item in self.faults._reorder(message):
            self._route(item)

    def _route(self, message: InboundMessage) -> None:
        if not self._up:
            self.lost += 1
            return
        self.routed += 1
        subject = split_subject(message.subject)
        groups: dict[tuple[tuple[str, ...], str], list[RouteEntry]] = {}
        receivers = 0
        for entry in list(self._entries.values()):
            if not tokens_match(entry.tokens, subject):
                continue
            if entry.queue:
                groups.setdefault((entry.tokens, entry.queue), []).append(entry)
            elif self._offer(entry, message):
                receivers += 1
        for key, members in groups.items():
            turn = self._round_robin.get(key, 0)
            self._round_robin[key] = turn + 1
            for k in range(len(members)):
                if self._offer(members[(turn + k) % len(members)], message):
                    receivers += 1
                    break
        if receivers == 0 and message.reply:
            notice = InboundMessage(message.reply, b"", {"Status": NO_RESPONDERS_STATUS})
            self._route(notice)

    def _offer(self, entry: RouteEntry, message: InboundMessage) -> bool:
        """Hand ``message`` to one subscription; False when it turned out to be closed."""
        if entry.deliver(message):
            return True
        subscription = entry.subscription
        if subscription is not None and subscription.closed:
            self._remove(subscription)
            return False
        return True  # full: dropped and counted by the subscription, but it was interested

    def _schedule(self, due: float, message: InboundMessage) -> None:
        heapq.heappush(self._timed, (due, next(self._sequence), message))
        if self._timer_running:
            self._timer_wake.set()
        else:
            self._timer_running = True
            trio.lowlevel.spawn_system_task(self._deliver_delayed, name="loopback broker delays")

    async def _deliver_delayed(self) -> None:
        # A system task must never raise: a failing ``where`` predicate is logged instead.
        try:
            while self._timed:
                self._timer_wake = trio.Event()
                with trio.move_on_at(self._timed[0][0]):
                    await self._timer_wake.wait()
                now = trio.current_time()
                while self._timed and self._timed[0][0] <= now:
                    _, _, message = heapq.heappop(self._timed)
                    try:
                        self._arrive(message)
                    except Exception:
                        log.exception("loopback broker: delayed delivery on %s", message.subject)
        finally:
            self._timer_running = False
