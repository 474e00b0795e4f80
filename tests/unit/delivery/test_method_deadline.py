"""When a handler is cancelled: ``methodTimeout`` seconds after it starts, the node's
``default_method_timeout`` (fractions kept) when the message sets none, never for ``-1``."""

from __future__ import annotations

import math

import pytest
import trio

from steward_otp.inbound.handler_runs import method_deadline
from steward_otp.message import Message


@pytest.mark.parametrize(
    ("method_timeout", "default", "seconds"),
    [(5, 10.0, 5), (0, 2.5, 2.5), (0, 0.5, 0.5), (-7, 3.0, 3.0), (-1, 10.0, math.inf)],
)
async def test_the_deadline_is_the_messages_timeout_or_the_nodes_default(
    autojump_clock: trio.testing.MockClock, method_timeout: int, default: float, seconds: float
) -> None:
    message = Message(to_node="ship1", method="REQPing", method_timeout=method_timeout)
    assert method_deadline(message, default) == trio.current_time() + seconds
