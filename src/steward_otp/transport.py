"""The transport seam: what the delivery path needs from a message broker, and nothing more.

Everything above the broker connection (publishers, subscribers, the node) takes a
:class:`Transport`. Two implementations exist:

* :class:`steward_otp.bridge.NatsBridge` — the one actor that talks to a real NATS server;
* :class:`steward_otp.loopback.LoopbackTransport` — an in-memory broker for tests and
  embedding, with the same subject, wildcard and queue-group semantics, and on-demand faults.

Semantics every implementation keeps (the delivery path relies on them):

* ``publish_nowait``/``publish`` queue a message; messages one transport publishes reach a
  given subscription in the order they were published (NATS's per-publisher ordering).
* ``subscribe(subject, queue)`` returns at once; after ``flush`` the subscription is in place
  on the broker. Subjects are dot-separated tokens; ``*`` matches one token, ``>`` the rest.
  Subscriptions sharing a non-empty ``queue`` name on the same subject share the messages:
  each message goes to one of them.
* A subscription's channel is bounded: when full, the message is dropped and counted
  (``Subscription.dropped``), never blocking the broker.
* ``request`` publishes with a private reply subject and waits for the first answer.
* ``run`` may be started again after it ended (a supervisor restart); when it ends, every
  subscription channel ends and pending requests fail with RequestTimeout.
* ``new_inbox`` names a subject nobody else will ever publish on by accident.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from typing import Any, Protocol

import attrs
import trio

log = logging.getLogger(__name__)

NO_RESPONDERS_STATUS = "503"
"""The ``Status`` header of the broker's "nobody subscribes to that subject" answer."""


class ConnectionState(enum.Enum):
    """Where a transport's broker connection stands."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


class TransportError(Exception):
    """Base class of the transports' errors."""


class BridgeBusy(TransportError):
    """The outbound queue is full; ``publish`` (the awaiting variant) waits instead."""


class RequestTimeout(TransportError):
    """No reply arrived in time. ``no_responders`` tells whether the broker said nobody listens."""

    def __init__(self, subject: str, timeout: float, *, no_responders: bool) -> None:
        why = "no subscriber on the subject" if no_responders else "no reply"
        super().__init__(f"request on {subject!r} timed out after {timeout} s ({why})")
        self.subject = subject
        self.timeout = timeout
        self.no_responders = no_responders


@attrs.frozen
class InboundMessage:
    """One message received from the broker."""

    subject: str
    payload: bytes
    headers: Mapping[str, str] | None = None
    reply: str = ""


@attrs.define(eq=False)
class Subscription:
    """A live subscription: read its messages from ``receive``.

    ``receive`` ends (``trio.EndOfChannel``) when the subscription is removed or the
    transport stops; a subscriber treats that as "the connection went away" and is restarted.
    """

    subject: str
    queue: str
    receive: trio.MemoryReceiveChannel[InboundMessage]
    _send: trio.MemorySendChannel[InboundMessage]
    dropped: int = 0
    delivered: int = 0
    closed: bool = False

    @classmethod
    def open(cls, subject: str, queue: str, capacity: int) -> Subscription:
        """A new subscription whose channel holds up to ``capacity`` messages."""
        send, receive = trio.open_memory_channel[InboundMessage](capacity)
        return cls(subject, queue, receive, send)

    def offer(self, item: InboundMessage) -> bool:
        """Hand ``item`` to the reader without blocking; False when dropped (full or closed)."""
        if self.closed:
            return False
        try:
            self._send.send_nowait(item)
        except trio.WouldBlock:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning(
                    "subscription %s: inbound channel full, dropped %d message(s)",
                    self.subject,
                    self.dropped,
                )
            return False
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            self.closed = True
            return False
        self.delivered += 1
        return True

    def close(self) -> None:
        """End the reader's channel; later offers are refused."""
        self.closed = True
        self._send.close()


class Transport(Protocol):
    """A broker connection as the delivery path sees it. See the module docstring."""

    @property
    def state(self) -> ConnectionState:
        """Where the connection stands."""

    @property
    def info(self) -> Mapping[str, object]:
        """Live figures for the supervision tree view."""

    @property
    def max_payload(self) -> int:
        """The largest payload, in bytes, the broker accepts: the ``max_payload`` of the
        server's INFO once connected (the last server's while reconnecting); before the
        first connection, the configured value (nats-server's default, 1 MiB)."""

    @property
    def published(self) -> int:
        """Messages handed to the broker so far."""

    @property
    def publish_errors(self) -> int:
        """Commands the broker refused or that failed on the way."""

    @property
    def reconnects(self) -> int:
        """Times the connection came back after a loss."""

    @property
    def inbound_dropped(self) -> int:
        """Messages dropped because a subscription's channel was full."""

    def publish_nowait(
        self,
        subject: str,
        payload: bytes,
        headers: Mapping[str, str] | None = None,
        reply: str = "",
    ) -> None:
        """Queue one publish without waiting; may raise BridgeBusy when a queue is full."""

    async def publish(
        self,
        subject: str,
        payload: bytes,
        headers: Mapping[str, str] | None = None,
        reply: str = "",
    ) -> None:
        """Queue one publish, waiting for room if needed."""

    async def request(
        self,
        subject: str,
        payload: bytes,
        headers: Mapping[str, str] | None = None,
        *,
        timeout: float,
    ) -> InboundMessage:
        """Publish with a private reply subject; the first answer, or RequestTimeout."""

    def subscribe(self, subject: str, queue: str = "", capacity: int | None = None) -> Subscription:
        """Subscribe to ``subject`` (in queue group ``queue`` when not empty)."""

    def unsubscribe(self, subscription: Subscription) -> None:
        """Remove a subscription; its channel ends."""

    async def flush(self) -> None:
        """Wait until everything queued before this call has reached the broker."""

    def new_inbox(self) -> str:
        """A fresh subject private to this transport (for replies and ACKs)."""

    def close_connection(self, reason: str) -> None:
        """Drop the connection for good; ``run`` then ends with an error (a forced restart)."""

    async def run(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """The transport's process in the supervision tree; ready at once."""


INBOX_PREFIX = "_SOTP.INBOX"
"""Where every node's reply inboxes live: ``_SOTP.INBOX.<node token>.<random>.*``, so that
broker permissions can give each node its own (see ``security/broker_config.py``)."""


def inbox_prefix(node: str, unique: str) -> str:
    """The reply-inbox prefix of one connection of ``node``: its name as one subject token
    (``.`` written as ``/``, which node names cannot contain), then ``unique``."""
    return f"{INBOX_PREFIX}.{node.replace('.', '/')}.{unique}"


def live_info(transport: Transport) -> dict[str, object]:
    """What the ``bridge`` process publishes in the tree snapshot (and the metrics read): the
    transport's ``info`` with its state and counters read now."""
    return dict(
        transport.info,
        state=transport.state.value,
        reconnects=transport.reconnects,
        published=transport.published,
        publish_errors=transport.publish_errors,
    )


__all__ = [
    "INBOX_PREFIX",
    "NO_RESPONDERS_STATUS",
    "BridgeBusy",
    "ConnectionState",
    "InboundMessage",
    "RequestTimeout",
    "Subscription",
    "Transport",
    "TransportError",
    "inbox_prefix",
    "live_info",
]
