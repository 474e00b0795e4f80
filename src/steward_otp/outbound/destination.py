"""One destination's delivery state inside a Publisher, and the pure steps on it.

A :class:`Destination` is what one Publisher run holds for its ``(toNode, method)``: the
sender machine, the messages in flight with their cached encodings, and what a full disk
made it keep. The functions here settle ACKs and re-offer deferred messages on it without
any I/O.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterator
from typing import Generic, TypeVar

import attrs
import trio

from steward_otp.delivery.protocol import Ack
from steward_otp.delivery.sender import (
    Action,
    Delivered,
    Outgoing,
    Refused,
    SenderMachine,
)
from steward_otp.handlers.base import Level
from steward_otp.message import (
    Message,
)
from steward_otp.outbound.outbox import FULL_RETRY_MIN
from steward_otp.store.withdrawals import UNKNOWN
from steward_otp.transport import NO_RESPONDERS_STATUS, InboundMessage

log = logging.getLogger(__name__)
T = TypeVar("T")

STREAM_ACK_TIMEOUT = 5
"""Seconds at least that a publish into the stream waits for the broker's acknowledgement."""


class Mailbox(Generic[T]):
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

    async def feed_from(self, channel: trio.MemoryReceiveChannel[T]) -> None:
        """Put every item of ``channel`` until it ends; whatever waits in it at a wake-up
        goes in at once, so the taker wakes once for all of them."""
        async for item in channel:
            self.items.append(item)
            while True:
                try:
                    self.items.append(channel.receive_nowait())
                except trio.WouldBlock:
                    break
                except trio.EndOfChannel:
                    self.wake.set()
                    return
            self.wake.set()


@attrs.define
class Flight:
    """A message the Publisher holds, with its encoding cached for retransmission."""

    message: Message
    subject: str
    stored: bytes | None = None
    """The CBOR the outbox checked and stored, when it prepared the message in this
    process."""
    known_active: int = UNKNOWN
    """The store's withdrawals generation at which the message was last known active
    (:mod:`steward_otp.store.withdrawals`)."""
    payload: bytes | None = None
    headers: dict[str, str] | None = None
    sent: int = 0
    """Times this Publisher published it."""


@attrs.define
class Destination:
    """One Publisher run's state: its machine, the messages it holds, its ACK inbox."""

    machine: SenderMachine
    ack_inbox: str
    stream: bool = False
    """Publishing into the JetStream stream (else core NATS)."""
    chosen: bool = False
    """The messages chose their delivery (their ``jetstream`` field), not the node default."""
    flights: dict[str, Flight] = attrs.field(factory=dict)
    busy: int = 0
    """Actions being carried out (store operations, publishes) right now."""
    publishes: dict[str, str] = attrs.field(factory=dict)
    """JetStream: reply token of each publish awaiting the broker's acknowledgement -> id."""
    tokens: Iterator[int] = attrs.field(factory=itertools.count)
    no_stream: list[str] = attrs.field(factory=list)
    """JetStream: ids whose publish found no stream, for
    :class:`~steward_otp.outbound.stream_acks.StreamAcks` to resolve."""
    resolving: bool = False
    to_node: str = ""
    deferred: dict[str, None] = attrs.field(factory=dict)
    """Messages whose send could not be recorded (a full disk): out of the machine, their
    flights kept, offered to it again when the backoff is over (in this order)."""
    acked: dict[str, None] = attrs.field(factory=dict)
    """ACKed messages whose mark as delivered a full disk refused: written again after the
    backoff (their flights kept until it commits)."""
    unfailed: dict[str, tuple[Flight, str, Level]] = attrs.field(factory=dict)
    """Failed messages whose mark a full disk refused, with their failure text and level:
    written again after the backoff."""
    unmarked: dict[str, float] = attrs.field(factory=dict)
    """Messages sent for the first time and not yet marked ``in_flight`` in the store, with
    the trio time of that send (oldest first)."""
    marking: bool = False
    """A task writes the ``in_flight`` marks of :attr:`unmarked` right now."""
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


def settle_ack(dest: Destination, ack: Ack) -> list[Action]:
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


def offer_deferred(dest: Destination) -> None:
    """Offer the messages deferred for a full disk to the machine again, each with the
    attempts it has left (at least one)."""
    for msg_id in dest.deferred:
        flight = dest.flights.get(msg_id)
        if flight is None:
            continue
        item = outgoing(flight.message, jetstream=dest.stream)
        dest.machine.offer(attrs.evolve(item, attempts=max(item.attempts - flight.sent, 1)))
    dest.deferred.clear()


def no_responders(inbound: InboundMessage) -> bool:
    """The broker's "nobody subscribes to that subject" notice, sent to a publish's reply."""
    headers = inbound.headers or {}
    return not inbound.payload and headers.get("Status") == NO_RESPONDERS_STATUS


def outgoing(message: Message, *, jetstream: bool = False) -> Outgoing:
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
