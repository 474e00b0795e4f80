"""Faults a test injects into the loopback broker: drop, drop rate, duplicate, delay, reorder.

:class:`Faults` holds the rules (:class:`FaultRule`) in the order they were added and tells
the broker, for each message entering it, whether it is lost, how many copies arrive, how
late, and which held-back message goes with it. It keeps counters of what it did. It never
routes anything itself: a message it releases (a held one, when its rule is removed) goes to
the ``release`` function the broker gives it.

Guarantees: rules act in the order they were added, the first matching rule of each kind
acts; random draws come from one seeded generator and are made only for matching messages,
so the same seed and the same message sequence give the same faults.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable

import attrs

from steward_otp.loopback.subjects import pattern_tokens, split_subject, tokens_match
from steward_otp.transport import InboundMessage

Predicate = Callable[[InboundMessage], bool]
"""A test on a message, to narrow a :class:`Faults` rule (``where=``)."""


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
        self._tokens = pattern_tokens(self.pattern)
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
        return tokens_match(self._tokens, split_subject(message.subject)) and (
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
