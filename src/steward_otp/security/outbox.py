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

from typing import Any, Protocol

from steward_otp import codec
from steward_otp.message import Message
from steward_otp.outbound.outbox import Outbox
from steward_otp.outbound.relay import relay_envelope, relay_hop

__all__ = ["MessageSigner", "SigningOutbox"]


class MessageSigner(Protocol):
    """What signs for a :class:`SigningOutbox`: this node's key, now."""

    def sign(self, message: Message) -> Message:
        """``message`` signed."""

    def sign_values(self, values: list[Any]) -> None:
        """Sign the message whose field values are ``values`` (set its ``argSignature``)."""


class SigningOutbox(Outbox):
    """An :class:`~steward_otp.outbound.outbox.Outbox` that signs each message it prepares."""

    def __init__(self, *args: Any, signer: MessageSigner, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.signer = signer

    def prepare(self, message: Message) -> Message:
        """``Outbox.prepare``, then signed (see the module docstring)."""
        via = relay_hop(message, self.node_name)
        prepared = super().prepare(message)  # signed by finish() when it goes straight
        if via is None:
            return prepared
        # prepared is the REQRelay envelope around the message
        inner = codec.decode(prepared.data, codec.RAW_CBOR_HEADERS)
        if not inner.arg_signature:
            prepared = relay_envelope(self.signer.sign(inner), via, self.node_name)
        return self.signer.sign(prepared)

    def finish(self, message: Message, values: list[Any] | None) -> Message:
        """``Outbox.finish``, signed unless it carries a signature (a forwarded message)."""
        if message.arg_signature:
            return super().finish(message, values)
        if values is None:
            values = list(message.field_values())
        self.signer.sign_values(values)
        return Message.from_field_values(values)
