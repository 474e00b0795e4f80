"""What the Publisher puts on the wire for a message, or why the message can never be sent.

A message this node prepared is framed from the CBOR the outbox checked and kept, and only
its size is checked again (the broker's ``max_payload`` may have changed since); any other
message is checked in full and encoded. The headers carry the protocol version and, for a
publish into the JetStream stream, the message id by which the broker stores a resend once.
A message that cannot be encoded, exceeds the broker's limit, or is a broadcast sent
without JetStream is unsendable: the Publisher fails it rather than retrying it for ever.
"""

from __future__ import annotations

from steward_otp import codec
from steward_otp.delivery.protocol import with_version
from steward_otp.jetstream import BROADCAST_NODE
from steward_otp.limits import WIRE_HEADROOM, current_max_payload, unsendable_reason
from steward_otp.message import Message

MSG_ID_HEADER = "Nats-Msg-Id"
"""The header by which JetStream recognises a resend of the same message."""


def wire_form(
    message: Message, stored: bytes | None, compress: int | None, *, stream: bool
) -> codec.EncodedMessage | str:
    """``message``'s payload and headers for publishing (into the stream when ``stream``),
    or the reason it can never be published. ``stored`` is the CBOR the outbox checked and
    kept for it (:meth:`~steward_otp.outbound.outbox.Outbox.take_checked`), if any."""
    try:  # a message that can never be sent is failed, not retried for ever
        encoded, unsendable = encode(message, stored, compress)
    except Exception as exc:
        unsendable = f"it cannot be encoded: {type(exc).__name__}: {exc}"
    if unsendable is None and not stream and message.to_node == BROADCAST_NODE:
        unsendable = (
            f'toNode "{BROADCAST_NODE}" reaches every node only through JetStream: '
            'set "jetstream": true on the message or run the node with '
            "--delivery jetstream"
        )
    if unsendable is not None:
        return unsendable
    headers = with_version(encoded.headers)
    if stream:
        headers[MSG_ID_HEADER] = message.id  # the broker stores it once
    return codec.EncodedMessage(encoded.payload, headers)


def encode(
    message: Message, stored: bytes | None, compress: int | None
) -> tuple[codec.EncodedMessage, str | None]:
    """``message`` encoded for publishing, and why it can never be published (or None).

    A message with ``stored`` CBOR (prepared in this process) is framed from it and, its
    names checked already, only its size is checked again (the broker's ``max_payload``
    may have changed since); any other is checked in full and encoded.
    """
    if stored is None:
        return codec.encode(message, compress_threshold=compress), unsendable_reason(message)
    encoded = codec.frame(stored, message.from_node, compress_threshold=compress)
    fits = len(stored) <= current_max_payload() - WIRE_HEADROOM
    return encoded, None if fits else unsendable_reason(message)
