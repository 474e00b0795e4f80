"""The handlers every node serves out of the box."""

from __future__ import annotations

from steward_otp.handlers.base import Handler
from steward_otp.handlers.commands import COMMAND_HANDLERS
from steward_otp.handlers.liveness import LIVENESS_HANDLERS
from steward_otp.handlers.output import OUTPUT_HANDLERS


def builtin_handlers() -> list[Handler]:
    """The built-in handlers, in subscriber start order."""
    return [*OUTPUT_HANDLERS, *LIVENESS_HANDLERS, *COMMAND_HANDLERS]
