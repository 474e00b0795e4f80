"""The values the store holds and hands back: outbox states, audit outcomes and the records
of outbound, inbound and audited messages.

Every record is frozen. :class:`OutboxEntry` checks its fields when built, so a bad entry is
refused before it reaches the store; the rows read back from the file (:class:`OutboxRow`,
:class:`InboundRow`, :class:`AuditRecord`) are built from what SQLite holds. Import them from
:mod:`steward_otp.store`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

import attrs

from steward_otp.store.fields import finite, non_empty_str


class OutboxState(enum.StrEnum):
    """Where an outbound message held in the outbox is in its life."""

    QUEUED = "queued"
    """Waiting for a publisher (possibly not before ``not_before``)."""
    IN_FLIGHT = "in_flight"
    """A publisher is delivering it. Reset to ``queued`` when the store is reopened."""
    FAILED = "failed"
    """Retries ran out. Held for an operator to retry or purge."""
    CANCELLED = "cancelled"
    """Cancelled by an operator. Held for an operator to retry or purge."""


OUTBOX_STATE_NAMES: tuple[str, ...] = tuple(state.value for state in OutboxState)
"""The names of the outbox states, in their life's order (for choices and error texts)."""

ACTIVE_STATES: frozenset[OutboxState] = frozenset({OutboxState.QUEUED, OutboxState.IN_FLIGHT})
"""States of messages that still need delivering (what :func:`Store.pending` returns)."""

DEFAULT_PURGE_STATES: frozenset[OutboxState] = frozenset(
    {OutboxState.QUEUED, OutboxState.FAILED, OutboxState.CANCELLED}
)
"""States :meth:`Store.purge` removes unless told otherwise: everything no publisher holds."""


class AuditOutcome(enum.StrEnum):
    """How an outbound message left the outbox, as written to the audit log."""

    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PURGED = "purged"


class Direction(enum.StrEnum):
    """Which way an audited message travelled."""

    OUTBOUND = "out"
    INBOUND = "in"


def outbox_states(values: Iterable[OutboxState | str]) -> frozenset[OutboxState]:
    """``values`` as a set of :class:`OutboxState`; ValueError naming the value and the
    states for an unknown state."""
    states: set[OutboxState] = set()
    for value in values:
        if value not in OUTBOX_STATE_NAMES:
            raise ValueError(
                f"state {value!r} is not an outbox state; allowed: " + ", ".join(OUTBOX_STATE_NAMES)
            )
        states.add(OutboxState(value))
    return frozenset(states)


def optional_outbox_states(
    values: Iterable[OutboxState | str] | None,
) -> frozenset[OutboxState] | None:
    """:func:`outbox_states`, passing None through."""
    return None if values is None else outbox_states(values)


@attrs.frozen
class OutboxEntry:
    """An accepted outbound message, as handed to :meth:`Store.enqueue`.

    ``payload`` is the message already encoded by the codec; the store never looks inside it.
    ``created_at`` and ``not_before`` are wall-clock seconds (``time.time()``); a publisher
    should not send the message before ``not_before`` (0 means at once).
    """

    msg_id: str = attrs.field(validator=non_empty_str)
    to_node: str = attrs.field(validator=non_empty_str)
    method: str = attrs.field(validator=non_empty_str)
    payload: bytes = attrs.field(validator=attrs.validators.instance_of(bytes))
    created_at: float = attrs.field(converter=float, validator=finite)
    not_before: float = attrs.field(default=0.0, converter=float, validator=finite)


@attrs.frozen
class OutboxRow:
    """One message held in the outbox, as the store has it on disk.

    ``seq`` is the acceptance order (an autoincrement that never goes back, unlike wall time);
    ``reason`` says why it failed or was cancelled.
    """

    seq: int
    msg_id: str
    to_node: str
    method: str
    payload: bytes
    state: OutboxState
    attempts: int
    created_at: float
    not_before: float
    updated_at: float
    reason: str | None

    def age(self, now: float) -> float:
        """Seconds since the message was created, as of wall time ``now``."""
        return now - self.created_at


@attrs.frozen
class InboundRow:
    """An inbound message accepted (and ACKed) whose handler has not reported done."""

    seq: int
    msg_id: str
    from_node: str
    method: str
    payload: bytes
    received_at: float


@attrs.frozen
class AuditRecord:
    """One line of the audit log: a message that finished, with what it takes to recreate it.

    ``peer_node`` is the destination of an outbound message or the sender of an inbound one;
    ``attempts`` is ``None`` for inbound messages.
    """

    seq: int
    direction: Direction
    msg_id: str
    peer_node: str
    method: str
    outcome: str
    attempts: int | None
    payload: bytes | None
    """The message as sent; None when it was larger than
    :data:`~steward_otp.store.audit.AUDIT_PAYLOAD_LIMIT`."""
    created_at: float
    recorded_at: float
    reason: str | None


def outbox_entries(entries: Iterable[OutboxEntry]) -> tuple[OutboxEntry, ...]:
    """``entries`` as a tuple (checked by :func:`all_outbox_entries`)."""
    return tuple(entries)


def all_outbox_entries(
    instance: object, attribute: attrs.Attribute[tuple[OutboxEntry, ...]], value: tuple[object, ...]
) -> None:
    for item in value:
        if not isinstance(item, OutboxEntry):
            raise TypeError(f"enqueue takes OutboxEntry records, got {type(item).__name__}")
