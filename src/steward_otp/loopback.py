"""An in-memory broker and transport: NATS subject semantics without a server, plus faults.

:class:`LoopbackBroker` stands for one NATS server; each :class:`LoopbackTransport` made on it
stands for one client connection (one node's bridge). Several nodes in one Trio run share a
broker and talk to each other as they would over NATS:

* **Subjects** — dot-separated, non-empty tokens. In a subscription ``*`` matches exactly one
  token and a final ``>`` one or more trailing tokens; see :func:`subject_matches`.
* **Queue groups** — subscriptions with the same non-empty queue name on the same subject
  pattern form a group. Each message goes to every plain subscription that matches and to
  exactly one member of each matching group (round-robin, so every member gets its share).
* **Delivery** is synchronous: ``publish_nowait`` hands the message to each receiving
  subscription's channel (:meth:`Subscription.offer`) before it returns. So one publisher's
  messages reach a subscription in the order they were published, a subscription is in place
  as soon as ``subscribe`` returns, and ``flush`` only waits for the broker to be up. A full
  channel drops the message and counts it (``Subscription.dropped``), never blocking anyone.
* **Request/reply** — each transport has a private reply inbox. A message with a reply subject
  that no subscription matches makes the broker answer on the reply subject with a "no
  responders" notice (status 503, as nats-server does); ``request`` still waits out its
  timeout and then raises :class:`RequestTimeout` with ``no_responders=True``, as
  :class:`~steward_otp.bridge.NatsBridge` does.
* **Outages** — :meth:`LoopbackBroker.stop` takes the broker down, :meth:`LoopbackBroker.start`
  brings it back. While it is down, running transports report ``RECONNECTING``; a publish is
  **lost** (counted in the transport's ``publish_errors`` and in ``broker.lost``), as with
  nats-py when its reconnect buffer is full or disabled — unless the transport was made with
  ``reconnect_buffer=N``: then up to N publishes are kept and delivered, in order, when the
  broker returns (nats-py's pending buffer). Requests time out (``no_responders=False``);
  ``flush`` waits for the return. Subscriptions stay registered, as a NATS client
  re-subscribes after reconnecting.
* **Limits** — the broker refuses a payload larger than its ``max_payload`` (counted in
  the transport's ``publish_errors``, as nats-py refuses it); a transport reports the
  broker's ``max_payload`` once it has been connected, its own configured one before.
* **Faults** — :attr:`LoopbackBroker.faults` (:class:`Faults`) drops, duplicates, delays or
  reorders chosen messages on their way into the broker.

Where a transport that is not running differs from NatsBridge (on purpose, to be lenient):
``subscribe`` and ``publish`` work before ``run`` and after it ended, and take effect at once
(NatsBridge queues them until it is connected).

Everything runs in one Trio run and one thread. Delayed messages are delivered by a Trio system
task the broker spawns on demand, so delays follow the run's clock, including
``trio.testing.MockClock`` and pytest-trio's ``autojump_clock``.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import logging
import random
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import trio

from steward_otp.limits import MAX_MESSAGE_BYTES
from steward_otp.transport import (
    NO_RESPONDERS_STATUS,
    ConnectionState,
    InboundMessage,
    RequestTimeout,
    Subscription,
    TransportError,
)

if TYPE_CHECKING:
    from steward_otp.transport import Transport

log = logging.getLogger(__name__)


Predicate = Callable[[InboundMessage], bool]
"""A test on a message, to narrow a :class:`Faults` rule (``where=``)."""


class LoopbackClosed(TransportError):
    """``close_connection`` was called; the transport's ``run`` ends with this error."""


# --------------------------------------------------------------------- subjects


def _split(subject: str) -> tuple[str, ...]:
    return tuple(subject.split("."))


def _tokens_ok(tokens: tuple[str, ...]) -> bool:
    return all(token and not any(c.isspace() for c in token) for token in tokens)


def is_valid_subject(subject: str) -> bool:
    """True when ``subject`` can be published on: non-empty tokens, no whitespace, no wildcard."""
    tokens = _split(subject)
    return _tokens_ok(tokens) and "*" not in tokens and ">" not in tokens


