"""Outbound: the durable outbox entry point, the Router, and one Publisher per destination.

Flow: ``Outbox.submit`` makes messages durable in the store and tells the Router; the Router
hands each message to the Publisher for its ``(toNode, method)``, started on demand under a
DynamicSupervisor and stopped after ``keep_publishers_alive_for`` idle seconds; the Publisher
delivers every message in its own task, so one slow or offline destination never holds up
another, nor another message to the same destination.

Delivery of one message (Steward §3.5, with a private reply inbox per message):

* ``ACKTimeout < 1`` — publish once (fire and forget), then delivered.
* ``ACKTimeout >= 1`` — up to ``retries + 1`` attempts; each waits ``ACKTimeout`` s for the
  receiver's ACK, then ``retryWait`` s before the next. When they run out the message is
  marked failed in the store (it stays there for an operator to re-queue or purge) and the
  "max retries reached" line goes to the central error log (never for REQErrorLog itself).

Nothing is lost when any of these processes crash: the store holds every undelivered
message, and the Router re-reads it on start and every ``sweep_interval`` seconds.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import trio

from steward_otp import codec
from steward_otp.errors import ERROR_LOG_METHOD
from steward_otp.handlers.base import Level
from steward_otp.message import (
    LOCAL_NODE,
    Message,
    MessageDefaults,
    apply_defaults,
    ensure_id,
    subject_for,
    uses_ack,
)
from steward_otp.methods import MethodTable
from steward_otp.store import Store
from steward_otp.store_schema import OutboxEntry, OutboxRow
from steward_otp.supervisors import DynamicSupervisor, current_child
from steward_otp.transport import RequestTimeout, Transport

log = logging.getLogger(__name__)

NACK_FLUSH_TIMEOUT = 10.0
"""Seconds a fire-and-forget message may take to reach the broker before it is retried."""


@attrs.frozen
class Dispatch:
    """A durable message for the Router to hand to its Publisher."""

    message: Message


@attrs.frozen
class Finished:
    """A Publisher is done with a message (``delivered`` False: it gave it back unfinished)."""

    msg_id: str
    delivered: bool


RouterMail = Dispatch | Finished


RELAY_METHOD = "REQRelay"


def relay_hop(message: Message, own_node: str) -> str | None:
    """The node ``message`` must travel through first, or None to send it directly.

    A request names it in ``relayViaNode``; a reply inherits it from the request it answers,
    so replies come back the way the request went. The relay node itself, and a relay node
    that is the destination anyway, send directly.
    """
    via = message.relay_via_node
    if not via and message.is_reply and message.previous_message is not None:
        via = message.previous_message.relay_via_node
    if via == LOCAL_NODE:
        via = own_node
    if not via or via in (own_node, message.to_node):
        return None
    return via


def relay_envelope(message: Message, via: str, own_node: str) -> Message:
    """``message`` wrapped in a REQRelay to ``via``, which forwards it to its ``toNode``.

    The envelope carries the message whole (its id, fromNode and delivery settings travel
    with it) and is delivered with the message's own ACK/retry settings.
    """
    return Message(
        id=f"{message.id}>{via}",
        to_node=via,
        from_node=own_node,
        method=RELAY_METHOD,
        data=codec.encode(message, compress_threshold=None).payload,
        ack_timeout=message.ack_timeout,
        retries=message.retries,
        retry_wait=message.retry_wait,
        method_timeout=message.method_timeout,
        reply_method="REQNone",
        relay_original_method=message.method,
    )


def max_retries_text(message: Message, subject: str) -> str:
    """Steward's MAX-RETRIES line for ``message`` published on ``subject``."""
    return (
        f"info: toNode: {message.to_node}, fromNode: {message.from_node}, subject: {subject}, "
        f"methodArgs: [{' '.join(message.method_args)}]: max retries reached, check if node is "
        "up and running and if it got a subscriber started for the given REQ type"
    )


@attrs.define
class DeliveryStats:
    """Counters of one node's outbound side (Steward's metric names in comments)."""

    delivered: int = 0  # steward_nats_delivered_total
    failed: int = 0  # steward_nats_messages_failed_acks_total
    missed_acks: int = 0  # steward_nats_messages_missed_acks_total
    accepted: int = 0


