"""REQRelay: forward a message wrapped by another node to its destination.

A message with ``relayViaNode: X`` is wrapped by the node that accepts it in a REQRelay to
X (see :func:`steward_otp.outbound.relay.relay_envelope`); X unwraps it here and puts it in its own
outbox, from where it goes to ``toNode`` with its own ACK and retry settings. Replies carry
the relay node forward, so they come back through X. This lets an operator's laptop reach
nodes that only the central broker side can see.
"""

from __future__ import annotations

from steward_otp import codec
from steward_otp.handlers.base import HandlerContext, HandlerError, handler
from steward_otp.message import Message


@handler("REQRelay")
async def relay(ctx: HandlerContext, msg: Message) -> bytes | None:
    """Unwrap the carried message and queue it durably for its destination."""
    try:
        inner = codec.decode(msg.data, codec.RAW_CBOR_HEADERS)
    except codec.DecodeError as exc:
        raise HandlerError(f'field "data" does not hold a message: {exc}') from exc
    if not inner.to_node:
        raise HandlerError('the relayed message has no "toNode"')
    try:
        await ctx.services.submit([inner])
    except ValueError as exc:
        text = f"cannot forward {inner.method} to {inner.to_node}: {exc}"
        raise HandlerError(text) from exc
    return None


RELAY_HANDLERS = (relay,)