def is_valid_pattern(pattern: str) -> bool:
    """True when ``pattern`` can be subscribed to: a subject whose tokens may be ``*``, and
    whose last token may be ``>``."""
    tokens = _split(pattern)
    return _tokens_ok(tokens) and ">" not in tokens[:-1]


def _pattern_tokens(pattern: str) -> tuple[str, ...]:
    if not is_valid_pattern(pattern):
        raise ValueError(f"invalid subject pattern {pattern!r}")
    return _split(pattern)


def _match(pattern: tuple[str, ...], subject: tuple[str, ...]) -> bool:
    last = len(pattern) - 1
    for i, token in enumerate(pattern):
        if token == ">" and i == last:
            return len(subject) > i
        if i >= len(subject) or (token != "*" and token != subject[i]):
            return False
    return len(subject) == len(pattern)


def subject_matches(pattern: str, subject: str) -> bool:
    """True when a subscription on ``pattern`` receives a message published on ``subject``.

    NATS rules: tokens are compared one by one; ``*`` matches any one token, a final ``>`` one
    or more remaining tokens; only whole tokens are wildcards (``a*`` is literal). Raises
    ValueError for an invalid pattern; an invalid subject matches nothing.
    """
    tokens = _pattern_tokens(pattern)
    return is_valid_subject(subject) and _match(tokens, _split(subject))


# --------------------------------------------------------------------- faults


class FaultKind(enum.Enum):
    """What a :class:`FaultRule` does to the messages it matches."""

    DROP = "drop"
    DUPLICATE = "duplicate"
    DELAY = "delay"
    REORDER = "reorder"


@attrs.define(eq=False)
class FaultRule:
    """One fault: the messages it applies to, how many more times, and what it did so far.

    A message matches when its subject matches ``pattern`` (NATS wildcards) and ``where``
    (when given) returns true for it. ``remaining`` is None for "every match until removed".
    ``hits`` counts the messages the rule acted on.
    """

    kind: FaultKind
    pattern: str
    where: Predicate | None = None
    remaining: int | None = 1
    probability: float = 1.0
    seconds: float = 0.0
    hits: int = 0
    _tokens: tuple[str, ...] = attrs.field(init=False, repr=False)
    _held: InboundMessage | None = attrs.field(init=False, default=None, repr=False)

    def __attrs_post_init__(self) -> None:
        self._tokens = _pattern_tokens(self.pattern)
        if self.remaining is not None and self.remaining < 1:
            raise ValueError(f"count must be at least 1 (or None for no limit): {self.remaining}")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"probability must be between 0 and 1: {self.probability}")
        if self.seconds < 0:
            raise ValueError(f"delay must not be negative: {self.seconds}")

    @property
    def active(self) -> bool:
        """True while the rule may still act on a message."""
        return self.remaining is None or self.remaining > 0

    @property
    def held(self) -> InboundMessage | None:
        """The message a REORDER rule holds back right now, if any."""
        return self._held

    def matches(self, message: InboundMessage) -> bool:
        """True when the rule applies to ``message`` (ignoring ``remaining``)."""
        return _match(self._tokens, _split(message.subject)) and (
            self.where is None or self.where(message)
        )

    def _consume(self) -> None:
        self.hits += 1
        if self.remaining is not None:
            self.remaining -= 1


def _no_release(message: InboundMessage) -> None:
    del message


