"""One ACK subscription for every Publisher of a node.

Each Publisher needs a reply subject of its own, on which the ACKs for what it sent come
back. With a subscription per Publisher, a fan-out to 1,000 destinations subscribes (and
later unsubscribes) 1,000 times at the broker, a crossing into the transport each, and
keeps 1,000 channels and reader tasks. :class:`AckInboxes` subscribes once, to
``<inbox>.>`` (``<inbox>`` a fresh private inbox of the transport, so broker permissions
that allow a node its own inboxes allow this too), and gives each Publisher the subject
``<inbox>.<token>``: a message arriving on ``<inbox>.<token>`` or anything below it (a
JetStream publish's reply subject ``<inbox>.<token>.<n>``) is handed to the Publisher that
registered ``<token>``. Handing over never blocks (the Publisher's callback only queues).

It is a supervised process of the outbound supervisor, started before the Publishers: when
it stops, its subscription goes, and the Publishers registered with it are restarted with it
(``one_for_all``), each registering again.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, Final

import trio

from steward_otp.transport import InboundMessage, Transport

__all__ = ["ACK_SUBSCRIPTION_CAPACITY", "AckInboxes", "AckInboxesNotRunning"]

ACK_SUBSCRIPTION_CAPACITY: Final = 1 << 18
"""ACKs the shared subscription holds before it drops (an ACK dropped is one the sender
waits for in vain: it sends again after its ACK timeout, and the receiver ACKs again)."""

Deliver = Callable[[InboundMessage], None]


class AckInboxesNotRunning(RuntimeError):
    """:meth:`AckInboxes.register` was called while the shared subscription is not up."""


class AckInboxes:
    """The node's shared ACK subscription and who gets what arrives on it."""

    def __init__(self, transport: Transport, *, capacity: int = ACK_SUBSCRIPTION_CAPACITY) -> None:
        self.transport = transport
        self.capacity = capacity
        self._base: str | None = None
        self._routes: dict[str, Deliver] = {}
        self._tokens = itertools.count(1)
        self.handed_over = 0
        """Messages given to a registered Publisher."""
        self.unclaimed = 0
        """Messages for a token nobody holds (a Publisher that has stopped since)."""

    @property
    def registered(self) -> int:
        """Publishers registered now."""
        return len(self._routes)

    async def run(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """Subscribe and hand over until cancelled; ready once the subscription is queued."""
        base = self.transport.new_inbox()
        subscription = self.transport.subscribe(f"{base}.>", capacity=self.capacity)
        self._base, self._routes = base, {}
        skip = len(base) + 1
        try:
            task_status.started()
            receive = subscription.receive
            async for first in receive:
                inbound: InboundMessage | None = first
                while inbound is not None:  # all that waits, in one wake-up
                    token = inbound.subject[skip:].partition(".")[0]
                    deliver = self._routes.get(token)
                    if deliver is None:
                        self.unclaimed += 1
                    else:
                        self.handed_over += 1
                        deliver(inbound)
                    try:
                        inbound = receive.receive_nowait()
                    except trio.WouldBlock:
                        inbound = None
        finally:
            self._base, self._routes = None, {}
            self.transport.unsubscribe(subscription)

    def register(self, deliver: Deliver) -> str:
        """A reply subject of its own for the caller: what arrives on it (or below it) is
        passed to ``deliver``, which must not block, until :meth:`unregister`. Raises
        :class:`AckInboxesNotRunning` while the shared subscription is not up."""
        if self._base is None:
            raise AckInboxesNotRunning("the node's ACK subscription is not running")
        token = str(next(self._tokens))
        self._routes[token] = deliver
        return f"{self._base}.{token}"

    def unregister(self, inbox: str) -> None:
        """Stop handing over what arrives on ``inbox`` (one :meth:`register` returned)."""
        base, _, token = inbox.rpartition(".")
        if base == self._base:
            self._routes.pop(token, None)

    def info(self) -> dict[str, object]:
        """Live figures for the supervision tree."""
        return {
            "registered": self.registered,
            "handed_over": self.handed_over,
            "unclaimed": self.unclaimed,
        }