class Outbox:
    """The only way into the outbound side: durable first, then routed.

    ``submit`` fills in what a message lacks (an id, ``fromNode`` = this node, Steward's
    defaults), writes the messages to the store and returns their ids once they are on disk.
    The Router's mailbox outlives restarts of the Router.
    """

    def __init__(
        self,
        store: Store,
        node_name: str,
        *,
        table: MethodTable,
        defaults: MessageDefaults,
        compress_threshold: int | None,
        mailbox_capacity: int = 100_000,
    ) -> None:
        self.store = store
        self.node_name = node_name
        self.table = table
        self.defaults = defaults
        self.compress_threshold = compress_threshold
        self.stats = DeliveryStats()
        self.mail_send, self.mail_receive = trio.open_memory_channel[RouterMail](mailbox_capacity)

    def prepare(self, message: Message) -> Message:
        """``message`` as it will be stored: with id, fromNode and defaults.

        Raises ``UnknownMethodError`` for a method this node's table does not know and
        ``ValueError`` for a message without ``toNode`` (fan it out first): such a message
        could never be routed, so it is refused before anything is stored.
        """
        self.table.require(message.method)
        if not message.to_node:
            raise ValueError(
                f'message {message.method}: field "toNode" is empty; fan out "toNodes" first'
            )
        if not message.from_node:
            message = attrs.evolve(message, from_node=self.node_name)
        message = apply_defaults(ensure_id(message), self.defaults)
        via = relay_hop(message, self.node_name)
        return message if via is None else relay_envelope(message, via, self.node_name)

    async def submit(self, messages: Sequence[Message]) -> list[str]:
        """Make ``messages`` durable and route them; returns their ids (in order).

        When this returns every message is on disk. A message whose id the outbox already
        holds (a resubmission) is not stored or routed twice. A message that cannot be routed
        (see :meth:`prepare`) fails the whole call before anything is stored. Cancellation
        after the write leaves the messages durable; the Router's sweep routes them.
        """
        prepared = [self.prepare(m) for m in messages]
        now = time.time()
        entries = [
            OutboxEntry(
                msg_id=m.id,
                to_node=m.to_node,
                method=m.method,
                payload=codec.encode(m, compress_threshold=None).payload,
                created_at=now,
                not_before=now,
            )
            for m in prepared
        ]
        new_ids = set(await self.store.enqueue(entries))
        self.stats.accepted += len(new_ids)
        for message in prepared:
            if message.id in new_ids:
                # When the mailbox is full the Router's sweep finds the message in the store.
                with contextlib.suppress(trio.WouldBlock):
                    self.mail_send.send_nowait(Dispatch(message))
        return [m.id for m in prepared]


PublisherFactory = Callable[..., Any]


class Router:
    """Supervised process: hands each durable message to the Publisher of its destination.

    On start, and every ``sweep_interval`` seconds, it reads the undelivered messages from
    the store (oldest first) and routes those no Publisher holds, so messages survive crashes
    of any outbound process and of the whole node.
    """

    def __init__(
        self, outbox: Outbox, publishers: DynamicSupervisor, *, sweep_interval: float = 5.0
    ) -> None:
        self.outbox = outbox
        self.publishers = publishers
        self.sweep_interval = sweep_interval
        self._held: set[str] = set()

    async def run(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """Route until cancelled. Ready once the recovery list is routed."""
        self._held = set()
        await self._sweep()
        task_status.started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._sweep_periodically)
            async for mail in self.outbox.mail_receive:
                if isinstance(mail, Finished):
                    self._held.discard(mail.msg_id)
                else:
                    await self._route(mail.message)

    async def _sweep_periodically(self) -> None:
        while True:
            await trio.sleep(self.sweep_interval)
            await self._sweep()

    async def _sweep(self) -> None:
        rows = await self.outbox.store.pending()
        for row in rows:
            if row.msg_id not in self._held:
                message = _message_from_row(row)
                if message is not None:
                    await self._route(message)

    async def _route(self, message: Message) -> None:
        if message.id in self._held:
            return
        self._held.add(message.id)
        key = publisher_id(message.to_node, message.method)
        while True:
            inbox = await self.publishers.start_child(key, message.to_node, message.method)
            try:
                inbox.send_nowait(message)  # the inbox is unbounded
                return
            except (trio.ClosedResourceError, trio.BrokenResourceError, AttributeError):
                # The Publisher stopped (idle, or crashed) between lookup and send: start
                # a fresh one and try again.
                await trio.lowlevel.checkpoint()


def publisher_id(to_node: str, method: str) -> str:
    """The child id of the Publisher for one destination: ``<toNode>.<method>``."""
    return f"{to_node}.{method}"