@attrs.define(eq=False)
class Faults:
    """Faults a test injects into a :class:`LoopbackBroker`, applied to messages as they enter it.

    Each method adds a :class:`FaultRule` and returns it; rules act in the order they were
    added. A published message goes through, in this order:

    1. **drop** — the first DROP rule that matches (and, for ``drop_rate``, whose random draw
       falls under its probability) loses the message: nobody receives it, no "no responders"
       notice is sent (it never reached the broker). Counted in ``dropped``.
    2. **duplicate** — the first matching DUPLICATE rule makes it arrive twice, the copy right
       after the original. Counted in ``duplicated`` (copies made).
    3. **delay** — the first matching DELAY rule makes every copy arrive ``seconds`` later, on
       the run's clock. Messages delayed until the same moment arrive in publish order. A
       delayed message that falls due while the broker is down is lost (``broker.lost``).
       Counted in ``delayed`` (copies delayed).
    4. **reorder** — the first matching REORDER rule that holds a message or is still active:
       with a message held, the new one is delivered and then the held one; otherwise the new
       one is held. So ``1 2 3 4`` under ``reorder(p, count=2)`` arrive as ``2 1 4 3``. A held
       message waits for the next match (or :meth:`remove`/:meth:`clear`, which deliver it).
       Counted in ``reordered`` (messages held).

    Random draws (``drop_rate``) come from ``rng``, seeded by the broker's ``seed`` and
    re-seeded by :meth:`seed`: the same seed and the same message sequence drop the same
    messages. A draw is made only for messages the rule matches.
    """

    rules: list[FaultRule] = attrs.field(factory=list)
    rng: random.Random = attrs.field(factory=lambda: random.Random(0))
    dropped: int = 0
    duplicated: int = 0
    delayed: int = 0
    reordered: int = 0
    _release: Callable[[InboundMessage], None] = attrs.field(default=_no_release, repr=False)

    def seed(self, seed: int | None) -> None:
        """Re-seed the random generator (None: from the OS, not reproducible)."""
        self.rng.seed(seed)

    def drop(
        self, pattern: str, *, count: int | None = 1, where: Predicate | None = None
    ) -> FaultRule:
        """Lose the next ``count`` matching messages (None: all of them until removed)."""
        return self._add(FaultRule(FaultKind.DROP, pattern, where, count))

    def drop_rate(
        self, pattern: str, p: float, *, count: int | None = None, where: Predicate | None = None
    ) -> FaultRule:
        """Lose each matching message with probability ``p`` (at most ``count`` of them)."""
        return self._add(FaultRule(FaultKind.DROP, pattern, where, count, probability=p))

    def duplicate(
        self, pattern: str, *, count: int | None = 1, where: Predicate | None = None
    ) -> FaultRule:
        """Deliver each of the next ``count`` matching messages twice."""
        return self._add(FaultRule(FaultKind.DUPLICATE, pattern, where, count))

    def delay(
        self,
        pattern: str,
        seconds: float,
        *,
        count: int | None = None,
        where: Predicate | None = None,
    ) -> FaultRule:
        """Deliver matching messages (the next ``count``; None: all) ``seconds`` later."""
        return self._add(FaultRule(FaultKind.DELAY, pattern, where, count, seconds=seconds))

    def reorder(
        self, pattern: str, *, count: int | None = 1, where: Predicate | None = None
    ) -> FaultRule:
        """Hold back the next ``count`` matching messages, each until the match after it."""
        return self._add(FaultRule(FaultKind.REORDER, pattern, where, count))

    def remove(self, rule: FaultRule) -> None:
        """Remove ``rule``; a message it holds back is delivered now."""
        if rule in self.rules:
            self.rules.remove(rule)
            self._release_held(rule)

    def clear(self) -> None:
        """Remove every rule; held messages are delivered now. Counters are kept."""
        rules, self.rules = self.rules, []
        for rule in rules:
            self._release_held(rule)

    @property
    def held(self) -> list[InboundMessage]:
        """The messages REORDER rules hold back right now."""
        return [rule.held for rule in self.rules if rule.held is not None]

    def _add(self, rule: FaultRule) -> FaultRule:
        self.rules.append(rule)
        return rule

    def _release_held(self, rule: FaultRule) -> None:
        held, rule._held = rule._held, None
        if held is not None:
            self._release(held)

    def _first(self, kind: FaultKind, message: InboundMessage) -> FaultRule | None:
        for rule in self.rules:
            if rule.kind is kind and rule.active and rule.matches(message):
                return rule
        return None

    def _drops(self, message: InboundMessage) -> bool:
        for rule in self.rules:
            if rule.kind is not FaultKind.DROP or not rule.active or not rule.matches(message):
                continue
            if rule.probability < 1.0 and self.rng.random() >= rule.probability:
                continue
            rule._consume()
            self.dropped += 1
            return True
        return False

    def _copies(self, message: InboundMessage) -> int:
        rule = self._first(FaultKind.DUPLICATE, message)
        if rule is None:
            return 1
        rule._consume()
        self.duplicated += 1
        return 2

    def _delay(self, message: InboundMessage) -> float | None:
        rule = self._first(FaultKind.DELAY, message)
        if rule is None:
            return None
        rule._consume()
        return rule.seconds

    def _reorder(self, message: InboundMessage) -> list[InboundMessage]:
        """The messages to deliver now, in order, when ``message`` arrives."""
        for rule in self.rules:
            if rule.kind is not FaultKind.REORDER or not rule.matches(message):
                continue
            if rule._held is not None:
                held, rule._held = rule._held, None
                return [message, held]
            if rule.active:
                rule._consume()
                rule._held = message
                self.reordered += 1
                return []
        return [message]


