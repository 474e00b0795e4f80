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

A full disk (:class:`~steward_otp.store.StoreFull` from a store write) crashes none of them
and keeps both guarantees -- nothing lost (a message leaves the outbox only by a committed
write), nothing run twice (the receiver dedupes what is sent again):

* a send whose record (``mark_in_flight_many`` / ``record_attempts``) is refused is not
  published: the messages leave the Publisher's window, stay in the outbox and in the
  Publisher, and are offered again after the backoff with the attempts they had left;
* an ACK whose ``mark_delivered_many`` is refused is kept in memory and written again after
  the backoff until it commits; nothing is sent again meanwhile. Should the Publisher stop
  before that (the node stops), the messages are still undelivered in the store and are
  sent again later: the receiver ACKs them again without running them again;
* a failure (``mark_failed``: attempts ran out, refused by the receiver, unsendable) is kept
  and written again the same way; its error-log line goes out once the mark commits;
* the backoff is per destination, :data:`FULL_RETRY_MIN` doubling to :data:`FULL_RETRY_MAX`
  seconds on trio's clock; while it runs the Publisher makes no store write, sends nothing
  new and lets no ACK deadline run out (no attempts are used up by a full disk);
* the Router reads the outbox (a read shares its commit with whatever writes wait, so it
  can meet a full disk too): a sweep that is refused is made again after the backoff, and
  a damaged row whose ``mark_failed`` is refused is found and failed by the next sweep;
* the error kernel hears of it sparingly, through one
  :class:`~steward_otp.disk_full.DiskFullNotice` for all Publishers: a line when it starts, at
  most one a minute while it lasts, one when every refused write has committed.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, TypeVar

import attrs
import trio

from steward_otp import codec
from steward_otp.ack_inboxes import AckInboxes
from steward_otp.delivery.protocol import Ack, AckDecodeError, with_version
from steward_otp.delivery.sender import (
    DEFAULT_WINDOW,
    Action,
    Delivered,
    GaveUp,
    Outgoing,
    Refused,
    SenderMachine,
    Transmit,
)
from steward_otp.disk_full import DiskFullNotice
from steward_otp.drain import DrainMeter
from steward_otp.error_kernel import ERROR_LOG_METHOD
from steward_otp.handlers.base import Level
from steward_otp.jetstream import (
    BROADCAST_NODE,
    JetStreamUnavailable,
    StreamLimits,
    ensure_stream,
    jetstream_available,
    parse_pub_ack,
    stream_subject,
)
from steward_otp.limits import WIRE_HEADROOM, current_max_payload, unsendable_reason
from steward_otp.message import (
    FIELD_NAMES,
    LOCAL_NODE,
    Message,
    MessageDefaults,
    apply_defaults,
    check_wire,
    new_message_id,
    subject_for,
    uses_ack,
)
from steward_otp.methods import MethodTable
from steward_otp.store import Store, StoreFull
from steward_otp.store.schema import OutboxEntry, OutboxRow
from steward_otp.supervisors import ChildStartError, DynamicSupervisor, current_child
from steward_otp.supervisors.handle import current_child_or_none
from steward_otp.transport import NO_RESPONDERS_STATUS, BridgeBusy, InboundMessage, Transport

log = logging.getLogger(__name__)

T = TypeVar("T")

NACK_FLUSH_TIMEOUT = 10.0
"""Seconds a fire-and-forget message may take to reach the broker before it is retried."""

FULL_RETRY_MIN = 0.5
FULL_RETRY_MAX = 10.0
"""Seconds between two attempts of a write refused for a full disk (doubling from the first
to the second; back to the first once every refused write of the destination committed)."""

NOT_SENT = "not sent, their attempt could not be recorded (kept in the outbox, sent later)"
NOT_MARKED_DELIVERED = "acknowledged, waiting to be marked delivered (not sent again)"
NOT_MARKED_FAILED = "failed, waiting to be marked failed (not sent again)"


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

