"""Queue control as request methods, so an operator can manage a node's outbox remotely.

They answer the same requests as the control socket (``steward-otp queue ...``), so local
and remote queue control cannot drift apart:

* ``REQOpQueueList``   ``[toNode?, state?...]``      → one JSON line per held message
* ``REQOpQueueCancel`` ``[id, ...]``                 → one status line per id
* ``REQOpQueueRetry``  ``[id, ...]``                 → one status line per id
* ``REQOpQueuePurge``  ``[toNode|"*", olderThanSeconds?]`` → ``purged <n>``
  (``olderThanSeconds``: a finite number >= 0)

The handlers send their requests to a :class:`~steward_otp.handlers.base.QueueControl`,
which the node gives :func:`queue_handlers` when it builds its handler table; no other
handler can reach it (a :class:`~steward_otp.handlers.base.HandlerContext` does not offer it).

A bad argument, or a request the node refuses, is an error reply naming the field, the
value and what is allowed; nothing is changed then.
"""

from __future__ import annotations

import json
import math
from typing import Any

from steward_otp.handlers.base import (
    Handler,
    HandlerContext,
    HandlerError,
    QueueControl,
    handler,
)
from steward_otp.message import Message
from steward_otp.store import OUTBOX_STATE_NAMES

ANY_NODE = "*"


async def _ask(control: QueueControl, request: dict[str, Any]) -> dict[str, Any]:
    response = await control.control(request)
    if not response.get("ok"):
        raise HandlerError(str(response.get("error")))
    return response


def _ids(msg: Message) -> tuple[str, ...]:
    if not msg.method_args:
        raise HandlerError(
            'field "methodArgs": value [] names no message; '
            'allowed: ["<message id>", ...] as listed by REQOpQueueList'
        )
    return msg.method_args


_AGE_ALLOWED = 'an age in seconds, a finite number >= 0, e.g. "3600"'


def _age(text: str) -> float:
    """``methodArgs[1]`` of a purge as seconds; HandlerError unless a finite number >= 0."""
    try:
        seconds = float(text)
    except ValueError:
        raise HandlerError(
            f'field "methodArgs[1]": value {text!r} is not a number; allowed: {_AGE_ALLOWED}'
        ) from None
    if not (math.isfinite(seconds) and seconds >= 0):
        raise HandlerError(
            f'field "methodArgs[1]": value {text!r} is not an age; allowed: {_AGE_ALLOWED}'
        )
    return seconds


def _state(text: str, index: int) -> str:
    """``methodArgs[index]`` of a list as an outbox state; HandlerError naming the states."""
    if text not in OUTBOX_STATE_NAMES:
        raise HandlerError(
            f'field "methodArgs[{index}]": value {text!r} is not an outbox state; '
            f"allowed: {', '.join(OUTBOX_STATE_NAMES)}"
        )
    return text


def queue_handlers(control: QueueControl) -> tuple[Handler, Handler, Handler, Handler]:
    """The ``REQOpQueueList`` / ``Cancel`` / ``Retry`` / ``Purge`` handlers, asking
    ``control`` (a node gives itself when it builds its handler table)."""

    @handler("REQOpQueueList")
    async def queue_list(ctx: HandlerContext, msg: Message) -> bytes | None:
        """Reply with one JSON line per held message (id, toNode, method, state, attempts, age)."""
        request: dict[str, Any] = {"op": "queue.ls"}
        if msg.method_args and msg.method_args[0] not in ("", ANY_NODE):
            request["toNode"] = msg.method_args[0]
        if len(msg.method_args) > 1:
            request["states"] = [
                _state(state, index) for index, state in enumerate(msg.method_args[1:], 1)
            ]
        messages = (await _ask(control, request))["messages"]
        return "".join(json.dumps(m) + "\n" for m in messages).encode()

    @handler("REQOpQueueCancel")
    async def queue_cancel(ctx: HandlerContext, msg: Message) -> bytes | None:
        """Cancel each listed message; reply with one line per id saying what happened."""
        lines = []
        for msg_id in _ids(msg):
            done = (await _ask(control, {"op": "queue.cancel", "id": msg_id}))["done"]
            lines.append(f"{'cancelled' if done else 'not active'}: {msg_id}\n")
        return "".join(lines).encode()

    @handler("REQOpQueueRetry")
    async def queue_retry(ctx: HandlerContext, msg: Message) -> bytes | None:
        """Re-queue each listed message; reply with one line per id saying what happened."""
        lines = []
        for msg_id in _ids(msg):
            done = (await _ask(control, {"op": "queue.retry", "id": msg_id}))["done"]
            lines.append(f"{'queued again' if done else 'not failed or cancelled'}: {msg_id}\n")
        return "".join(lines).encode()

    @handler("REQOpQueuePurge")
    async def queue_purge(ctx: HandlerContext, msg: Message) -> bytes | None:
        """Purge by destination (``*`` = any) and/or age in seconds; reply ``purged <n>``."""
        request: dict[str, Any] = {"op": "queue.purge"}
        args = msg.method_args
        if args and args[0] not in ("", ANY_NODE):
            request["toNode"] = args[0]
        if len(args) > 1:
            request["olderThan"] = _age(args[1])
        purged = (await _ask(control, request))["purged"]
        return f"purged {purged}\n".encode()

    return (queue_list, queue_cancel, queue_retry, queue_purge)
