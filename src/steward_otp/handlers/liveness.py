"""Liveness methods: hello, ping/pong, and the in-process test hook.

REQPublicKey, Steward's other liveness method, lives with the key methods in
:mod:`steward_otp.handlers.keys` (it needs the node's key).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import attrs

from steward_otp.handlers.base import Handler, HandlerContext, HandlerError, handler
from steward_otp.handlers.output import write_for
from steward_otp.message import Message
from steward_otp.timestamps import steward_timestamp

HelloListener = Callable[[HandlerContext, Message], Awaitable[None]]
"""Called with every hello after it is written (e.g. to record the key it carries)."""


def hello_handler(listener: HelloListener | None = None) -> Handler:
    """The REQHello handler; ``listener`` (optional) sees every hello after it is written.

    A hello's ``data`` is the sender's 32-byte public signing key (Steward's hello); the
    node's security registers it through ``listener`` (see ``NodeSecurity.register_hello``).
    """

    @handler("REQHello")
    async def hello(ctx: HandlerContext, msg: Message) -> bytes | None:
        """Write ``<data>/<directory>/<fromNode>/<fileName>``: ``TS, Received hello from
        "<node>"``."""
        line = f'{steward_timestamp()}, Received hello from "{msg.from_node}"\n'
        target = attrs.evolve(msg, to_node=msg.from_node, previous_message=None)
        await write_for(ctx, target, line.encode(), append=False)
        ctx.services.note_hello(msg.from_node)
        if listener is not None:
            await listener(ctx, msg)
        return None

    return hello


hello = hello_handler()


@handler("REQPing")
async def ping(ctx: HandlerContext, msg: Message) -> bytes | None:
    """Write ``TS, ping received from <fromNode>`` and reply with empty data."""
    line = f"{steward_timestamp()}, ping received from {msg.from_node}\n"
    await write_for(ctx, msg, line.encode(), append=False)
    return b""


@handler("REQPong")
async def pong(ctx: HandlerContext, msg: Message) -> bytes | None:
    """Write ``TS, pong received from <node that was pinged>``."""
    if msg.previous_message is None:
        raise HandlerError(
            'field "previousMessage" is missing: REQPong answers a REQPing; '
            'send REQPing with replyMethod "REQPong"'
        )
    line = f"{steward_timestamp()}, pong received from {msg.previous_message.to_node}\n"
    await write_for(ctx, msg, line.encode(), append=False)
    return None


@handler("REQTest")
async def test_hook(ctx: HandlerContext, msg: Message) -> bytes | None:
    """Give the message to the node's test listener (dropped when nobody listens)."""
    ctx.services.test_event(msg)
    return None


LIVENESS_HANDLERS = (hello, ping, pong, test_hook)
