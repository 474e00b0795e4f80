"""The receiver's state machine for one subscription: pure functions of a drained batch.

Two steps, with the store between them (the Subscriber in :mod:`steward_otp.inbound` does the
I/O):

1. :func:`triage` decodes and checks every message of the batch. Garbage and messages without
   an id or ``fromNode`` are reported and never ACKed (nothing could be de-duplicated or
   answered); a message in a protocol version this node does not speak is rejected by id.
   What remains are :class:`Candidate` records, one per distinct id, each holding the bytes
   to store (the received CBOR, decompressed; never re-encoded).
2. :func:`settle` takes the ids the store found new and returns the ACKs to send -- ONE per
   reply subject for protocol-2 senders, one empty ACK per message for Steward's request/reply
   -- and the messages to run. Duplicates are ACKed again (their first ACK was evidently lost)
   and never run again.

Guarantees (tested under hypothesis): every message that reaches the store is ACKed when it
asks for an ACK; a message runs only if the store said its id is new, and at most once per
batch even when the batch holds it several times.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs

from steward_otp import codec
from steward_otp.delivery.protocol import (
    Ack,
    is_supported,
    sender_version,
    unsupported_version_reason,
)
from steward_otp.jetstream import ACK, TERMINATE
from steward_otp.limits import node_name_problem
from steward_otp.message import Message, uses_ack
from steward_otp.transport import InboundMessage


@attrs.frozen
class Candidate:
    """A well-formed message of the batch, ready to be made durable."""

    message: Message
    stored: bytes
    """The message's CBOR as received (decompressed), for the store's inbox."""
    reply: str
    """Where its ACK goes ("" when the sender asked for none)."""
    versioned: bool
    """True for a protocol-2 sender (batched ACK), False for Steward's request/reply."""
    jetstream: bool = False
    """Delivered by a JetStream consumer: acknowledged to the broker, each on its own."""

    @property
    def wants_ack(self) -> bool:
        """Whether an ACK is sent for this message (the broker wants one for every delivery)."""
        return bool(self.reply) and (self.jetstream or uses_ack(self.message))


@attrs.frozen
class Problem:
    """Something wrong with one message: reported at ``level``, never run."""

    level: str
    text: str


@attrs.frozen
class Rejection:
    """A message refused by id: the sender is told why in the batch's ACK."""

    reply: str
    msg_id: str
    reason: str
    jetstream: bool = False


@attrs.frozen
class Triage:
    """The outcome of :func:`triage`."""

    candidates: tuple[Candidate, ...] = ()
    problems: tuple[Problem, ...] = ()
    rejections: tuple[Rejection, ...] = ()
    terminate: tuple[str, ...] = ()
    """Reply subjects of broker deliveries that can never be run (no id to reject by)."""


@attrs.frozen
class AckOut:
    """Publish ``payload`` on ``subject``: one ACK."""

    subject: str
    payload: bytes


@attrs.frozen
class Settlement:
    """The outcome of :func:`settle`: ACKs to send, then messages to run."""

    acks: tuple[AckOut, ...]
    run: tuple[Message, ...]
    duplicates: int


