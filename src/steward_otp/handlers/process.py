"""Operator methods on the node's processes, mapped onto its supervision tree.

* ``REQOpProcessList`` replies with the live tree as ``steward-otp tree`` shows it: one
  line per process with its kind, state, restarts, uptime and live info.
* ``REQOpProcessStart`` ``[method]`` starts a subscriber for ``method`` under the node's
  ``inbound`` supervisor (also one the configuration switched off) and replies with a status
  line; an unknown method, or one whose subscriber runs already, is an error reply.
* ``REQOpProcessStop`` ``[method]`` or Steward's ``[method, node, kind]`` stops that
  subscriber and removes it from the tree, and replies with a status line. ``kind`` may be
  ``subscriber`` only: publishers start on demand and stop when idle by themselves. The
  ``REQOpProcess*`` subscribers cannot be stopped, so the node stays controllable.

The handlers act on a :class:`~steward_otp.handlers.base.SubscriberControl`, which the node
gives :func:`process_handlers` when it builds its handler table; no other handler can reach
it (a :class:`~steward_otp.handlers.base.HandlerContext` does not offer it).

Changes last until the ``inbound`` supervisor restarts (after the broker connection was
rebuilt, or the node restarted); then the configuration's ``disabled_methods`` decides again.
"""

from __future__ import annotations

from steward_otp.handlers.base import (
    Handler,
    HandlerContext,
    HandlerError,
    SubscriberControl,
    handler,
)
from steward_otp.message import Message

_KINDS = ("", "subscriber")


def _method_arg(msg: Message, allowed: str) -> str:
    if not msg.method_args or not msg.method_args[0]:
        raise HandlerError(
            f'field "methodArgs": value {list(msg.method_args)!r} names no '
            f"method; allowed: {allowed}"
        )
    return msg.method_args[0]


def process_handlers(control: SubscriberControl) -> tuple[Handler, Handler, Handler]:
    """The ``REQOpProcessList`` / ``Start`` / ``Stop`` handlers, acting on ``control`` (a node
    gives its own when it builds its handler table)."""

    @handler("REQOpProcessList")
    async def process_list(ctx: HandlerContext, msg: Message) -> bytes | None:
        """Reply with the live supervision tree as text."""
        return control.process_list().encode()

    @handler("REQOpProcessStart")
    async def process_start(ctx: HandlerContext, msg: Message) -> bytes | None:
        """Start a subscriber for ``methodArgs[0]``; reply with a status line."""
        method = _method_arg(msg, '["method"], e.g. ["REQHttpGet"]')
        status = await control.start_subscriber(method)
        ctx.report("info", status.rstrip("\n"))
        return status.encode()

    @handler("REQOpProcessStop")
    async def process_stop(ctx: HandlerContext, msg: Message) -> bytes | None:
        """Stop the subscriber for ``methodArgs[0]``; reply with a status line."""
        method = _method_arg(msg, '["method"] or ["method", "node", "subscriber"]')
        node = msg.method_args[1] if len(msg.method_args) > 1 else ""
        kind = msg.method_args[2] if len(msg.method_args) > 2 else ""
        if kind not in _KINDS:
            raise HandlerError(
                f'field "methodArgs[2]": value {kind!r} cannot be stopped: '
                "publishers start on demand and stop when idle; allowed: subscriber"
            )
        status = await control.stop_subscriber(method, node)
        ctx.report("info", status.rstrip("\n"))
        return status.encode()

    return (process_list, process_start, process_stop)
