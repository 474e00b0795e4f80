"""Relaying: a message that must travel through another node first, wrapped for that hop.

A message names its relay node in ``relayViaNode``; a reply takes the way of the request it
answers. The outbox wraps such a message in a ``REQRelay`` envelope to the relay node, which
unwraps it and sends it on (:mod:`steward_otp.handlers.relay`).
"""

from __future__ import annotations

import logging

from steward_otp import codec
from steward_otp.message import (
    LOCAL_NODE,
    Message,
)

log = logging.getLogger(__name__)
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
        jetstream=message.jetstream,  # the first leg goes the way the message chose
    )
