"""Who waits for the replies to which message: a small in-memory publish/subscribe keyed
by message id, behind the control socket's ``replies`` operation (``steward-otp cmd``,
``steward-otp send --wait``).

A waiter registers the ids of the messages it follows (:meth:`ReplyHub.watch`); the node
publishes, right after the store committed it:

* every inbound message whose handler finished (:meth:`ReplyHub.finished`, called by the
  Subscribers): a reply is news to whoever waits for the id in its ``previousMessage``. It
  is handed over whole, so the waiter needs no read of the audit log, and a reply larger
  than the audit log keeps is seen too;
* every outbound message that left the outbox, delivered, failed or cancelled
  (:meth:`ReplyHub.outcomes`, from :class:`NotifyingStore`), keyed by its own id; the waiter
  reads that message's few audit records (an indexed read) for the details;
* a purge (:meth:`ReplyHub.outcomes_unknown`): the store does not say which ids went, so
  every waiter reads the audit log from where it is.

Publishing never blocks nor fails: a waiter holds up to ``capacity`` notices; past that it
is marked *overflowed* and reads the audit log from its position instead (nothing is lost).
Without waiters a publish is a dictionary look-up per message.
"""

from __future__ import annotations

import collections
import contextlib
import math
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import attrs
import trio

from steward_otp.message import Message
from steward_otp.store import DEFAULT_PURGE_STATES, OutboxState, Store

CAPACITY: Final = 10_000
"""Notices one waiter holds before it falls back to reading the audit log."""


@attrs.frozen
class ReplyNotice:
    """A reply to the watched message ``request_id`` finished its handler at ``time``."""

    request_id: str
    message: Message
    time: float


@attrs.frozen
class OutcomeNotice:
    """The watched outbound message ``msg_id`` left the outbox (the audit log has how)."""

    msg_id: str


Notice = ReplyNotice | OutcomeNotice


class Waiter:
    """One watch's mailbox: the notices for its ids, in the order published."""

    def __init__(self, ids: Collection[str], capacity: int = CAPACITY) -> None:
        self.ids = frozenset(ids)
        self.capacity = capacity
        self.overflowed = False
        """Notices were dropped (or the store could not say which ids changed): read the
        audit log from your position."""
        self._notices: collections.deque[Notice] = collections.deque()
        self._wake = trio.Event()

    def put(self, notice: Notice) -> None:
        """Queue ``notice``; never blocks."""
        if len(self._notices) >= self.capacity:
            self.overflowed = True
        else:
            self._notices.append(notice)
        self._wake.set()

    def lost_track(self) -> None:
        """Something changed that this waiter cannot be told precisely."""
        self.overflowed = True
        self._wake.set()

    def take(self) -> tuple[list[Notice], bool]:
        """The queued notices and whether some were lost since the last take (then read the
        audit log); empties the mailbox."""
        notices = list(self._notices)
        overflowed = self.overflowed
        self._notices.clear()
        self.overflowed = False
        self._wake = trio.Event()
        return notices, overflowed

    @property
    def pending(self) -> bool:
        """Whether something waits to be taken."""
        return bool(self._notices) or self.overflowed

    async def wait(self, deadline: float = math.inf) -> None:
        """Return once a notice is queued, or at ``deadline`` (trio time)."""
        if self.pending:
            return
        with trio.move_on_at(deadline):
            await self._wake.wait()


class ReplyHub:
    """The node's waiters, keyed by the ids they watch. See the module docstring."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._by_id: dict[str, set[Waiter]] = {}
        self._waiters: set[Waiter] = set()

    @property
    def waiters(self) -> int:
        """How many watches are open."""
        return len(self._waiters)

    @contextlib.contextmanager
    def watch(self, ids: Collection[str]) -> Iterator[Waiter]:
        """A waiter for ``ids``, registered for the ``with`` block."""
        waiter = Waiter(ids, self.capacity)
        self._waiters.add(waiter)
        for msg_id in waiter.ids:
            self._by_id.setdefault(msg_id, set()).add(waiter)
        try:
            yield waiter
        finally:
            self._waiters.discard(waiter)
            for msg_id in waiter.ids:
                watching = self._by_id.get(msg_id)
                if watching is not None:
                    watching.discard(waiter)
                    if not watching:
                        del self._by_id[msg_id]

    def finished(self, messages: Sequence[Message]) -> None:
        """Inbound ``messages`` whose handler finished (and is audited): the replies among
        them go to whoever waits for the message they answer."""
        if not self._by_id:
            return
        now = time.time()
        for message in messages:
            request = message.previous_message
            if request is None:
                continue
            for waiter in self._by_id.get(request.id, ()):
                waiter.put(ReplyNotice(request.id, message, now))

    def outcomes(self, msg_ids: Iterable[str]) -> None:
        """Outbound messages ``msg_ids`` left the outbox (delivered, failed, cancelled)."""
        if not self._by_id:
            return
        for msg_id in msg_ids:
            for waiter in self._by_id.get(msg_id, ()):
                waiter.put(OutcomeNotice(msg_id))

    def outcomes_unknown(self) -> None:
        """Some outbound messages left the outbox, which ones is not known (a purge)."""
        for waiter in self._waiters:
            waiter.lost_track()


class NotifyingStore(Store):
    """The node's store: tells ``hub`` about each outbound message that leaves the outbox,
    once the change is committed. Everything else is :class:`~steward_otp.store.Store`."""

    def __init__(self, path: str | Path, *, hub: ReplyHub, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self.hub = hub

    async def mark_delivered_many(self, msg_ids: Sequence[str]) -> list[str]:
        """See :meth:`Store.mark_delivered_many`."""
        found = await super().mark_delivered_many(msg_ids)
        self.hub.outcomes(found)
        return found

    async def mark_delivered(self, msg_id: str) -> bool:
        """See :meth:`Store.mark_delivered`."""
        found = await super().mark_delivered(msg_id)
        if found:
            self.hub.outcomes([msg_id])
        return found

    async def mark_failed(self, msg_id: str, reason: str) -> bool:
        """See :meth:`Store.mark_failed`."""
        done = await super().mark_failed(msg_id, reason)
        if done:
            self.hub.outcomes([msg_id])
        return done

    async def cancel(self, msg_id: str, reason: str = "cancelled by operator") -> bool:
        """See :meth:`Store.cancel`."""
        done = await super().cancel(msg_id, reason)
        if done:
            self.hub.outcomes([msg_id])
        return done

    async def purge(
        self,
        *,
        to_node: str | None = None,
        older_than_seconds: float | None = None,
        states: Iterable[OutboxState | str] = DEFAULT_PURGE_STATES,
    ) -> int:
        """See :meth:`Store.purge`."""
        purged = await super().purge(
            to_node=to_node, older_than_seconds=older_than_seconds, states=states
        )
        if purged:
            self.hub.outcomes_unknown()
        return purged
