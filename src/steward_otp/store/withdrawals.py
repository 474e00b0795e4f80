"""The messages an operator took out of the outbox's active states, for the Publishers.

A Publisher sends a message for the first time without a store write (the message is
durable already; its in-flight mark is written later, see
:mod:`steward_otp.outbound.publisher`). What tells it that an operator cancelled or purged a
message it still holds unsent is this set: the store adds every id a ``cancel`` or ``purge``
takes out of ``queued``/``in_flight`` *before* that change commits, and a Publisher takes
the ids it is about to send out of it first. So once ``Store.cancel`` or ``Store.purge``
returned, no message it removed is sent for the first time any more. (A message already
sent stays as it was: its next retry finds it inactive in the store.)

Ids are added from the store's worker thread and taken from Trio's thread; each step is one
dict operation, atomic under the GIL.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

WITHDRAWALS_KEPT: Final = 100_000
"""Ids remembered at most; the oldest go first. A forgotten id matters only for a message
still waiting for its first send that long after it was withdrawn."""


class Withdrawals:
    """Ids withdrawn from the outbox's active states by an operator, in order."""

    def __init__(self, capacity: int = WITHDRAWALS_KEPT) -> None:
        self._ids: dict[str, None] = {}
        self._capacity = capacity

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, msg_id: object) -> bool:
        return msg_id in self._ids

    def add(self, msg_ids: Iterable[str]) -> None:
        """Remember ``msg_ids`` as withdrawn (the oldest are forgotten beyond capacity)."""
        ids = self._ids
        for msg_id in msg_ids:
            ids[msg_id] = None
        while len(ids) > self._capacity:
            ids.pop(next(iter(ids)), None)

    def discard(self, msg_ids: Iterable[str]) -> None:
        """Forget ``msg_ids``: active again (re-queued or enqueued anew), sendable."""
        if self._ids:
            for msg_id in msg_ids:
                self._ids.pop(msg_id, None)

    def take(self, msg_ids: Iterable[str]) -> set[str]:
        """The withdrawn ones among ``msg_ids``, forgotten here (their sender drops them)."""
        if not self._ids:
            return set()
        ids = self._ids
        return {msg_id for msg_id in msg_ids if ids.pop(msg_id, 0) is None}
