"""The NATS bridge actor: the one door between the Trio tree and the NATS broker.

This is the only module that connects to NATS and crosses into asyncio (``trio_asyncio``).
Everything else talks to the broker through a :class:`NatsBridge` handle, whose methods are
plain Trio and never cross into asyncio themselves:

* **Outbound** — ``publish_nowait``/``publish`` put a record on one bounded Trio channel. The
  bridge's pump drains whatever is queued and crosses into asyncio *once per batch*; one
  ``aio_as_trio`` call per message would cost 40x the throughput.
* **Request/reply** — one wildcard subscription on the bridge's own inbox
  (``_INBOX.<id>.*``); each request gets a token and waits on a ``trio.Event``. Replies are
  matched by token, so concurrent requests never steal each other's answers.
* **Inbound** — ``subscribe`` returns a :class:`Subscription` with a bounded Trio receive
  channel. The nats-py callback hands messages over with ``send_nowait`` (same thread).
  Overflow policy: when a subscription's channel is full the message is **dropped and
  counted** (``Subscription.dropped``). No ACK was sent for it, so an ACK-mode sender
  retries; a NACK-mode message is fire-and-forget by definition.
* **Connection** — the bridge reports ready at once and connects in the background (a node
  whose link is down still accepts work). The first connect is retried forever; after that
  nats-py reconnects without limit. ``state`` is ``connecting``, ``connected``,
  ``reconnecting`` or ``closed``; a connection that nats-py declares closed is a crash of the
  bridge (:class:`BridgeClosed`) for its supervisor to handle.
* **Hostile frames** — the client is a :class:`HardenedClient`: a message nats-py cannot
  read (a subject or reply subject that is not UTF-8 or holds a control character, a
  broken header block) is dropped or taken without headers instead of ending its read loop
  or its connection; should the read loop end anyway
  while connected, the bridge closes the connection and so crashes with BridgeClosed for
  its supervisor to start it again. ``info`` counts ``dropped_frames`` and
  ``unreadable_headers``.
* **Limits** — ``max_payload`` is what the connected server announced in its INFO (read
  again at every reconnect: the servers of a cluster may differ); before the first
  connection, ``BridgeSettings.max_payload``. The node checks every message against it at
  input (:mod:`steward_otp.limits`).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

import trio
import trio_asyncio
from nats.aio.subscription import Subscription as NatsSubscription
from nats.nuid import NUID

from steward_otp.bridge.commands import (
    CloseConnection,
    Command,
    Flush,
    Publish,
    Subscribe,
    Unsubscribe,
)
from steward_otp.bridge.deliveries import PendingReplies, offer_to
from steward_otp.bridge.errors import BridgeClosed, BrokerRefusals, sole_exception
from steward_otp.bridge.hardened_client import HardenedClient, RefusedFrames
from steward_otp.bridge.settings import BridgeSettings, connection_options
from steward_otp.transport import (
    BridgeBusy,
    ConnectionState,
    InboundMessage,
    RequestTimeout,
    Subscription,
    inbox_prefix,
)

# Every module of the bridge logs under the bridge's one name.
log = logging.getLogger("steward_otp.bridge")


class NatsBridge:
    """Handle and actor for one node's broker connection. See the module docstring.

    The handle methods may be called from any Trio task of the same run, before or after the
    bridge is connected; work queued while disconnected is sent once the link is back (subject
    to nats-py's reconnect buffer) or, for requests, times out so the caller can retry.
    """

    def __init__(self, settings: BridgeSettings) -> None:
        self.settings = settings
        self.state = ConnectionState.CONNECTING
        # The channel itself is unbounded so that subscription changes, flushes and closes
        # always get in; publishes are held to ``outbound_capacity`` by _queue_publish.
        self._outbound_send, self._outbound_receive = trio.open_memory_channel[Command](math.inf)
        self._queued = 0
        """Commands in the outbound channel (what its statistics say, kept by hand: cheaper)."""
        self._room = trio.Event()
        self._inbox_prefix = inbox_prefix(settings.name, NUID().next().decode())
        self._replies = PendingReplies()
        self._subscriptions: set[Subscription] = set()
        self._nats_subs: dict[int, NatsSubscription] = {}
        self._inboxes = itertools.count(1)
        self._closed_for_good = False
        self._pump_scope = trio.CancelScope()
        self._nc: HardenedClient | None = None
        self._server_max_payload: int | None = None
        self._refusals = BrokerRefusals(settings)
        self.published = 0
        self.publish_errors = 0
        self.reconnects = 0
        self.refused = RefusedFrames()
        """Frames from the broker that nats-py could not read, over all connections."""
        self.info: dict[str, object] = {}
        self._update_info()

    # ----------------------------------------------------------------- handle API

    def publish_nowait(
        self,
        subject: str,
        payload: bytes,
        headers: Mapping[str, str] | None = None,
        reply: str = "",
    ) -> None:
        """Queue one publish without waiting. Raises BridgeBusy if the outbound queue is full."""
        if self._queued >= self.settings.outbound_capacity:
            raise BridgeBusy(f"outbound queue full ({self.settings.outbound_capacity} messages)")
        self._enqueue(Publish(subject, payload, headers, reply))

    async def publish(
        self,
        subject: str,
        payload: bytes,
        headers: Mapping[str, str] | None = None,
        reply: str = "",
    ) -> None:
        """Queue one publish, waiting for room in the outbound queue if needed."""
        await self._queue_publish(Publish(subject, payload, headers, reply))

    def _enqueue(self, command: Command) -> None:
        """Put ``command`` in the outbound channel (unbounded: never blocks)."""
        self._outbound_send.send_nowait(command)
        self._queued += 1

    async def _queue_publish(self, command: Publish) -> None:
        while self._queued >= self.settings.outbound_capacity:
            await self._room.wait()
        self._enqueue(command)
        await trio.lowlevel.checkpoint()

    async def request(
        self,
        subject: str,
        payload: bytes,
        headers: Mapping[str, str] | None = None,
        *,
        timeout: float,
    ) -> InboundMessage:
        """Publish with a private reply subject and wait up to ``timeout`` s for the answer.

        Raises RequestTimeout when nothing (or only the broker's "no responders" notice)
        arrives in time. Cancellation withdraws the wait; the message may still have been sent.
        """
        token, waiter = self._replies.open()
        try:
            with trio.move_on_after(timeout):
                await self._queue_publish(
                    Publish(subject, payload, headers, f"{self._inbox_prefix}.{token}")
                )
                await waiter.event.wait()
            if waiter.reply is None:
                raise RequestTimeout(subject, timeout, no_responders=waiter.no_responders)
            return waiter.reply
        finally:
            self._replies.close(token)

    def subscribe(self, subject: str, queue: str = "", capacity: int | None = None) -> Subscription:
        """Subscribe to ``subject`` (in queue group ``queue`` when given).

        Returns at once; the subscription is made on the broker as soon as the bridge is
        connected, in order with the publishes queued before it.
        """
        subscription = Subscription.open(
            subject, queue, capacity or self.settings.default_inbound_capacity
        )
        self._subscriptions.add(subscription)
        self._enqueue(Subscribe(subscription))
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Remove a subscription; its ``receive`` channel ends."""
        if subscription in self._subscriptions:
            self._subscriptions.discard(subscription)
            subscription.close()
            self._enqueue(Unsubscribe(subscription))

    async def flush(self) -> None:
        """Wait until everything queued before this call has reached the broker.

        Afterwards the broker has processed the earlier publishes and subscriptions (a
        PING/PONG round trip), so a subscription made before ``flush`` receives every message
        published after it, from any client. Waits through disconnections; use a cancel scope
        to bound it.
        """
        while True:
            command = Flush()
            self._enqueue(command)
            await command.done.wait()
            if command.ok:
                return
            await trio.sleep(self.settings.reconnect_time_wait)

    def new_inbox(self) -> str:
        """A fresh subject under this bridge's private prefix (never matched by its reply inbox)."""
        return f"{self._inbox_prefix}.box.{next(self._inboxes)}"

    def close_connection(self, reason: str) -> None:
        """Close the broker connection for good, after the work queued before this call.

        The bridge then crashes with BridgeClosed and its supervisor restarts it (and, under
        rest_for_one, everything that depends on it): a forced reconnect cycle.
        """
        self._enqueue(CloseConnection(reason))

    @property
    def max_payload(self) -> int:
        """The broker's ``max_payload`` in bytes: the connected (or last) server's INFO,
        else ``BridgeSettings.max_payload``."""
        if self._server_max_payload is not None:
            return self._server_max_payload
        return self.settings.max_payload

    @property
    def inbound_dropped(self) -> int:
        """Messages dropped because a subscription's channel was full, over live subscriptions."""
        return sum(s.dropped for s in self._subscriptions)

    # ----------------------------------------------------------------- the actor

    async def run(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the bridge: connect (retrying forever), then pump batches until cancelled.

        Reports ready immediately (value: this bridge). Raises BridgeClosed if nats-py closes
        the connection on its own. On cancellation the connection is closed (bounded by a
        short shielded timeout) and every subscription channel ends.
        """
        self._closed_for_good = False
        self._pump_scope = trio.CancelScope()
        self._set_state(ConnectionState.CONNECTING)
        try:
            async with trio_asyncio.open_loop():
                try:
                    task_status.started(self)
                    with self._pump_scope:
                        reader_stopped = trio.Event()
                        nc = await self._connect_until_up(reader_stopped.set)
                        async with trio.open_nursery() as nursery:
                            nursery.start_soon(self._restart_when_deaf, reader_stopped)
                            await self._pump(nc)
                finally:
                    self._set_state(ConnectionState.CLOSED)
                    await self._shutdown()
        except BaseExceptionGroup as group:
            # trio-asyncio's loop runs in a nursery of its own; give the supervisor the one
            # exception that ended the bridge rather than the nursery's wrapping.
            raise sole_exception(group) from None
        if self._closed_for_good:
            raise BridgeClosed(f"connection of {self.settings.name} to {self.settings.url} closed")

    async def _restart_when_deaf(self, reader_stopped: trio.Event) -> None:
        """Close the connection once nats-py has stopped reading from it (see
        :mod:`steward_otp.bridge.hardened_client`): the bridge then ends with BridgeClosed
        and its supervisor starts it again, subscriptions and all."""
        await reader_stopped.wait()
        log.error(
            "bridge %s: the NATS client stopped reading from %s (its error is logged above); "
            "closing the connection so that the bridge starts again",
            self.settings.name,
            self.settings.url,
        )
        self.close_connection("the NATS client stopped reading")

    async def _connect_until_up(self, on_reader_stopped: Callable[[], None]) -> HardenedClient:
        attempt = 0
        while True:
            attempt += 1
            nc = HardenedClient(
                self.refused, on_refused=self._update_info, on_reader_stopped=on_reader_stopped
            )
            try:
                await trio_asyncio.aio_as_trio(nc.connect)(**self._connect_options())
            except Exception as exc:  # any failure of the first connect is retried
                if attempt == 1 or attempt % 30 == 0:
                    log.warning(
                        "bridge %s: cannot reach broker %s (%s); retrying every %s s",
                        self.settings.name,
                        self.settings.url,
                        exc or type(exc).__name__,
                        self.settings.connect_retry_interval,
                    )
                await trio.sleep(self.settings.connect_retry_interval)
                continue
            self._nc = nc
            await trio_asyncio.aio_as_trio(nc.subscribe_direct)(
                f"{self._inbox_prefix}.*", self._replies.on_reply
            )
            self._note_server_limits()
            self._set_state(ConnectionState.CONNECTED)
            log.info(
                "bridge %s: connected to %s (max_payload %d bytes)",
                self.settings.name,
                self.settings.url,
                self.max_payload,
            )
            return nc

    def _connect_options(self) -> dict[str, Any]:
        return {
            **connection_options(self.settings),
            "disconnected_cb": self._on_disconnected,
            "reconnected_cb": self._on_reconnected,
            "closed_cb": self._on_closed,
            "error_cb": self._on_error,
        }

    async def _pump(self, nc: HardenedClient) -> None:
        receive = self._outbound_receive
        max_batch = self.settings.max_batch
        send_batch = trio_asyncio.aio_as_trio(self._send_batch)
        while True:
            batch = [await receive.receive()]
            while len(batch) < max_batch:
                try:
                    batch.append(receive.receive_nowait())
                except trio.WouldBlock:
                    break
            self._queued -= len(batch)
            await send_batch(nc, batch)
            self._room.set()
            self._room = trio.Event()
            self._update_info()

    async def _send_batch(self, nc: HardenedClient, batch: list[Command]) -> None:
        # Runs in asyncio: one crossing for the whole batch.
        for command in batch:
            try:
                if isinstance(command, Publish):
                    await nc.publish(
                        command.subject,
                        command.payload,
                        reply=command.reply,
                        headers=dict(command.headers) if command.headers else None,
                    )
                    self.published += 1
                elif isinstance(command, Subscribe):
                    sub = command.subscription
                    if not sub.closed:
                        self._nats_subs[id(sub)] = await nc.subscribe_direct(
                            sub.subject, offer_to(sub), queue=sub.queue
                        )
                elif isinstance(command, Flush):
                    try:
                        # nats-py writes its PING straight to the socket, ahead of commands
                        # still in its pending buffer: push those out first, so that a
                        # subscription made before this flush is in place when it returns.
                        await nc._flush_pending(force_flush=True)
                        await nc.flush()
                        command.ok = True
                    finally:
                        command.done.set()
                elif isinstance(command, CloseConnection):
                    log.warning(
                        "bridge %s: closing connection: %s", self.settings.name, command.reason
                    )
                    await nc.close()
                else:
                    nats_sub = self._nats_subs.pop(id(command.subscription), None)
                    if nats_sub is not None:
                        await nats_sub.unsubscribe()
            except Exception as exc:  # one failed command never stops the pump
                self.publish_errors += 1
                if self.publish_errors == 1 or self.publish_errors % 1000 == 0:
                    log.warning("bridge %s: %s failed: %r", self.settings.name, command, exc)

    async def _shutdown(self) -> None:
        nc, self._nc = self._nc, None
        for subscription in list(self._subscriptions):
            subscription.close()
        self._subscriptions.clear()
        self._nats_subs.clear()
        self._replies.release_all()
        if nc is None or nc.is_closed:
            return
        with trio.CancelScope(shield=True), trio.move_on_after(2):
            await trio_asyncio.aio_as_trio(nc.close)()

    # ----------------------------------------------------------------- nats-py callbacks

    async def _on_disconnected(self) -> None:
        if self.state is ConnectionState.CONNECTED:
            self._set_state(ConnectionState.RECONNECTING)
            log.warning("bridge %s: disconnected from %s", self.settings.name, self.settings.url)

    async def _on_reconnected(self) -> None:
        self.reconnects += 1
        self._note_server_limits()
        self._set_state(ConnectionState.CONNECTED)
        log.info("bridge %s: reconnected to %s", self.settings.name, self.settings.url)

    async def _on_closed(self) -> None:
        self._closed_for_good = True
        self._pump_scope.cancel()

    async def _on_error(self, exc: Exception) -> None:
        self._refusals.report(exc)

    def _note_server_limits(self) -> None:
        """Take ``max_payload`` from the INFO of the server nats-py is connected to."""
        nc = self._nc
        value = getattr(nc, "max_payload", None) if nc is not None else None
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            return
        if value != self._server_max_payload and self._server_max_payload is not None:
            log.warning(
                "bridge %s: the broker's max_payload changed from %d to %d bytes",
                self.settings.name,
                self._server_max_payload,
                value,
            )
        self._server_max_payload = value
        self._update_info()

    def _set_state(self, state: ConnectionState) -> None:
        self.state = state
        self._update_info()

    def _update_info(self) -> None:
        self.info.update(
            state=self.state.value,
            url=self.settings.url,
            reconnects=self.reconnects,
            published=self.published,
            publish_errors=self.publish_errors,
            max_payload=self.max_payload,
            outbound_queued=self._queued,
            dropped_frames=self.refused.dropped,
            unreadable_headers=self.refused.unreadable_headers,
        )