def triage(subject: str, batch: Iterable[InboundMessage], *, jetstream: bool = False) -> Triage:
    """Decode and check ``batch`` (received on ``subject``). See the module docstring.

    With ``jetstream`` the batch came from a JetStream consumer: every delivery is answered
    to the broker (acknowledged, or terminated when it can never run).
    """
    candidates: list[Candidate] = []
    problems: list[Problem] = []
    rejections: list[Rejection] = []
    terminate: list[str] = []
    # A batch comes from few senders: each name is checked once.
    name_problems: dict[str, str | None] = {}
    for inbound in batch:
        try:
            message, raw = codec.decode_with_cbor(inbound.payload, inbound.headers)
        except codec.DecodeError as exc:
            problems.append(Problem("error", f"error: decoding failed, subject: {subject}: {exc}"))
            if jetstream and inbound.reply:
                terminate.append(inbound.reply)
            continue
        if not message.id or not message.from_node:
            missing = "id" if not message.id else "fromNode"
            problems.append(
                Problem(
                    "error",
                    f"error: {subject}: message from {message.from_node or '?'} refused: "
                    f'field "{missing}" is empty; allowed: a steward-otp message with both set',
                )
            )
            if jetstream and inbound.reply:
                terminate.append(inbound.reply)
            continue
        if message.from_node not in name_problems:
            name_problems[message.from_node] = node_name_problem(message.from_node)
        if (why := name_problems[message.from_node]) is not None:
            # Replies could never go back: refuse it by id rather than fail later.
            reason = f'field "fromNode": {why}'
            problems.append(
                Problem("error", f"error: {subject}: message {message.id} refused: {reason}")
            )
            if inbound.reply:
                rejections.append(Rejection(inbound.reply, message.id, reason, jetstream))
            continue
        version = sender_version(inbound.headers)
        if version is not None and not is_supported(version):
            reason = unsupported_version_reason(version)
            problems.append(
                Problem("error", f"error: {subject}: message {message.id} refused: {reason}")
            )
            if inbound.reply:
                rejections.append(Rejection(inbound.reply, message.id, reason, jetstream))
            continue
        candidates.append(Candidate(message, raw, inbound.reply, version is not None, jetstream))
    return Triage(tuple(candidates), tuple(problems), tuple(rejections), tuple(terminate))


def refuse(candidate: Candidate, reason: str) -> Rejection | None:
    """The rejection sent for a candidate refused before storing (e.g. by a verify hook)."""
    if candidate.jetstream and candidate.reply:
        return Rejection(candidate.reply, candidate.message.id, reason, jetstream=True)
    if not candidate.wants_ack or not candidate.versioned:
        return None  # Steward's request/reply has no way to say no: it times out
    return Rejection(candidate.reply, candidate.message.id, reason)


def settle(
    candidates: Sequence[Candidate],
    new_ids: Iterable[str],
    rejections: Sequence[Rejection] = (),
) -> Settlement:
    """The ACKs and runs for a stored batch; ``new_ids`` are the ids the store had not seen."""
    new = set(new_ids)
    accepted: dict[str, list[str]] = {}
    refused: dict[str, list[tuple[str, str]]] = {}
    legacy: list[AckOut] = []
    run: list[Message] = []
    duplicates = 0
    for candidate in candidates:
        msg_id = candidate.message.id
        if candidate.wants_ack:
            if candidate.jetstream:
                legacy.append(AckOut(candidate.reply, ACK))
            elif candidate.versioned:
                accepted.setdefault(candidate.reply, []).append(msg_id)
            else:
                legacy.append(AckOut(candidate.reply, b""))
        if msg_id in new:
            new.discard(msg_id)  # a second copy in the same batch does not run again
            run.append(candidate.message)
        else:
            duplicates += 1
    for rejection in rejections:
        if rejection.jetstream:
            legacy.append(AckOut(rejection.reply, TERMINATE))
            continue
        refused.setdefault(rejection.reply, []).append((rejection.msg_id, rejection.reason))
    acks = [
        AckOut(reply, Ack(tuple(accepted.get(reply, ())), tuple(refused.get(reply, ()))).encode())
        for reply in dict.fromkeys([*accepted, *refused])
    ]
    return Settlement(tuple(acks + legacy), tuple(run), duplicates)


def stored_rows(candidates: Sequence[Candidate]) -> list[tuple[str, str, str, bytes]]:
    """``(id, fromNode, method, payload)`` per distinct id, for the store's inbox."""
    seen: dict[str, tuple[str, str, str, bytes]] = {}
    for c in candidates:
        m = c.message
        seen.setdefault(m.id, (m.id, m.from_node, m.method, c.stored))
    return list(seen.values())