# --------------------------------------------------------------------- broker


@attrs.define(eq=False)
class _Entry:
    """One subscription as the broker routes to it."""

    tokens: tuple[str, ...]
    queue: str
    deliver: Callable[[InboundMessage], bool]
    subscription: Subscription | None


class LoopbackBroker:
    """An in-memory NATS server shared by the :class:`LoopbackTransport` s made on it.

    See the module docstring for the routing rules. ``seed`` seeds :attr:`faults`' random
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
        self._entries: dict[object, _Entry] = {}
        self._round_robin: dict[tuple[tuple[str, ...], str], int] = {}
        self._transports: list[LoopbackTransport] = []
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
        tokens = _split(subject)
        groups: set[tuple[tuple[str, ...], str]] = set()
        plain = 0
        for entry in self._entries.values():
            if _match(entry.tokens, tokens):
                if entry.queue:
                    groups.add((entry.tokens, entry.queue))
                else:
                    plain += 1
        return plain + len(groups)

    # ----------------------------------------------------------------- for the transports

    def _attach(self, transport: LoopbackTransport) -> int:
        self._transports.append(transport)
        return next(self._ids)

    def _add(self, key: object, entry: _Entry) -> None:
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
        subject = _split(message.subject)
        groups: dict[tuple[tuple[str, ...], str], list[_Entry]] = {}
        receivers = 0
        for entry in list(self._entries.values()):
            if not _match(entry.tokens, subject):
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

    def _offer(self, entry: _Entry, message: InboundMessage) -> bool:
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


# --------------------------------------------------------------------- transport


@attrs.define(eq=False)
class _Waiter:
    event: trio.Event = attrs.field(factory=trio.Event)
    reply: InboundMessage | None = None
    no_responders: bool = False


class LoopbackTransport:
    """One connection to a :class:`LoopbackBroker`; implements :class:`Transport`.

    ``name`` shows in logs and ``info``. ``default_inbound_capacity`` is the channel size of a
    subscription made without ``capacity``. ``reconnect_buffer`` is how many publishes are
    kept while the broker is down (0: they are lost). There is no outbound queue, so
    ``publish_nowait`` never raises BridgeBusy. ``run`` may be called again after it ended
    (a supervisor restart); subscriptions do not survive the end of ``run``.
    ``max_payload`` is the limit reported before the transport first connected.
    """

    def __init__(
        self,
        broker: LoopbackBroker,
        name: str = "loopback",
        *,
        default_inbound_capacity: int = 4096,
        reconnect_buffer: int = 0,
        max_payload: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self.broker = broker
        self._configured_max_payload = max_payload
        self._has_connected = False
        self.name = name
        self.default_inbound_capacity = default_inbound_capacity
        self.reconnect_buffer = reconnect_buffer
        self._state = ConnectionState.CONNECTING
        self._running = False
        self._close_reason: str | None = None
        self._closing = trio.Event()
        self._published = 0
        self._publish_errors = 0
        self._reconnects = 0
        self._subscriptions: dict[Subscription, None] = {}
        self._waiters: dict[str, _Waiter] = {}
        self._tokens = itertools.count(1)
        self._inboxes = itertools.count(1)
        self._buffer: deque[InboundMessage] = deque()
        self._inbox_prefix = f"_INBOX.loopback{broker._attach(self)}"
        broker._add(self, _Entry((*_split(self._inbox_prefix), "*"), "", self._on_reply, None))

    # ----------------------------------------------------------------- figures

    @property
    def state(self) -> ConnectionState:
        """CONNECTING before ``run``, CONNECTED while running with the broker up,
        RECONNECTING while running with the broker down, CLOSED after ``run`` ended."""
        return self._state

    @property
    def info(self) -> Mapping[str, object]:
        """A fresh snapshot: the same keys as NatsBridge's ``info``."""
        return {
            "state": self._state.value,
            "url": f"loopback://{self.name}",
            "reconnects": self._reconnects,
            "published": self._published,
            "publish_errors": self._publish_errors,
            "max_payload": self.max_payload,
            "outbound_queued": len(self._buffer),
        }

    @property
    def max_payload(self) -> int:
        """The broker's ``max_payload`` once this transport has been connected, else the
        configured one."""
        return self.broker.max_payload if self._has_connected else self._configured_max_payload

    @property
    def published(self) -> int:
        """Publishes the broker accepted (or the reconnect buffer kept), faults or not."""
        return self._published

    @property
    def publish_errors(self) -> int:
        """Publishes refused (invalid subject) or lost while the broker was down."""
        return self._publish_errors

    @property
    def reconnects(self) -> int:
        """Times the broker came back while this transport was running and had been connected."""
        return self._reconnects

    @property
    def inbound_dropped(self) -> int:
        """Messages dropped because a subscription's channel was full, over live subscriptions."""
        return sum(s.dropped for s in self._subscriptions)

    @property
    def inbox_prefix(self) -> str:
        """The prefix of this transport's reply subjects (``<prefix>.>`` targets its replies)."""
        return self._inbox_prefix

    # ----------------------------------------------------------------- Transport API

    def publish_nowait(
        self,
        subject: str,
        payload: bytes,
        headers: Mapping[str, str] | None = None,
        reply: str = "",
    ) -> None:
        """Publish now: delivered to every receiving subscription before this returns.

        An invalid subject or reply subject is counted in ``publish_errors`` and logged, not
        raised (as NatsBridge does). Never raises BridgeBusy.
        """
        message = InboundMessage(subject, payload, dict(headers) if headers else None, reply)
        if not is_valid_subject(subject) or (reply and not is_valid_subject(reply)):
            self._error(f"invalid subject {subject!r} or reply subject {reply!r}")
            return
        if len(payload) > self.broker.max_payload:
            self._error(
                f"publish on {subject!r} refused: {len(payload)} bytes, more than the broker's "
                f"max_payload of {self.broker.max_payload}"
            )
            return
        if not self.broker.up:
            if len(self._buffer) < self.reconnect_buffer:
                self._buffer.append(message)
                self._published += 1
            else:
                self.broker.lost += 1
                self._error(f"broker down, publish on {subject!r} lost")
            return
        self._published += 1
        self.broker._publish(message)

    async def publish(
        self,
        subject: str,
        payload: bytes,
        headers: Mapping[str, str] | None = None,
        reply: str = "",
    ) -> None:
        """``publish_nowait``, then a checkpoint (there is never a queue to wait for)."""
        self.publish_nowait(subject, payload, headers, reply)
        await trio.lowlevel.checkpoint()

    async def request(
        self,
        subject: str,
        payload: bytes,
        headers: Mapping[str, str] | None = None,
        *,
        timeout: float,
    ) -> InboundMessage:
        """Publish with a private reply subject and return the first answer.

        Raises RequestTimeout after ``timeout`` s without an answer; ``no_responders`` is
        True when the broker said nobody subscribes to ``subject`` (the wait still lasts the
        whole timeout). Also raises it, early, when ``run`` ends meanwhile.
        """
        token = str(next(self._tokens))
        waiter = _Waiter()
        self._waiters[token] = waiter
        try:
            with trio.move_on_after(timeout):
                await self.publish(subject, payload, headers, f"{self._inbox_prefix}.{token}")
                await waiter.event.wait()
            if waiter.reply is None:
                raise RequestTimeout(subject, timeout, no_responders=waiter.no_responders)
            return waiter.reply
        finally:
            del self._waiters[token]

    def subscribe(self, subject: str, queue: str = "", capacity: int | None = None) -> Subscription:
        """Subscribe to ``subject`` (in queue group ``queue`` when not empty); in place at once.

        ``capacity`` (default ``default_inbound_capacity``) bounds the channel. Raises
        ValueError for an invalid subject pattern (NatsBridge only logs a failed command).
        """
        tokens = _pattern_tokens(subject)
        subscription = Subscription.open(subject, queue, capacity or self.default_inbound_capacity)
        self._subscriptions[subscription] = None
        self.broker._add(subscription, _Entry(tokens, queue, subscription.offer, subscription))
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Remove one of this transport's subscriptions; its channel ends at once."""
        if subscription in self._subscriptions:
            del self._subscriptions[subscription]
            subscription.close()
            self.broker._remove(subscription)

    async def flush(self) -> None:
        """Return once the broker is up (everything published before was delivered already).

        Messages a fault delays or holds back are not waited for: they are "in the network".
        Waits through an outage; use a cancel scope to bound it.
        """
        await trio.lowlevel.checkpoint()
        await self.broker._wait_up()

    def new_inbox(self) -> str:
        """A fresh subject under this transport's inbox prefix, never used for requests."""
        return f"{self._inbox_prefix}.box.{next(self._inboxes)}"

    def close_connection(self, reason: str) -> None:
        """Make ``run`` end with LoopbackClosed (at once, or right after it next starts)."""
        log.warning("loopback transport %s: closing connection: %s", self.name, reason)
        if self._close_reason is None:
            self._close_reason = reason
        self._closing.set()

    async def run(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """Be connected until cancelled. Reports ready at once (value: this transport).

        State is CONNECTED (CONNECTING while the broker is down) until the end, then CLOSED.
        Raises LoopbackClosed after ``close_connection``. When it ends, for any reason, every
        subscription channel ends and pending requests fail with RequestTimeout.
        """
        if self._running:
            raise RuntimeError(f"loopback transport {self.name} is already running")
        self._running = True
        self._closing = trio.Event()
        self._state = ConnectionState.CONNECTED if self.broker.up else ConnectionState.CONNECTING
        self._has_connected = self._has_connected or self.broker.up
        try:
            task_status.started(self)
            if self._close_reason is None:
                await self._closing.wait()
            reason, self._close_reason = self._close_reason, None
            raise LoopbackClosed(
                f"connection of {self.name} to the loopback broker closed: {reason}"
            )
        finally:
            self._running = False
            self._state = ConnectionState.CLOSED
            self._shutdown()

    # ----------------------------------------------------------------- internals

    def _shutdown(self) -> None:
        for subscription in self._subscriptions:
            subscription.close()
            self.broker._remove(subscription)
        self._subscriptions.clear()
        for waiter in self._waiters.values():
            waiter.event.set()
        if self._buffer:
            self.broker.lost += len(self._buffer)
            self._buffer.clear()

    def _on_reply(self, message: InboundMessage) -> bool:
        waiter = self._waiters.get(message.subject.rpartition(".")[2])
        if waiter is None or waiter.event.is_set():
            return True
        headers = message.headers or {}
        if headers.get("Status") == NO_RESPONDERS_STATUS and not message.payload:
            waiter.no_responders = True
            return True
        waiter.reply = message
        waiter.event.set()
        return True

    def _error(self, text: str) -> None:
        self._publish_errors += 1
        if self._publish_errors == 1 or self._publish_errors % 1000 == 0:
            log.warning(
                "loopback transport %s: %s (%d so far)", self.name, text, self._publish_errors
            )

    def _broker_down(self) -> None:
        if self._running and self._state is ConnectionState.CONNECTED:
            self._state = ConnectionState.RECONNECTING

    def _broker_up(self) -> None:
        if not self._running:
            return
        if self._state is ConnectionState.RECONNECTING:
            self._reconnects += 1
        self._state = ConnectionState.CONNECTED
        self._has_connected = True

    def _drain_buffer(self) -> None:
        while self._buffer and self.broker.up:
            self.broker._publish(self._buffer.popleft())


if TYPE_CHECKING:

    def _is_a_transport(transport: LoopbackTransport) -> Transport:
        return transport


__all__ = [
    "FaultKind",
    "FaultRule",
    "Faults",
    "LoopbackBroker",
    "LoopbackClosed",
    "LoopbackTransport",
    "Predicate",
    "is_valid_pattern",
    "is_valid_subject",
    "subject_matches",
]
