"""Request-method handlers: one module per method family, and the registry of them.

:func:`builtin_handlers` lists every method a node serves out of the box; user code adds its
own with the :func:`handler` decorator and ``Node(config, handlers=[...])``.
"""

from steward_otp.handlers.base import (
    Handler,
    HandlerContext,
    HandlerError,
    HandlerTable,
    NodeServices,
    QueueControl,
    SubscriberControl,
    handler,
)
from steward_otp.handlers.builtin import builtin_handlers

__all__ = [
    "Handler",
    "HandlerContext",
    "HandlerError",
    "HandlerTable",
    "NodeServices",
    "QueueControl",
    "SubscriberControl",
    "builtin_handlers",
    "handler",
]
