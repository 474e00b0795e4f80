"""The loopback transport: one client connection to a loopback broker, as a :class:`Transport`.

:class:`LoopbackTransport` implements :class:`~steward_otp.transport.Transport` on a
:class:`~steward_otp.loopback.broker.LoopbackBroker`: publish, request with a private reply
inbox, subscribe (with queue groups), flush, a connection state that follows the broker's
outages, and a reconnect buffer. ``run`` stands for the connection's life; when it ends,
every subscription channel ends and pending requests fail.

Guarantees: it never raises BridgeBusy (there is no outbound queue); an invalid subject, an
oversized payload or a publish lost in an outage is counted and logged, not raised, as
NatsBridge does; the reconnect buffer is delivered in order when the broker returns.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs
import trio

from steward_otp.limits import MAX_MESSAGE_BYTES
from steward_otp.loopback.broker import LoopbackBroker, RouteEntry
from steward_otp.loopback.subjects import is_valid_subject, pattern_tokens, split_subject
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


class LoopbackClosed(TransportError):
    """``close_connection`` was called; the transport's ``run`` ends with this error."""


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
        broker._add(
            self, RouteEntry((*split_subject(self._inbox_prefix), "*"), "", self._on_reply, None)
        )

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
        tokens = pattern_tokens(subject)
        subscription = Subscription.open(subject, queue, capacity or self.default_inbound_capacity)
        self._subscriptions[subscription] = None
        self.broker._add(subscription, RouteEntry(tokens, queue, subscription.offer, subscription))
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
