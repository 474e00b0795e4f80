"""The full-disk backoff of a node's Publishers: per destination, with one notice for all.

When a store write of a destination is refused for a full disk (:class:`StoreFull`), that
destination backs off: no store write is tried until :attr:`Destination.full_until`, the
wait doubling from :data:`FULL_RETRY_MIN` up to :data:`FULL_RETRY_MAX` seconds (trio's
clock). Once the destination holds nothing refused any more its next backoff starts afresh,
and once no destination does, the episode is over. The error kernel hears of it through one
:class:`~steward_otp.disk_full.DiskFullNotice` for all the Publishers: a line when it
starts, a few while it lasts, one when it is over. Nothing here blocks or writes.
"""

from __future__ import annotations

import trio

from steward_otp.disk_full import DiskFullNotice
from steward_otp.outbound.destination import Destination
from steward_otp.outbound.outbox import FULL_RETRY_MAX, FULL_RETRY_MIN
from steward_otp.store import StoreFull

NOT_SENT = "not sent, their attempt could not be recorded (kept in the outbox, sent later)"
NOT_MARKED_DELIVERED = "acknowledged, waiting to be marked delivered (not sent again)"
NOT_MARKED_FAILED = "failed, waiting to be marked failed (not sent again)"


class DiskFullBackoff:
    """Starts, keeps and ends the full-disk backoff of each destination of the Publishers."""

    def __init__(self, notice: DiskFullNotice) -> None:
        self.notice = notice
        """Tells the error kernel, sparingly, of writes refused for a full disk."""
        self._full_destinations: set[int] = set()
        """The destinations (by ``id``) holding writes a full disk refused."""

    def refused(self, dest: Destination, count: int, what: str, error: StoreFull) -> None:
        """A write for ``count`` messages of ``dest`` met a full disk: start (or keep) its
        backoff, wake its pump, tell the notice."""
        if count:
            self.notice.refused_messages(count, what, error)
        self._full_destinations.add(id(dest))
        now = trio.current_time()
        if now >= dest.full_until:
            dest.full_until = now + dest.full_delay
            dest.full_delay = min(2 * dest.full_delay, FULL_RETRY_MAX)
        dest.wake.set()

    def stored(self, dest: Destination) -> None:
        """A write of ``dest`` committed: once it holds nothing refused, its backoff starts
        afresh, and once no destination does, the notice ends the episode."""
        if id(dest) not in self._full_destinations or dest.held_for_disk:
            return
        dest.full_delay = FULL_RETRY_MIN
        self._full_destinations.discard(id(dest))
        if not self._full_destinations:
            self.notice.cleared()

    def forget(self, dest: Destination) -> None:
        """``dest``'s Publisher run has ended: it holds nothing any more."""
        self._full_destinations.discard(id(dest))
