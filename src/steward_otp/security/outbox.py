"""The outbox of a node that signs what it sends.

:class:`SigningOutbox` is :class:`steward_otp.outbound.outbox.Outbox` whose ``prepare`` -- the one
step every outgoing message passes, after its id, ``fromNode`` and defaults are filled in
and before it is stored -- also signs it. A message that already carries a signature is
left as it is: a relay node forwards the original signer's message untouched, so the
destination verifies the original signature end to end. A message leaving through a relay
is signed before it is wrapped (the destination checks it) and the envelope is signed too
(the relay node checks that).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, cast

from steward_otp import codec
from steward_otp.message import Message
from steward_otp.outbound.outbox import Outbox
from steward_otp.outbound.relay import relay_envelope, relay_hop

__all__ = ["MessageSigner", "SigningOutbox"]


class MessageSigner(Protocol):
    """What signs for a :class:`SigningOutbox`: this node's key, now."""

    def sign(self, message: Message) -> Message:
        """``message`` signed."""

    def sign_batch(self, batch: Sequence[list[Any]]) -> None:
        """Sign the messages whose field values are in ``batch`` (set each one's
        ``argSignature``), as one batch (see :func:`steward_otp.security.signing.sign_batch`)."""


class SigningOutbox(Outbox):
    """An :class:`~steward_otp.outbound.outbox.Outbox` that signs each message it prepares;
    the messages prepared together are signed as one batch."""

    def __init__(self, *args: Any, signer: MessageSigner, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.signer = signer

    def prepare_all(self, messages: Sequence[Message]) -> list[Message]:
        """``Outbox.prepare_all``, then signed (see the module docstring): the messages that
        go straight to their node with one batch signature, built once."""
        prepared: list[Message | None] = []
        unsigned: list[tuple[int, list[Any]]] = []
        for message in messages:
            via = relay_hop(message, self.node_name)
            if via is not None:
                prepared.append(self._relayed(message, via))
                continue
            filled, values = self._filled(message)
            if filled.arg_signature:  # forwarded: the original signer's signature stays
                prepared.append(self._built(filled, values))
                continue
            if values is None:
                values = list(filled.field_values())
            unsigned.append((len(prepared), values))
            prepared.append(None)
        self.signer.sign_batch([values for _, values in unsigned])
        for slot, values in unsigned:
            prepared[slot] = Message.from_field_values(values)
        return cast(list[Message], prepared)  # every slot is filled now

    def _relayed(self, message: Message, via: str) -> Message:
        """The signed REQRelay envelope of ``message`` (to ``via``), itself signed inside."""
        envelope, _ = self._filled(message)
        inner = codec.decode(envelope.data, codec.RAW_CBOR_HEADERS)
        if not inner.arg_signature:
            envelope = relay_envelope(self.signer.sign(inner), via, self.node_name)
        return self.signer.sign(envelope)