_ID, _FROM_NODE, _RETRIES, _METHOD_TIMEOUT = (
    FIELD_NAMES.index(name) for name in ("id", "from_node", "retries", "method_timeout")
)


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
        jetstream=message.jetstream,  # the first leg goes the way the message chose
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
        self.drain = DrainMeter()
        """Deliveries per destination over the last minute (``queue ls`` progress)."""
        self.mail_send, self.mail_receive = trio.open_memory_channel[RouterMail](mailbox_capacity)
        self._checked: dict[str, bytes] = {}
        """Stored CBOR of messages :meth:`prepare` checked, by id, until a Publisher takes it."""
        self._checked_bytes = 0

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
        check_wire(message)  # what the broker could never carry is refused before storing
        # One copy at most, however many fields are filled in.
        from_node = message.from_node or self.node_name
        defaulted = apply_defaults(message, self.defaults)
        if from_node != message.from_node or not message.id or defaulted is not message:
            values = list(message.field_values())
            values[_FROM_NODE] = from_node
            values[_ID] = message.id or new_message_id(from_node)
            values[_RETRIES] = defaulted.retries
            values[_METHOD_TIMEOUT] = defaulted.method_timeout
            # The values are the message's own or checked ones: the decoder's fast path.
            message = Message.from_field_values(values)
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
        self.route(prepared, await self.store.enqueue(self.entries_for(prepared)))
        return [m.id for m in prepared]

    def entries_for(self, prepared: Sequence[Message]) -> list[OutboxEntry]:
        """The outbox entries of messages :meth:`prepare` made.

        For callers that store them inside a larger store operation, then :meth:`route` them.
        """
        now = time.time()
        entries = [
            OutboxEntry(
                msg_id=m.id,
                to_node=m.to_node,
                method=m.method,
                payload=codec.cbor_payload(m),
                created_at=now,
                not_before=now,
            )
            for m in prepared
        ]
        checked = self._checked
        for entry in entries:
            if entry.msg_id not in checked:
                checked[entry.msg_id] = entry.payload
                self._checked_bytes += len(entry.payload)
        while self._checked_bytes > CHECKED_BYTES_KEPT or len(checked) > CHECKED_KEPT:
            # The oldest go first; their Publishers check and encode them again.
            self._checked_bytes -= len(checked.pop(next(iter(checked))))
        return entries

    def take_checked(self, msg_id: str) -> bytes | None:
        """The stored CBOR of message ``msg_id`` if it went through :meth:`prepare` in this
        process (its node names checked, its encoding known), once; else None (a message
        read back from the store is checked and encoded again before it is published)."""
        raw = self._checked.pop(msg_id, None)
        if raw is not None:
            self._checked_bytes -= len(raw)
        return raw

    def route(self, prepared: Sequence[Message], new_ids: Sequence[str]) -> None:
        """Hand the newly stored ones among ``prepared`` to the Router."""
        new = set(new_ids)
        self.stats.accepted += len(new)
        for message in prepared:
            if message.id in new:
                # When the mailbox is full the Router's sweep finds the message in the store.
                with contextlib.suppress(trio.WouldBlock):
                    self.mail_send.send_nowait(Dispatch(message))


PublisherFactory = Callable[..., Any]


