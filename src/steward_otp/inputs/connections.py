"""Admission and time limits for the stream inputs (unix socket, TCP).

Guarantees, per input:

* At most ``max_connections`` clients are served at once. When a new client arrives at the
  limit, the client that has been *idle longest while sending its document* makes room, if
  it sent nothing for :attr:`ConnectionGate.evict_idle_after` seconds: it is told why and
  closed. Otherwise the newcomer is refused with one answer line and closed. So clients that
  hold connections open without sending never lock out one that sends, and the number of
  open connections (file descriptors) stays bounded.
* Reading a document ends after ``idle_timeout`` seconds without a byte or
  ``read_timeout`` seconds in all; the client gets an answer line saying so, and nothing
  of that document is accepted. Sending the answer is bounded by ``idle_timeout`` too.
"""

from __future__ import annotations

from typing import Final

import attrs
import trio

__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_READ_TIMEOUT",
    "EVICT_IDLE_AFTER",
    "ConnectionGate",
    "Limits",
    "Ticket",
]

DEFAULT_MAX_CONNECTIONS: Final = 256
"""Clients one stream input serves at the same time."""
DEFAULT_IDLE_TIMEOUT: Final = 10.0
"""Seconds a client may send nothing while its document is incomplete."""
DEFAULT_READ_TIMEOUT: Final = 60.0
"""Seconds a client has to send its whole document."""
EVICT_IDLE_AFTER: Final = 1.0
"""Seconds without a byte after which a client sending its document may be dropped to make
room for a new one when the input is full."""


@attrs.frozen
class Limits:
    """The limits of one stream input; see the module docstring."""

    max_connections: int = DEFAULT_MAX_CONNECTIONS
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    evict_idle_after: float = EVICT_IDLE_AFTER


@attrs.define(eq=False)
class Ticket:
    """One admitted client. ``scope`` wraps its reading; eviction cancels it."""

    admitted_at: float
    last_activity: float
    reading: bool = True
    evicted: bool = False
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)

    def touch(self) -> None:
        """Note that the client just sent something."""
        self.last_activity = trio.current_time()


class ConnectionGate:
    """Admission for one stream input (see the module docstring). Not thread-safe; used
    from the input's own tasks only."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._active: set[Ticket] = set()
        self.refused = 0
        self.evicted = 0

    @property
    def active(self) -> int:
        """Clients admitted and not yet released."""
        return len(self._active)

    def admit(self) -> Ticket | None:
        """A ticket for a new client, or None when it must be refused (the input is full
        and no client sending its document has been idle long enough to make room)."""
        now = trio.current_time()
        if len(self._active) >= self.limits.max_connections:
            victim = self._longest_idle(now)
            if victim is None:
                self.refused += 1
                return None
            self._evict(victim)
        ticket = Ticket(now, now)
        self._active.add(ticket)
        return ticket

    def release(self, ticket: Ticket) -> None:
        """Forget ``ticket`` (its client is done); idempotent."""
        self._active.discard(ticket)

    def _longest_idle(self, now: float) -> Ticket | None:
        oldest: Ticket | None = None
        threshold = now - self.limits.evict_idle_after
        for ticket in self._active:
            if not ticket.reading or ticket.last_activity > threshold:
                continue
            if oldest is None or ticket.last_activity < oldest.last_activity:
                oldest = ticket
        return oldest

    def _evict(self, ticket: Ticket) -> None:
        ticket.evicted = True
        ticket.scope.cancel()
        self._active.discard(ticket)
        self.evicted += 1

    def deadline(self, ticket: Ticket) -> float:
        """When reading ``ticket``'s document must end at the latest."""
        return ticket.admitted_at + self.limits.read_timeout
