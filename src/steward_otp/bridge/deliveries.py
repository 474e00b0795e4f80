"""Where the messages nats-py receives for the bridge land: replies and subscriptions.

Both are called from nats-py's read loop (see
:meth:`~steward_otp.bridge.hardened_client.HardenedClient.subscribe_direct`) on the
trio-asyncio loop, in the same thread as the Trio tasks, so they hand messages over without
blocking and without locks:

* :class:`PendingReplies` -- the requests awaiting an answer on the bridge's private inbox,
  one token each. The first answer to a token counts; later ones, and answers to a
  withdrawn request, are dropped. The broker's "no responders" notice is noted, not taken
  as the answer: the request waits out its timeout, which paces the caller's retries.
* :func:`offer_to` -- the callback of one subscription: it offers each message to the
  subscription's bounded Trio channel, which drops and counts what does not fit.
"""

from __future__ import annotations

import itertools

import attrs
import trio

from steward_otp.bridge.hardened_client import Deliver
from steward_otp.transport import NO_RESPONDERS_STATUS, InboundMessage, Subscription


@attrs.define(eq=False)
class ReplyWaiter:
    """One request's wait for its answer: the first reply, and whether nobody listened."""

    event: trio.Event = attrs.field(factory=trio.Event)
    reply: InboundMessage | None = None
    no_responders: bool = False


class PendingReplies:
    """The requests of one bridge waiting for their answers, by the token ending their reply
    subject."""

    def __init__(self) -> None:
        self._tokens = itertools.count(1)
        self._waiters: dict[str, ReplyWaiter] = {}

    def open(self) -> tuple[str, ReplyWaiter]:
        """A fresh token and the waiter its answer goes to, until :meth:`close`."""
        token = str(next(self._tokens))
        waiter = ReplyWaiter()
        self._waiters[token] = waiter
        return token, waiter

    def close(self, token: str) -> None:
        """Withdraw the wait for ``token``'s answer."""
        del self._waiters[token]

    def release_all(self) -> None:
        """Wake every waiting request without an answer (the bridge stops)."""
        for waiter in self._waiters.values():
            waiter.event.set()

    def on_reply(
        self, subject: str, payload: bytes, headers: dict[str, str] | None, reply: str
    ) -> None:
        """Takes each message of the bridge's reply inbox."""
        waiter = self._waiters.get(subject.rpartition(".")[2])
        if waiter is None or waiter.event.is_set():
            return  # unknown, withdrawn, or answered already: the first answer counts
        if (headers or {}).get("Status") == NO_RESPONDERS_STATUS and not payload:
            # Keep waiting out the timeout: the caller paces its retries by ACKTimeout.
            waiter.no_responders = True
            return
        waiter.reply = InboundMessage(subject, payload, headers, reply)
        waiter.event.set()


def offer_to(subscription: Subscription) -> Deliver:
    """What feeds ``subscription`` from nats-py's read loop.

    It runs on the trio-asyncio loop: the same thread as the Trio tasks, so handing the
    message to the Trio channel with ``offer`` (never blocking) is safe.
    """

    def on_message(
        subject: str, payload: bytes, headers: dict[str, str] | None, reply: str
    ) -> None:
        subscription.offer(InboundMessage(subject, payload, headers, reply))

    return on_message