class Router:
    """Supervised process: hands each durable message to the Publisher of its destination.

    On start, and every ``sweep_interval`` seconds, it reads the undelivered messages from
    the store (oldest first) and routes those no Publisher holds, so messages survive crashes
    of any outbound process and of the whole node. A stored message that can no longer be
    decoded (a damaged row) is marked failed with the reason and reported once through
    ``report``; it is never skipped silently on every sweep, nor allowed to stop the others.

    A full disk stops neither: a sweep whose read is refused (:class:`StoreFull`) is made
    again after :data:`FULL_RETRY_MIN` .. ``sweep_interval`` seconds (the start sweep too:
    the Router is ready without it), and a damaged row whose mark is refused stays in the
    outbox, is failed by a later sweep and reported once that mark commits.
    """

    def __init__(
        self,
        outbox: Outbox,
        publishers: DynamicSupervisor,
        *,
        sweep_interval: float = 5.0,
        report: Callable[[Level, str], None] | None = None,
    ) -> None:
        self.outbox = outbox
        self.publishers = publishers
        self.sweep_interval = sweep_interval
        self.report = report
        self._held: set[str] = set()

    async def run(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """Route until cancelled. Ready once the recovery list is routed, or once reading it
        met a full disk (the next sweeps route it)."""
        self._held = set()
        handle = current_child_or_none()
        if handle is not None:
            handle.info_provider = self.info
        swept = await self._sweep()
        task_status.started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._sweep_periodically, swept)
            async for mail in self.outbox.mail_receive:
                await self._handle_mail(self._with_waiting_mail(mail))

    def info(self) -> dict[str, object]:
        """What the tree snapshot shows (and the metrics read): the outbox's delivery counters
        (:class:`DeliveryStats`, counted since the node started), the messages waiting in the
        mailbox and the messages the Publishers hold."""
        stats = self.outbox.stats
        return {
            "accepted": stats.accepted,
            "delivered": stats.delivered,
            "failed": stats.failed,
            "missed_acks": stats.missed_acks,
            "mailbox": self.outbox.mail_send.statistics().current_buffer_used,
            "held": len(self._held),
        }

    def _with_waiting_mail(self, first: RouterMail) -> list[RouterMail]:
        """``first`` and whatever else waits in the mailbox, up to ROUTER_BATCH items."""
        batch = [first]
        while len(batch) < ROUTER_BATCH:
            try:
                batch.append(self.outbox.mail_receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        return batch

    async def _handle_mail(self, batch: Sequence[RouterMail]) -> None:
        """Act on ``batch`` as if item by item, in order, routing the Dispatches together."""
        dispatched: dict[str, Message] = {}
        for mail in batch:
            if isinstance(mail, Dispatch):
                dispatched.setdefault(mail.message.id, mail.message)
                continue
            if mail.msg_id in dispatched:
                # Its Dispatch came first: route what came before this Finished first.
                await self._route(list(dispatched.values()))
                dispatched = {}
            self._held.discard(mail.msg_id)
        if dispatched:
            await self._route(list(dispatched.values()))

    async def _sweep_periodically(self, swept: bool) -> None:
        delay = FULL_RETRY_MIN
        while True:
            if swept:
                delay = FULL_RETRY_MIN
                await trio.sleep(self.sweep_interval)
            else:
                await trio.sleep(min(delay, self.sweep_interval))
                delay = min(2 * delay, self.sweep_interval)
            swept = await self._sweep()

    async def _sweep(self) -> bool:
        """Route what the outbox holds and no Publisher does; False if the read met a full
        disk (nothing routed)."""
        try:
            rows = await self.outbox.store.pending()
        except StoreFull as exc:
            log.warning("outbox sweep refused for a full disk, made again shortly: %s", exc)
            return False
        messages = []
        for row in rows:
            if row.msg_id not in self._held:
                try:
                    messages.append(codec.decode(row.payload, codec.RAW_CBOR_HEADERS))
                except codec.DecodeError as exc:
                    await self._fail_undecodable(row, exc)
        for i in range(0, len(messages), ROUTER_BATCH):
            await self._route(messages[i : i + ROUTER_BATCH])
        return True

    async def _fail_undecodable(self, row: OutboxRow, exc: codec.DecodeError) -> None:
        text = (
            f"error: outbox message {row.msg_id} for {row.to_node}.{row.method} cannot be "
            f"decoded from the store, marked failed: {exc}"
        )
        try:
            failed = await self.outbox.store.mark_failed(row.msg_id, text)
        except StoreFull as full:
            # Still active in the outbox: the next sweep finds it and fails it again.
            log.warning("%s; not marked yet: %s", text, full)
            return
        log.error("%s", text)
        if failed:
            self.outbox.stats.failed += 1
        if self.report is not None:
            self.report("error", text)

    async def _route(self, messages: Sequence[Message]) -> None:
        """Hand each of ``messages`` not held yet to the Publisher of its destination.

        The Publishers that do not run yet are started together, PUBLISHER_STARTS_AT_ONCE
        at a time (``start_children``), not one after another. A Publisher that fails to
        start crashes the Router, as one start at a time did, after the others have their
        messages (every message stays in the store; the restarted Router sweeps it).
        """
        by_publisher: dict[str, list[Message]] = {}
        for message in messages:
            if message.id in self._held:
                continue
            self._held.add(message.id)
            key = publisher_id(message.to_node, message.method, message.jetstream)
            by_publisher.setdefault(key, []).append(message)
        to_start: dict[str, list[Message]] = {}
        for key, held in by_publisher.items():
            inbox = self.publishers.whereis(key)
            if inbox is None or not _hand_over(inbox, held):
                to_start[key] = held
        failure: ChildStartError | None = None
        waiting = list(to_start.items())
        for i in range(0, len(waiting), PUBLISHER_STARTS_AT_ONCE):
            chunk = waiting[i : i + PUBLISHER_STARTS_AT_ONCE]
            started = await self.publishers.start_children(
                (key, (held[0].to_node, held[0].method, held[0].jetstream)) for key, held in chunk
            )
            for key, held in chunk:
                value = started[key]
                if isinstance(value, ChildStartError):
                    failure = failure or value
                elif not _hand_over(value, held):
                    for message in held:
                        await self._route_one(key, message)
        if failure is not None:
            raise failure

    async def _route_one(self, key: str, message: Message) -> None:
        while True:
            inbox = await self.publishers.start_child(
                key, message.to_node, message.method, message.jetstream
            )
            if _hand_over(inbox, [message]):
                return
            # The Publisher stopped (idle, or crashed) between lookup and send: start a
            # fresh one and try again.
            await trio.lowlevel.checkpoint()


CHECKED_KEPT = 65_536
"""Encodings :meth:`Outbox.entries_for` keeps for the Publishers at most (oldest go first)."""
CHECKED_BYTES_KEPT = 16 * 1024 * 1024
"""Bytes of such encodings kept at most: memory stays bounded after a burst of big messages."""
ROUTER_BATCH = 4096
"""Mail items the Router takes from its mailbox at once (and messages a sweep routes at once)."""
PUBLISHER_STARTS_AT_ONCE = 64
"""Publishers the Router starts together; the first ones deliver while the next start."""


def _hand_over(inbox: Any, messages: Sequence[Message]) -> bool:
    """Put ``messages`` into a Publisher's (unbounded) inbox: all of them, or none (False)
    when it has stopped (there is no checkpoint in between)."""
    try:
        for message in messages:
            inbox.send_nowait(message)
    except (trio.ClosedResourceError, trio.BrokenResourceError, AttributeError):
        return False
    return True


def publisher_id(to_node: str, method: str, jetstream: bool | None = None) -> str:
    """The child id of the Publisher for one destination: ``<toNode>.<method>``; messages
    that choose their delivery (``jetstream`` true or false) have their own Publisher,
    ``<toNode>.<method>@jetstream`` or ``<toNode>.<method>@core``."""
    if jetstream is None:
        return f"{to_node}.{method}"
    return f"{to_node}.{method}@{'jetstream' if jetstream else 'core'}"


class _Mailbox(Generic[T]):
    """Items fed by one task, taken in batches by another, with a wake-up for the taker."""

    def __init__(self) -> None:
        self.items: list[T] = []
        self.wake = trio.Event()

    def put(self, item: T) -> None:
        self.items.append(item)
        self.wake.set()

    def take(self) -> list[T]:
        items, self.items = self.items, []
        return items

    async def feed_from(self, channel: trio.abc.ReceiveChannel[T]) -> None:
        async for item in channel:
            self.put(item)


@attrs.define
class _Flight:
    """A message the Publisher holds, with its encoding cached for retransmission."""

    message: Message
    subject: str
    payload: bytes | None = None
    headers: dict[str, str] | None = None
    sent: int = 0
    """Times this Publisher published it."""


@attrs.define
class _Destination:
    """One Publisher run's state: its machine, the messages it holds, its ACK inbox."""

    machine: SenderMachine
    ack_inbox: str
    stream: bool = False
    """Publishing into the JetStream stream (else core NATS)."""
    chosen: bool = False
    """The messages chose their delivery (their ``jetstream`` field), not the node default."""
    flights: dict[str, _Flight] = attrs.field(factory=dict)
    busy: int = 0
    """Actions being carried out (store operations, publishes) right now."""
    publishes: dict[str, str] = attrs.field(factory=dict)
    """JetStream: reply token of each publish awaiting the broker's acknowledgement -> id."""
    tokens: Iterator[int] = attrs.field(factory=itertools.count)
    no_stream: list[str] = attrs.field(factory=list)
    """JetStream: ids whose publish found no stream, for :meth:`Publisher._no_stream`."""
    resolving: bool = False
    to_node: str = ""
    deferred: dict[str, None] = attrs.field(factory=dict)
    """Messages whose send could not be recorded (a full disk): out of the machine, their
    flights kept, offered to it again when the backoff is over (in this order)."""
    acked: dict[str, None] = attrs.field(factory=dict)
    """ACKed messages whose mark as delivered a full disk refused: written again after the
    backoff (their flights kept until it commits)."""
    unfailed: dict[str, tuple[_Flight, str, Level]] = attrs.field(factory=dict)
    """Failed messages whose mark a full disk refused, with their failure text and level:
    written again after the backoff."""
    rewriting: bool = False
    """A task writes :attr:`acked` and :attr:`unfailed` again right now."""
    full_until: float = -math.inf
    """Trio time until which no store write is tried (a full disk refused the last one)."""
    full_delay: float = FULL_RETRY_MIN
    """The next backoff."""
    wake: trio.Event = attrs.field(factory=trio.Event)
    """Wakes the pump (a write was refused: it has a backoff to wait out)."""

    @property
    def held_for_disk(self) -> int:
        """Messages whose store write a full disk refused, waiting to be written again."""
        return len(self.deferred) + len(self.acked) + len(self.unfailed)


class Publisher:
    """Delivers messages to one ``(toNode, method)``; one instance per destination.

    Its inbox (a channel registered under its path) receives Messages from the Router. The
    decisions -- what to send, when an ACK is overdue, when to retry or give up -- are the
    :class:`~steward_otp.delivery.sender.SenderMachine`'s; this process carries them out in
    batches: one store operation per batch of sends, one publish per message with this
    Publisher's ACK inbox as the reply subject, one store operation per ACK received (an ACK
    settles every id the receiver made durable from one batch; see ``docs/protocol.md``).

    At most ``window`` messages are unacknowledged at a time: a destination is never sent
    more than it can take before their ACK timeouts run out. The window is per destination,
    so a slow or offline node never holds up another. While it holds messages its handle's
    ``busy()`` says so, so idle reaping never cuts a delivery short.

    A store write refused for a full disk never crashes it: see the module docstring for
    what happens to each kind of write. Whatever it holds for a full disk keeps it alive,
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
        self._jetstream_missing_reported = False
        self._probe_lock = trio.Lock()
        self._probed: tuple[float, bool | None] = (-math.inf, None)
        self.disk_full = DiskFullNotice(
            f"{outbox.node_name}.outbound", "the outbox", report, clock=trio.current_time
        )
        """Tells the error kernel, sparingly, of writes refused for a full disk."""
        self._full_destinations: set[int] = set()
        """The destinations (by ``id``) holding writes a full disk refused."""

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
        acks = _Mailbox[InboundMessage]()
        # JetStream: one reply subject per publish below it (the broker's acknowledgement
        # names no id); the shared subscription hands those over too.
        dest = _Destination(
            SenderMachine(self.window),
            to_node=to_node,
            ack_inbox=self.acks.register(acks.put),
            stream=self.jetstream if jetstream is None else jetstream,
            chosen=jetstream is not None,
        )
        new_messages = _Mailbox[Message]()
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
            self._full_destinations.discard(id(dest))
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
        dest: _Destination,
        new_messages: _Mailbox[Message],
        acks: _Mailbox[InboundMessage],
        nursery: trio.Nursery,
    ) -> None:
        """Feed the machine and start carrying out its actions, without waiting for them.

        Store operations and publishes of different wake-ups overlap (the store commits
        concurrent operations together), so the window never idles behind an fsync.

        While a full disk's backoff runs (:attr:`_Destination.full_until`) the machine is not
        polled: nothing new is sent and no ACK deadline runs out; ACKs are still taken. When
        it is over, the deferred messages are offered again and the refused marks written.
        """
        machine, stats = dest.machine, self.outbox.stats
        while True:
            new_messages.wake = acks.wake = dest.wake = wake = trio.Event()
            for message in new_messages.take():
                if machine.offer(_outgoing(message, jetstream=dest.stream)):
                    subject = subject_for(message, self.outbox.table)
                    if dest.stream:
                        subject = stream_subject(subject)
                    dest.flights[message.id] = _Flight(message, subject)
            actions: list[Action] = []
            for inbound in acks.take():
                if dest.stream:
                    actions += self._stream_acknowledged(dest, inbound, nursery)
                    continue
                if _no_responders(inbound):
                    # Nobody listens at the destination: probe it until it answers.
                    machine.nobody_listening(trio.current_time())
                    continue
                try:
                    actions += _acked(dest, Ack.decode(inbound.payload))
                except AckDecodeError as exc:
                    log.warning("ACK on %s ignored: %s", inbound.subject, exc)
            paused = trio.current_time() < dest.full_until
            if not paused:
                if dest.deferred:
                    _offer_deferred(dest)
                if (dest.acked or dest.unfailed) and not dest.rewriting:
                    dest.rewriting = True
                    nursery.start_soon(self._write_held, dest)
                missed = machine.missed_acks
                actions += machine.poll(trio.current_time())
                stats.missed_acks += machine.missed_acks - missed
            for action in actions:
                nursery.start_soon(self._carry_out, action, dest)
            if new_messages.items or acks.items:
                continue
            deadline = dest.full_until if paused else machine.next_deadline()
            with trio.move_on_at(math.inf if deadline is None else deadline):
                await wake.wait()

    def _stream_acknowledged(
        self, dest: _Destination, inbound: InboundMessage, nursery: trio.Nursery
    ) -> list[Action]:
        """The broker's answer to a publish into the stream: stored means delivered."""
        msg_id = dest.publishes.pop(inbound.subject.rpartition(".")[2], None)
        if msg_id is None:
            return []  # an earlier attempt's late answer, or not ours
        if _no_responders(inbound):
            # No stream takes the subject: the broker has no JetStream, or nobody has made
            # the stream yet. _no_stream finds out which, in the background.
            dest.no_stream.append(msg_id)
            if not dest.resolving:
                dest.resolving = True
                nursery.start_soon(self._no_stream, dest)
            return []  # meanwhile the ACK deadline retries it
        answer = parse_pub_ack(inbound.payload)
        if not answer.stored:
            log.warning("JetStream refused %s: %s; it is sent again", msg_id, answer.error)
            return []
        self._jetstream_missing_reported = False
        return _acked(dest, Ack(accepted=(msg_id,)))

    async def _no_stream(self, dest: _Destination) -> None:
        """Publishes into the stream that found none: make the stream when the broker has
        JetStream (and publish them again); when it has none, fail the messages that asked
        for JetStream themselves (the reason is in the outbox and the error log, so their
        sender hears it) and report it once for those sent so by the node's default (their
        ACK deadline retries them)."""
        dest.busy += 1
        try:
            while dest.no_stream:
                msg_ids, dest.no_stream = dest.no_stream, []
                available = await self._probe_jetstream()
                flights = [dest.flights[i] for i in dict.fromkeys(msg_ids) if i in dest.flights]
                if available:
                    await self._publish(flights, dest)
                elif available is False and dest.chosen:
                    dest.machine.forget({f.message.id for f in flights})
                    for flight in flights:
                        dest.flights.pop(flight.message.id, None)
                        await self._fail(dest, flight, self._no_jetstream_text(flight), "error")
                elif available is False and not self._jetstream_missing_reported:
                    self._jetstream_missing_reported = True
                    self.report(
                        "error",
                        f"error: JetStream delivery: the broker {self._broker_url()} has no "
                        "JetStream; messages wait in the outbox until it has; start it with "
                        "JetStream (nats-server --jetstream) or use --delivery core",
                    )
        finally:
            dest.resolving = False
            dest.busy -= 1

    async def _probe_jetstream(self) -> bool | None:
        """Whether the broker has JetStream, making the stream when it is missing; one probe
        for every Publisher at a time, its answer kept for PROBE_CACHE_SECONDS."""
        async with self._probe_lock:
            probed_at, available = self._probed
            if trio.current_time() - probed_at < PROBE_CACHE_SECONDS:
                return available
            available = await jetstream_available(self.bridge, timeout=PROBE_TIMEOUT)
            if available:
                try:
                    if await ensure_stream(self.bridge, self.limits, timeout=PROBE_TIMEOUT):
                        log.info("JetStream: made the stream for messages sent from here")
                except JetStreamUnavailable as exc:
                    log.warning("JetStream: the stream could not be made: %s", exc)
                    available = None
            self._probed = (trio.current_time(), available)
            return available

    def _no_jetstream_text(self, flight: _Flight) -> str:
        message = flight.message
        return (
            f"error: {flight.subject}: message {message.id} to {message.to_node}: this message "
            f"asks for JetStream but the broker {self._broker_url()} has none; start the broker "
            'with JetStream (nats-server --jetstream), or send it without "jetstream": true'
        )

    def _broker_url(self) -> str:
        try:
            return str(self.bridge.info.get("url") or "of this node")
        except Exception:  # only words for an error line
            return "of this node"

    async def _carry_out(self, action: Action, dest: _Destination) -> None:
        dest.busy += 1
        try:
            await self._carry_out_now(action, dest)
        finally:
            dest.busy -= 1

    async def _carry_out_now(self, action: Action, dest: _Destination) -> None:
        store, flights = self.outbox.store, dest.flights
        if isinstance(action, Transmit) and action.resend:
            # Sent before and unheard: again, as they are, without an attempt to record.
            await self._publish([flights[i] for i in action.resend if i in flights], dest)
            if not (action.first or action.again):
                return
        if isinstance(action, Transmit):
            # A message offered again after a full disk was sent before: a retry.
            first = [i for i in action.first if (f := flights.get(i)) is None or not f.sent]
            again = [*action.again, *(i for i in action.first if i not in first)]
            try:
                active = await store.mark_in_flight_many(first) if first else []
                if again:
                    active += await store.record_attempts(again)
            except StoreFull as exc:
                # Not published: out of the window, offered again after the backoff.
                deferred = dest.machine.release(action.first + action.again)
                dest.deferred.update(dict.fromkeys(deferred))
                self._refused(dest, len(deferred), NOT_SENT, exc)
                return
            self._stored(dest)
            stopped = set(action.first + action.again).difference(active)
            if stopped:
                # Delivered, cancelled or purged meanwhile: never send it (again).
                dest.machine.forget(stopped)
                for msg_id in stopped:
                    flights.pop(msg_id, None)
                    self._give_back(msg_id, delivered=False)
            sending = [flights[i] for i in active if i in flights]
            fire_and_forget = await self._publish(sending, dest)
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

    async def _delivered(self, dest: _Destination, msg_ids: Sequence[str]) -> None:
        """Mark ``msg_ids`` delivered; a full disk keeps them in :attr:`_Destination.acked`
        to be written again (during a backoff without trying)."""
        if trio.current_time() < dest.full_until:
            dest.acked.update(dict.fromkeys(msg_ids))
            return
        try:
            await self.outbox.store.mark_delivered_many(msg_ids)
        except StoreFull as exc:
            dest.acked.update(dict.fromkeys(msg_ids))
            self._refused(dest, len(msg_ids), NOT_MARKED_DELIVERED, exc)
            return
        self._stored(dest)
        self.outbox.stats.delivered += len(msg_ids)
        self.outbox.drain.delivered(dest.to_node, len(msg_ids), trio.current_time())
        for msg_id in msg_ids:
            dest.flights.pop(msg_id, None)
            self._give_back(msg_id, delivered=True)

    async def _write_held(self, dest: _Destination) -> None:
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

    def _refused(self, dest: _Destination, count: int, what: str, error: StoreFull) -> None:
        """A write for ``count`` messages of ``dest`` met a full disk: start (or keep) its
        backoff, wake its pump, tell the notice."""
        if count:
            self.disk_full.refused_messages(count, what, error)
        self._full_destinations.add(id(dest))
        now = trio.current_time()
        if now >= dest.full_until:
            dest.full_until = now + dest.full_delay
            dest.full_delay = min(2 * dest.full_delay, FULL_RETRY_MAX)
        dest.wake.set()

    def _stored(self, dest: _Destination) -> None:
        """A write of ``dest`` committed: once it holds nothing refused, its backoff starts
        afresh, and once no destination does, the notice ends the episode."""
        if id(dest) not in self._full_destinations or dest.held_for_disk:
            return
        dest.full_delay = FULL_RETRY_MIN
        self._full_destinations.discard(id(dest))
        if not self._full_destinations:
            self.disk_full.cleared()

    async def _publish(self, batch: Sequence[_Flight], dest: _Destination) -> list[str]:
        """Publish ``batch``; returns the ids of the fire-and-forget messages in it."""
        compress = self.outbox.compress_threshold
        fire_and_forget: list[str] = []
        for flight in batch:
            message = flight.message
            if flight.payload is None or flight.headers is None:
                try:  # a message that can never be sent is failed, not retried for ever
                    encoded, unsendable = self._encode(message, compress)
                except Exception as exc:
                    unsendable = f"it cannot be encoded: {type(exc).__name__}: {exc}"
                if unsendable is None and not dest.stream and message.to_node == BROADCAST_NODE:
                    unsendable = (
                        f'toNode "{BROADCAST_NODE}" reaches every node only through JetStream: '
                        'set "jetstream": true on the message or run the node with '
                        "--delivery jetstream"
                    )
                if unsendable is not None:
                    dest.machine.forget([message.id])
                    dest.flights.pop(message.id, None)
                    text = f"error: {flight.subject}: message {message.id} not sent: {unsendable}"
                    await self._fail(dest, flight, text)
                    continue
                flight.payload, flight.headers = encoded.payload, with_version(encoded.headers)
                if dest.stream:
                    flight.headers[MSG_ID_HEADER] = message.id  # the broker stores it once
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

    def _encode(
        self, message: Message, compress: int | None
    ) -> tuple[codec.EncodedMessage, str | None]:
        """``message`` encoded for publishing, and why it can never be published (or None).

        A message this process prepared is framed from its stored CBOR and, its names
        checked already, only its size is checked again (the broker's ``max_payload`` may
        have changed since); any other is checked in full and encoded.
        """
        raw = self.outbox.take_checked(message.id)
        if raw is None:
            return codec.encode(message, compress_threshold=compress), unsendable_reason(message)
        encoded = codec.frame(raw, message.from_node, compress_threshold=compress)
        fits = len(raw) <= current_max_payload() - WIRE_HEADROOM
        return encoded, None if fits else unsendable_reason(message)

    async def _flush_fire_and_forget(self, msg_ids: list[str], dest: _Destination) -> None:
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
        self, dest: _Destination, flight: _Flight, text: str, level: Level = "info"
    ) -> None:
        """Mark ``flight`` failed and report ``text`` once the mark commits; a full disk
        keeps it in :attr:`_Destination.unfailed` to be written again (during a backoff
        without trying)."""
        message = flight.message
        if trio.current_time() < dest.full_until:
            dest.unfailed[message.id] = (flight, text, level)
            return
        try:
            await self.outbox.store.mark_failed(message.id, text)
        except StoreFull as exc:
            dest.unfailed[message.id] = (flight, text, level)
            self._refused(dest, 1, NOT_MARKED_FAILED, exc)
            return
        self._stored(dest)
        self.outbox.stats.failed += 1
        if message.method != ERROR_LOG_METHOD:
            self.report(level, text)
        self._give_back(message.id, delivered=False)

    def _give_back(self, msg_id: str, *, delivered: bool) -> None:
        # The Router's mailbox is large; if it is ever full, the Router's restart sweep
        # still finds the message in the store.
        with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError):
            self.outbox.mail_send.send_nowait(Finished(msg_id, delivered))


