"""The outbox: the only way into the outbound side, durable first, then routed.

:class:`Outbox` fills in what a message lacks, makes it durable in the store and hands it to
the Router's mailbox; the mail the Router reads (:class:`Dispatch`, :class:`Finished`) and
the node's delivery counters live here too.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

import attrs
import trio

from steward_otp import codec
from steward_otp.message import (
    FIELD_NAMES,
    Message,
    MessageDefaults,
    check_wire,
    defaulted_settings,
    new_message_id,
)
from steward_otp.methods import MethodTable
from steward_otp.outbound.drain import DrainMeter
from steward_otp.outbound.relay import relay_envelope, relay_hop
from steward_otp.store import Store
from steward_otp.store.records import OutboxEntry

log = logging.getLogger(__name__)
_ID, _FROM_NODE, _RETRIES, _METHOD_TIMEOUT = (
    FIELD_NAMES.index(name) for name in ("id", "from_node", "retries", "method_timeout")
)

FULL_RETRY_MIN = 0.5
FULL_RETRY_MAX = 10.0
"""Seconds between two attempts of a write refused for a full disk (doubling from the first
to the second; back to the first once every refused write of the destination committed)."""


@attrs.frozen
class Checked:
    """What the outbox knows of a message it prepared in this process, for its Publisher."""

    payload: bytes
    """The stored CBOR, its node names checked."""
    generation: int
    """The store's withdrawals generation read before the message was stored
    (:mod:`steward_otp.store.withdrawals`)."""


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
        self._checked: dict[str, Checked] = {}
        """Messages :meth:`prepare` checked, by id, until a Publisher takes them."""
        self._checked_bytes = 0

    def prepare(self, message: Message) -> Message:
        """``message`` as it will be stored: with id, fromNode and defaults.

        Raises ``UnknownMethodError`` for a method this node's table does not know (a
        reply's method may be one: it goes to the node that named it) and
        ``ValueError`` for a message without ``toNode`` (fan it out first): such a message
        could never be routed, so it is refused before anything is stored.
        """
        [prepared] = self.prepare_all([message])
        return prepared

    def prepare_all(self, messages: Sequence[Message]) -> list[Message]:
        """:meth:`prepare` of each of ``messages``, in order; raises as :meth:`prepare` does
        for the first message it refuses. A subclass may treat them as one batch."""
        return [self._built(*self._filled(m)) for m in messages]

    def _filled(self, message: Message) -> tuple[Message, list[Any] | None]:
        """``message`` checked, and its field values with what :meth:`prepare` fills in
        (None: nothing to fill in); for a message leaving through a relay, its envelope."""
        self.table.routing_spec(message.method, reply=message.is_reply)
        if not message.to_node:
            raise ValueError(
                f'message {message.method}: field "toNode" is empty; fan out "toNodes" first'
            )
        check_wire(message)  # what the broker could never carry is refused before storing
        # One copy at most, however many fields are filled in.
        from_node = message.from_node or self.node_name
        retries, timeout = defaulted_settings(message, self.defaults)
        values: list[Any] | None = None
        if (
            from_node != message.from_node
            or not message.id
            or retries != message.retries
            or timeout != message.method_timeout
        ):
            values = list(message.field_values())
            values[_FROM_NODE] = from_node
            values[_ID] = message.id or new_message_id(from_node)
            values[_RETRIES] = retries
            values[_METHOD_TIMEOUT] = timeout
        # What it fills in (id, fromNode, retries, timeout) does not change the way it goes.
        via = relay_hop(message, self.node_name)
        if via is None:
            return message, values
        return relay_envelope(self._built(message, values), via, self.node_name), None

    @staticmethod
    def _built(message: Message, values: list[Any] | None) -> Message:
        """The message of ``values`` when given, else ``message`` itself."""
        # The values are the message's own or checked ones: the decoder's fast path.
        return message if values is None else Message.from_field_values(values)

    async def submit(self, messages: Sequence[Message]) -> list[str]:
        """Make ``messages`` durable and route them; returns their ids (in order).

        When this returns every message is on disk. A message whose id the outbox already
        holds (a resubmission) is not stored or routed twice. A message that cannot be routed
        (see :meth:`prepare`) fails the whole call before anything is stored. Cancellation
        after the write leaves the messages durable; the Router's sweep routes them.
        """
        prepared = self.prepare_all(messages)
        self.route(prepared, await self.store.enqueue(self.entries_for(prepared)))
        return [m.id for m in prepared]

    def entries_for(self, prepared: Sequence[Message]) -> list[OutboxEntry]:
        """The outbox entries of messages :meth:`prepare` made.

        For callers that store them inside a larger store operation, then :meth:`route` them.
        """
        generation = self.store.withdrawals.generation  # read before they are stored
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
                checked[entry.msg_id] = Checked(entry.payload, generation)
                self._checked_bytes += len(entry.payload)
        while self._checked_bytes > CHECKED_BYTES_KEPT or len(checked) > CHECKED_KEPT:
            # The oldest go first; their Publishers check them in the store and encode them
            # again.
            self._checked_bytes -= len(checked.pop(next(iter(checked))).payload)
        return entries

    def take_checked(self, msg_id: str) -> Checked | None:
        """What :meth:`prepare` and :meth:`entries_for` learned of message ``msg_id`` in this
        process (its encoding, its names checked, the withdrawals generation it was stored
        at), once; else None (a message read back from the store is checked in the store
        before its first send, and encoded again)."""
        known = self._checked.pop(msg_id, None)
        if known is not None:
            self._checked_bytes -= len(known.payload)
        return known

    def route(self, prepared: Sequence[Message], new_ids: Sequence[str]) -> None:
        """Hand the newly stored ones among ``prepared`` to the Router."""
        new = set(new_ids)
        self.stats.accepted += len(new)
        for message in prepared:
            if message.id in new:
                # When the mailbox is full the Router's sweep finds the message in the store.
                with contextlib.suppress(trio.WouldBlock):
                    self.mail_send.send_nowait(Dispatch(message))


CHECKED_KEPT = 65_536
"""Encodings :meth:`Outbox.entries_for` keeps for the Publishers at most (oldest go first)."""
CHECKED_BYTES_KEPT = 16 * 1024 * 1024
"""Bytes of such encodings kept at most: memory stays bounded after a burst of big messages."""
