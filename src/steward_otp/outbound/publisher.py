"""The Publisher: delivers messages to one ``(toNode, method)`` in windowed batches.

One Publisher run per destination carries out what its
:class:`~steward_otp.delivery.sender.SenderMachine` decides: a first send goes out without
a store write, unless an operator withdrew the message (when the store's
:class:`~steward_otp.store.withdrawals.Withdrawals` moved since the message was known
active, the store is asked first); a retry goes out only once its attempt is recorded in the
store; a message still unacknowledged :data:`IN_FLIGHT_MARK_DELAY` after its first send is
marked ``in_flight``; a message leaves the outbox only when a delivered or failed mark
commits; at most ``window`` messages are unacknowledged at a time; and whatever a run holds
goes back to the Router unfinished when it stops. The steps it uses:
:func:`~steward_otp.outbound.wire_form.wire_form` (what goes on the wire, or why a message
never can), :class:`~steward_otp.outbound.stream_acks.StreamAcks` (the broker's answers to
publishes into the JetStream stream) and
:class:`~steward_otp.outbound.disk_full_backoff.DiskFullBackoff` (the backoff after a write
refused for a full disk; what happens to each kind of write is in :mod:`steward_otp.outbound`).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import trio

from steward_otp.delivery.protocol import Ack, AckDecodeError
from steward_otp.delivery.sender import (
    DEFAULT_WINDOW,
    Action,
    Delivered,
    GaveUp,
    SenderMachine,
    Transmit,
)
from steward_otp.disk_full import DiskFullNotice
from steward_otp.error_kernel import ERROR_LOG_METHOD
from steward_otp.handlers.base import Level
from steward_otp.jetstream import StreamLimits, stream_subject
from steward_otp.message import (
    Message,
    subject_for,
    uses_ack,
)
from steward_otp.outbound.ack_inboxes import AckInboxes
from steward_otp.outbound.destination import (
    Destination,
    Flight,
    Mailbox,
    no_responders,
    offer_deferred,
    outgoing,
    settle_ack,
)
from steward_otp.outbound.disk_full_backoff import (
    NOT_MARKED_DELIVERED,
    NOT_MARKED_FAILED,
    NOT_SENT,
    DiskFullBackoff,
)
from steward_otp.outbound.jetstream_probe import JetStreamProbe
from steward_otp.outbound.outbox import Finished, Outbox
from steward_otp.outbound.stream_acks import StreamAcks
from steward_otp.outbound.wire_form import wire_form
from steward_otp.store import StoreFull
from steward_otp.supervisors import current_child
from steward_otp.transport import BridgeBusy, InboundMessage, Transport

log = logging.getLogger(__name__)
NACK_FLUSH_TIMEOUT = 10.0
"""Seconds a fire-and-forget message may take to reach the broker before it is retried."""
IN_FLIGHT_MARK_DELAY = 1.0
"""Seconds a message sent for the first time waits for its ACK before the store marks it
``in_flight`` (one answered sooner goes from ``queued`` to delivered without that write)."""


def max_retries_text(message: Message, subject: str) -> str:
    """Steward's MAX-RETRIES line for ``message`` published on ``subject``."""
    return (
        f"info: toNode: {message.to_node}, fromNode: {message.from_node}, subject: {subject}, "
        f"methodArgs: [{' '.join(message.method_args)}]: max retries reached, check if node is "
        "up and running and if it got a subscriber started for the given REQ type"
    )