STREAM_ACK_TIMEOUT = 5
"""Seconds at least that a publish into the stream waits for the broker's acknowledgement."""

PROBE_TIMEOUT = 2.0
"""Seconds the broker has to answer whether it has JetStream."""
PROBE_CACHE_SECONDS = 2.0
"""How long that answer stands for further publishes that find no stream."""

MSG_ID_HEADER = "Nats-Msg-Id"
"""The header by which JetStream recognises a resend of the same message."""


def _acked(dest: _Destination, ack: Ack) -> list[Action]:
    """What ``ack`` settles: in the machine, and among the messages deferred for a full disk
    (sent before; the receiver holds them now)."""
    actions = dest.machine.acked(ack)
    if dest.deferred:
        delivered = tuple(i for i in ack.accepted if dest.deferred.pop(i, 0) is None)
        if delivered:
            actions.append(Delivered(delivered))
        actions += [
            Refused(i, reason) for i, reason in ack.rejected if dest.deferred.pop(i, 0) is None
        ]
    return actions


def _offer_deferred(dest: _Destination) -> None:
    """Offer the messages deferred for a full disk to the machine again, each with the
    attempts it has left (at least one)."""
    for msg_id in dest.deferred:
        flight = dest.flights.get(msg_id)
        if flight is None:
            continue
        item = _outgoing(flight.message, jetstream=dest.stream)
        dest.machine.offer(attrs.evolve(item, attempts=max(item.attempts - flight.sent, 1)))
    dest.deferred.clear()


def _no_responders(inbound: InboundMessage) -> bool:
    """The broker's "nobody subscribes to that subject" notice, sent to a publish's reply."""
    headers = inbound.headers or {}
    return not inbound.payload and headers.get("Status") == NO_RESPONDERS_STATUS


def _outgoing(message: Message, *, jetstream: bool = False) -> Outgoing:
    # Into the stream every message waits for the broker's acknowledgement.
    ack_timeout = message.ack_timeout
    if jetstream:
        ack_timeout = max(ack_timeout, STREAM_ACK_TIMEOUT)
    return Outgoing(
        msg_id=message.id,
        ack_timeout=ack_timeout,
        attempts=max(message.retries, 0) + 1,
        retry_wait=max(message.retry_wait, 0),
    )
