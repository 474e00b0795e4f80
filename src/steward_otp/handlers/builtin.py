"""The handlers every node serves out of the box."""

from __future__ import annotations

from steward_otp.handlers.base import Handler, QueueControl, SubscriberControl
from steward_otp.handlers.commands import COMMAND_HANDLERS
from steward_otp.handlers.copy import CopySessions, copy_handlers
from steward_otp.handlers.http import HTTP_HANDLERS
from steward_otp.handlers.liveness import LIVENESS_HANDLERS
from steward_otp.handlers.output import OUTPUT_HANDLERS
from steward_otp.handlers.process import process_handlers
from steward_otp.handlers.queue import queue_handlers
from steward_otp.handlers.relay import RELAY_HANDLERS
from steward_otp.handlers.tail import TAIL_HANDLERS


def builtin_handlers(
    processes: SubscriberControl, queue: QueueControl, copies: CopySessions | None = None
) -> list[Handler]:
    """The built-in handlers, in subscriber start order (fresh copy handlers per call).

    ``processes`` is what the ``REQOpProcess*`` handlers act on and ``queue`` what the
    ``REQOpQueue*`` handlers ask; no other handler is given either. ``copies`` is the
    node's ``copies`` supervisor of copy sessions (the node runs it in its tree).
    """
    return [
        *process_handlers(processes),
        *OUTPUT_HANDLERS,
        *LIVENESS_HANDLERS,
        *COMMAND_HANDLERS,
        *TAIL_HANDLERS,
        *HTTP_HANDLERS,
        *queue_handlers(queue),
        *RELAY_HANDLERS,
        *copy_handlers(copies),
    ]