class Publisher:
    """Delivers messages to one ``(toNode, method)``; one instance per destination.

    Its inbox (a channel registered under its path) receives Messages from the Router. The
    decisions -- what to send, when an ACK is overdue, when to retry or give up -- are the
    :class:`~steward_otp.delivery.sender.SenderMachine`'s; this process carries them out in
    batches: no store operation for a batch of first sends (one for its retries, one for
    the in-flight marks of those unanswered after a second), one publish per message with
    this Publisher's ACK inbox as the reply subject, one store operation per ACK received
    (an ACK settles every id the receiver made durable from one batch; see
    ``docs/protocol.md``).

    At most ``window`` messages are unacknowledged at a time: a destination is never sent
    more than it can take before their ACK timeouts run out. The window is per destination,
    so a slow or offline node never holds up another. While it holds messages its handle's
    ``busy()`` says so, so idle reaping never cuts a delivery short.

    A store write refused for a full disk never crashes it: see :mod:`steward_otp.outbound`
    for what happens to each kind of write. Whatever it holds for a full disk keeps it alive,
    and is given back to the Router unfinished if it stops (the store still has it active).
    """

    def __init__(
        self,
        outbox: Outbox,
        bridge: Transport,
        report: Callable[[Level, str], None],
        *,
        acks: AckInboxes,
        window: int = DEFAULT_WINDOW,
        jetstream: bool = False,
        limits: StreamLimits | None = None,
    ) -> None:
        self.outbox = outbox
        self.bridge = bridge
        self.report = report
        self.acks = acks
        """The node's shared ACK subscription; each run registers its own reply subject."""
        self.window = window
        self.jetstream = jetstream
        """The node's delivery default; a message's ``jetstream`` field wins."""
        self.limits = limits or StreamLimits()
        """The stream's limits, should this node be the first to need the stream."""
        self.stream_acks = StreamAcks(
            JetStreamProbe(bridge, self.limits), report, publish=self._send_again, fail=self._fail
        )
        """Settles the publishes into the stream from the broker's answers."""
        self.disk_full_backoff = DiskFullBackoff(
            DiskFullNotice(
                f"{outbox.node_name}.outbound", "the outbox", report, clock=trio.current_time
            )
        )
        """The full-disk backoff of each destination, and the notice telling of it."""

    async def run(
        self,
        to_node: str,
        method: str,
        jetstream: bool | None = None,
        task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve one destination until stopped. Started value: the inbox send channel.

        ``jetstream`` is the delivery its messages chose (None: the node's default).
        On the way out every message it holds goes back to the Router unfinished (the store
        still has it), so it is sent again by the next Publisher.
        """
        send, receive = trio.open_memory_channel[Message](math.inf)
        handle = current_child()
        acks = Mailbox[InboundMessage]()
        # JetStream: one reply subject per publish below it (the broker's acknowledgement
        # names no id); the shared subscription hands those over too.
        dest = Destination(
            SenderMachine(self.window),
            to_node=to_node,
            ack_inbox=self.acks.register(acks.put),
            stream=self.jetstream if jetstream is None else jetstream,
            chosen=jetstream is not None,
        )
        new_messages = Mailbox[Message]()
        handle.busy = lambda: bool(
            dest.machine.outstanding or dest.machine.queued or dest.busy or dest.held_for_disk
        )
        handle.info_provider = lambda: {
            "to_node": to_node,
            "method": method,
            "delivery": "jetstream" if dest.stream else "core",
            "in_flight": dest.machine.outstanding,
            "queued": dest.machine.queued + len(new_messages.items),
            "held_for_disk": dest.held_for_disk,
            "destination_silent": dest.machine.silent,
        }
        task_status.started(send)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(new_messages.feed_from, receive)
                await self._pump(dest, new_messages, acks, nursery)
        finally:
            self.acks.unregister(dest.ack_inbox)
            self.disk_full_backoff.forget(dest)
            # Hand back what was held here unfinished: the Router routes it again.
            for msg_id in {**dest.flights, **dest.unfailed}:
                self._give_back(msg_id, delivered=False)
            for message in new_messages.take():
                self._give_back(message.id, delivered=False)
            while True:
                try:
                    queued = receive.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                    break
                self._give_back(queued.id, delivered=False)

    async def _pump(
        self,
        dest: Destination,
        new_messages: Mailbox[Message],
        acks: Mailbox[InboundMessage],
        nursery: trio.Nursery,
    ) -> None:
        """Feed the machine and start carrying out its actions, without waiting for them.

        Store operations and publishes of different wake-ups overlap (the store commits
        concurrent operations together), so the window never idles behind an fsync.

        While a full disk's backoff runs (:attr:`Destination.full_until`) the machine is not
        polled: nothing new is sent and no ACK deadline runs out; ACKs are still taken. When
        it is over, the deferred messages are offered again and the refused marks written.
        """
        machine, stats = dest.machine, self.outbox.stats
        while True:
            new_messages.wake = acks.wake = dest.wake = wake = trio.Event()
            for message in new_messages.take():
                if machine.offer(outgoing(message, jetstream=dest.stream)):
                    subject = subject_for(message, self.outbox.table)
                    if dest.stream:
                        subject = stream_subject(subject)
                    known = self.outbox.take_checked(message.id)
                    dest.flights[message.id] = (
                        Flight(message, subject)
                        if known is None
                        else Flight(message, subject, known.payload, known.generation)
                    )
            actions: list[Action] = []
            stored: list[str] = []  # in the stream: delivered, settled together below
            for inbound in acks.take():
                if dest.stream:
                    if (msg_id := self.stream_acks.stored(dest, inbound, nursery)) is not None:
                        stored.append(msg_id)
                    continue
                if no_responders(inbound):
                    # Nobody listens at the destination: probe it until it answers.
                    machine.nobody_listening(trio.current_time())
                    continue
                try:
                    actions += settle_ack(dest, Ack.decode(inbound.payload))
                except AckDecodeError as exc:
                    log.warning("ACK on %s ignored: %s", inbound.subject, exc)
            if stored:
                actions += settle_ack(dest, Ack(accepted=tuple(stored)))
            paused = trio.current_time() < dest.full_until
            if not paused:
                if dest.deferred:
                    offer_deferred(dest)
                if (dest.acked or dest.unfailed) and not dest.rewriting:
                    dest.rewriting = True
                    nursery.start_soon(self._write_held, dest)
                missed = machine.missed_acks
                actions += machine.poll(trio.current_time())
                stats.missed_acks += machine.missed_acks - missed
            for action in actions:
                nursery.start_soon(self._carry_out, action, dest)
            mark_at = math.inf
            if dest.unmarked and not dest.marking and not paused:
                mark_at = next(iter(dest.unmarked.values())) + IN_FLIGHT_MARK_DELAY
                if mark_at <= trio.current_time():
                    dest.marking, mark_at = True, math.inf
                    nursery.start_soon(self._mark_in_flight, dest)
            if new_messages.items or acks.items:
                continue
            deadline = dest.full_until if paused else machine.next_deadline()
            with trio.move_on_at(min(math.inf if deadline is None else deadline, mark_at)):
                await wake.wait()

    async def _carry_out(self, action: Action, dest: Destination) -> None:
        dest.busy += 1
        try:
            await self._carry_out_now(action, dest)
        finally:
            dest.busy -= 1

    async def _carry_out_now(self, action: Action, dest: Destination) -> None:
        store, flights = self.outbox.store, dest.flights
        if isinstance(action, Transmit) and action.resend:
            # Sent before and unheard: again, as they are, without an attempt to record.
            await self._send_again([flights[i] for i in action.resend if i in flights], dest)
            if not (action.first or action.again):
                return
        if isinstance(action, Transmit):
            sending: list[Flight] = []
            again = list(action.again)
            for msg_id in action.first:
                flight = flights.get(msg_id)
                if flight is None:
                    continue
                if flight.sent:  # offered again after a full disk: a retry
                    again.append(msg_id)
                else:
                    sending.append(flight)
            # A first send needs no store write (the message is durable, and its attempt
            # is not counted); a retry's attempt is recorded first.
            if again:
                generation = store.withdrawals.generation
                retried = await self._record_attempts(again, dest)
                for retry in retried:
                    retry.known_active = generation
                sending += retried
            # Nothing an operator withdrew is sent; no await between this and the publish.
            sending = await self._unwithdrawn(sending, dest)
            fire_and_forget = await self._publish(sending, dest)
            now, marks_were_due = trio.current_time(), bool(dest.unmarked)
            for published in sending:
                if published.sent == 1:  # its first send
                    dest.unmarked[published.message.id] = now
            if dest.unmarked and not marks_were_due:
                dest.wake.set()  # the pump schedules the in-flight mark
            if fire_and_forget:
                await self._flush_fire_and_forget(fire_and_forget, dest)
        elif isinstance(action, Delivered):
            await self._delivered(dest, action.msg_ids)
        elif isinstance(action, GaveUp):
            for msg_id in action.msg_ids:
                if (flight := flights.pop(msg_id, None)) is not None:
                    text = max_retries_text(flight.message, flight.subject)
                    await self._fail(dest, flight, text)
        elif (flight := flights.pop(action.msg_id, None)) is not None:
            text = (
                f"error: {flight.subject}: message {action.msg_id} refused by "
                f"{flight.message.to_node}: {action.reason}"
            )
            await self._fail(dest, flight, text)

    async def _unwithdrawn(self, batch: list[Flight], dest: Destination) -> list[Flight]:
        """``batch`` less what an operator cancelled or purged since each was known active.

        When the store's withdrawals generation has not moved since, nothing is asked;
        otherwise the store says which are still active (the others are never sent), until
        the generation stays put over the question. Returns without an await after the
        last look at the generation. A full disk refusing the question defers the
        messages asked about, as a refused attempt record does.
        """
        withdrawals = self.outbox.store.withdrawals
        while True:
            generation = withdrawals.generation
            unsure = [f for f in batch if f.known_active != generation]
            if not unsure:
                return batch
            asked = [f.message.id for f in unsure]
            try:
                active = set(await self.outbox.store.active_among(asked))
            except StoreFull as exc:
                deferred = dest.machine.release(asked)
                dest.deferred.update(dict.fromkeys(deferred))
                self.disk_full_backoff.refused(dest, len(deferred), NOT_SENT, exc)
                return [f for f in batch if f.known_active == generation]
            self._stop_sending(dest, set(asked) - active)
            for flight in unsure:
                flight.known_active = generation
            batch = [f for f in batch if f.message.id in dest.flights]

    async def _record_attempts(self, msg_ids: list[str], dest: Destination) -> list[Flight]:
        """Count another attempt of each of ``msg_ids``; returns the flights to send: those
        still active. A full disk sends none: they leave the window and are offered again
        after the backoff."""
        try:
            active = await self.outbox.store.record_attempts(msg_ids)
        except StoreFull as exc:
            deferred = dest.machine.release(msg_ids)
            dest.deferred.update(dict.fromkeys(deferred))
            self.disk_full_backoff.refused(dest, len(deferred), NOT_SENT, exc)
            return []
        self.disk_full_backoff.stored(dest)
        # Delivered, cancelled or purged meanwhile: never send it again.
        self._stop_sending(dest, set(msg_ids).difference(active))
        return [dest.flights[i] for i in active if i in dest.flights]

    async def _mark_in_flight(self, dest: Destination) -> None:
        """Write the ``in_flight`` mark of the messages sent at least
        :data:`IN_FLIGHT_MARK_DELAY` seconds ago and still unacknowledged, in one operation.

        It is what ``queue ls`` shows and what a restart counts as interrupted; nothing
        else depends on it, so a full disk just leaves those messages ``queued``.
        """
        dest.busy += 1
        try:
            now = trio.current_time()
            msg_ids: list[str] = []
            for msg_id, sent_at in list(dest.unmarked.items()):
                if sent_at + IN_FLIGHT_MARK_DELAY > now:  # as the pump reckons it
                    break
                del dest.unmarked[msg_id]
                if msg_id in dest.flights:
                    msg_ids.append(msg_id)
            if msg_ids:
                with contextlib.suppress(StoreFull):
                    await self.outbox.store.mark_in_flight_many(msg_ids)
        finally:
            dest.marking = False
            dest.busy -= 1
            dest.wake.set()

    async def _send_again(self, batch: Sequence[Flight], dest: Destination) -> list[str]:
        """Publish ``batch`` again, sent before, without an attempt to record: those of it
        still in the outbox's active states (an operator may have cancelled or purged some
        meanwhile: those are forgotten, never sent again). Returns what :meth:`_publish`
        does."""
        held = [flight.message.id for flight in batch]
        active = set(await self.outbox.store.active_among(held)) if held else set()
        self._stop_sending(dest, set(held).difference(active))
        return await self._publish([f for f in batch if f.message.id in active], dest)

    def _stop_sending(self, dest: Destination, msg_ids: set[str]) -> None:
        """Forget ``msg_ids``, no longer in the outbox's active states: never sent again."""
        if not msg_ids:
            return
        dest.machine.forget(msg_ids)
        for msg_id in msg_ids:
            dest.flights.pop(msg_id, None)
            dest.unmarked.pop(msg_id, None)
            self._give_back(msg_id, delivered=False)
        dest.wake.set()  # room in the window: the pump offers what waits

    async def _delivered(self, dest: Destination, msg_ids: Sequence[str]) -> None:
        """Mark ``msg_ids`` delivered; a full disk keeps them in :attr:`Destination.acked`
        to be written again (during a backoff without trying)."""
        if trio.current_time() < dest.full_until:
            dest.acked.update(dict.fromkeys(msg_ids))
            return
        try:
            retired = await self.outbox.store.mark_delivered_many(msg_ids)
        except StoreFull as exc:
            dest.acked.update(dict.fromkeys(msg_ids))
            self.disk_full_backoff.refused(dest, len(msg_ids), NOT_MARKED_DELIVERED, exc)
            return
        self.disk_full_backoff.stored(dest)
        # Counted once: an ACK again for a message delivered before retires nothing.
        self.outbox.stats.delivered += len(retired)
        self.outbox.drain.delivered(dest.to_node, len(retired), trio.current_time())
        for msg_id in msg_ids:
            dest.flights.pop(msg_id, None)
            dest.unmarked.pop(msg_id, None)
            self._give_back(msg_id, delivered=True)

    async def _write_held(self, dest: Destination) -> None:
        """Write the marks a full disk refused: the deliveries in one operation, then the
        failures (each refused again is kept again)."""
        dest.busy += 1
        try:
            acked, dest.acked = list(dest.acked), {}
            if acked:
                await self._delivered(dest, acked)
            unfailed, dest.unfailed = dest.unfailed, {}
            for flight, text, level in unfailed.values():
                await self._fail(dest, flight, text, level)
        finally:
            dest.rewriting = False
            dest.busy -= 1

    async def _publish(self, batch: Sequence[Flight], dest: Destination) -> list[str]:
        """Publish ``batch``; returns the ids of the fire-and-forget messages in it."""
        compress = self.outbox.compress_threshold
        fire_and_forget: list[str] = []
        for flight in batch:
            message = flight.message
            if flight.payload is None or flight.headers is None:
                form = wire_form(message, flight.stored, compress, stream=dest.stream)
                if isinstance(form, str):
                    dest.machine.forget([message.id])
                    dest.flights.pop(message.id, None)
                    text = f"error: {flight.subject}: message {message.id} not sent: {form}"
                    await self._fail(dest, flight, text)
                    continue
                flight.payload, flight.headers = form
            if dest.stream:
                token = str(next(dest.tokens))
                dest.publishes[token] = message.id
                reply = f"{dest.ack_inbox}.{token}"
            elif uses_ack(message):
                reply = dest.ack_inbox
            else:
                fire_and_forget.append(message.id)
                reply = ""
            try:
                self.bridge.publish_nowait(flight.subject, flight.payload, flight.headers, reply)
            except BridgeBusy:
                await self.bridge.publish(flight.subject, flight.payload, flight.headers, reply)
            flight.sent += 1
        return fire_and_forget

    async def _flush_fire_and_forget(self, msg_ids: list[str], dest: Destination) -> None:
        # Fire-and-forget still means "handed to the broker": only then does it leave the
        # outbox. Not flushed in time: it stays, and the Router sends it again.
        with trio.move_on_after(NACK_FLUSH_TIMEOUT) as scope:
            await self.bridge.flush()
        if scope.cancelled_caught:
            for msg_id in dest.machine.release(msg_ids):
                dest.flights.pop(msg_id, None)
                self._give_back(msg_id, delivered=False)
            return
        for action in dest.machine.flushed(msg_ids):
            await self._carry_out_now(action, dest)

    async def _fail(
        self, dest: Destination, flight: Flight, text: str, level: Level = "info"
    ) -> None:
        """Mark ``flight`` failed and report ``text`` once the mark commits; a full disk
        keeps it in :attr:`Destination.unfailed` to be written again (during a backoff
        without trying)."""
        message = flight.message
        if trio.current_time() < dest.full_until:
            dest.unfailed[message.id] = (flight, text, level)
            return
        try:
            await self.outbox.store.mark_failed(message.id, text)
        except StoreFull as exc:
            dest.unfailed[message.id] = (flight, text, level)
            self.disk_full_backoff.refused(dest, 1, NOT_MARKED_FAILED, exc)
            return
        self.disk_full_backoff.stored(dest)
        self.outbox.stats.failed += 1
        if message.method != ERROR_LOG_METHOD:
            self.report(level, text)
        self._give_back(message.id, delivered=False)

    def _give_back(self, msg_id: str, *, delivered: bool) -> None:
        # The Router's mailbox is large; if it is ever full, the Router's restart sweep
        # still finds the message in the store.
        with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError):
            self.outbox.mail_send.send_nowait(Finished(msg_id, delivered))