def _message_from_row(row: OutboxRow) -> Message | None:
    try:
        return codec.decode(row.payload, codec.RAW_CBOR_HEADERS)
    except codec.DecodeError as exc:
        log.error("outbox message %s cannot be decoded, skipping it: %s", row.msg_id, exc)
        return None


class Publisher:
    """Delivers messages to one ``(toNode, method)``; one instance per destination.

    Its inbox (a channel registered under its path) receives Messages from the Router. Each
    delivery runs in its own task, at most ``window`` at a time: a destination is never sent
    more unacknowledged messages than it can take before their ACK timeouts run out (which
    would only make them be sent again). The window is per destination, so a slow or offline
    node never holds up another. While deliveries are in flight it reports activity, so idle
    reaping never cuts one short.
    """

    def __init__(
        self,
        outbox: Outbox,
        bridge: Transport,
        report: Callable[[Level, str], None],
        *,
        idle_tick: float = 1.0,
        window: int = 128,
    ) -> None:
        self.outbox = outbox
        self.bridge = bridge
        self.report = report
        self.idle_tick = idle_tick
        self.window = window

    async def run(
        self,
        to_node: str,
        method: str,
        task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve one destination until stopped. Started value: the inbox send channel."""
        send, receive = trio.open_memory_channel[Message](math.inf)
        handle = current_child()
        in_flight: set[str] = set()
        window = trio.Semaphore(self.window)
        handle.info_provider = lambda: {
            "to_node": to_node,
            "method": method,
            "in_flight": len(in_flight),
            "queued": receive.statistics().current_buffer_used,
        }
        task_status.started(send)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._keep_alive_while_busy, in_flight)
                async for message in receive:
                    handle.touch()
                    await window.acquire()
                    in_flight.add(message.id)
                    nursery.start_soon(self._deliver_one, message, in_flight, window)
        finally:
            # Hand back what was queued here but never started: the Router routes it again.
            while True:
                try:
                    queued = receive.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                    break
                self._give_back(queued.id, delivered=False)

    async def _keep_alive_while_busy(self, in_flight: set[str]) -> None:
        handle = current_child()
        while True:
            await trio.sleep(self.idle_tick)
            if in_flight:
                handle.touch()

    async def _deliver_one(
        self, message: Message, in_flight: set[str], window: trio.Semaphore
    ) -> None:
        delivered = False
        try:
            delivered = await self.deliver(message)
        finally:
            window.release()
            in_flight.discard(message.id)
            current_child().touch()
            self._give_back(message.id, delivered=delivered)

    def _give_back(self, msg_id: str, *, delivered: bool) -> None:
        # The Router's mailbox is large; if it is ever full, the Router's restart sweep
        # still finds the message in the store.
        with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError):
            self.outbox.mail_send.send_nowait(Finished(msg_id, delivered))

    async def deliver(self, message: Message) -> bool:
        """Deliver ``message`` per its ACK settings; True when delivered, False when failed."""
        store, stats = self.outbox.store, self.outbox.stats
        if not await store.mark_in_flight(message.id):
            return False  # delivered, cancelled or purged meanwhile: do not send it (again)
        subject = subject_for(message, self.outbox.table)
        encoded = codec.encode(message, compress_threshold=self.outbox.compress_threshold)
        if not uses_ack(message):
            await self.bridge.publish(subject, encoded.payload, encoded.headers)
            # Fire-and-forget still means "handed to the broker": only then does it leave
            # the outbox. Not flushed in time: it stays, and the Router sends it again.
            with trio.move_on_after(NACK_FLUSH_TIMEOUT) as scope:
                await self.bridge.flush()
            if scope.cancelled_caught:
                return False
            await store.mark_delivered(message.id)
            stats.delivered += 1
            return True
        attempts = max(message.retries, 0) + 1
        for attempt in range(1, attempts + 1):
            try:
                await self.bridge.request(
                    subject, encoded.payload, encoded.headers, timeout=message.ack_timeout
                )
            except RequestTimeout:
                stats.missed_acks += 1
                if attempt == attempts:
                    break
                if not await store.record_attempt(message.id):
                    return False  # cancelled or purged by an operator meanwhile
                await trio.sleep(max(message.retry_wait, 0))
                continue
            await store.mark_delivered(message.id)
            stats.delivered += 1
            return True
        text = max_retries_text(message, subject)
        await store.mark_failed(message.id, text)
        stats.failed += 1
        if message.method != ERROR_LOG_METHOD:
            self.report("info", text)
        return False
