"""Periodic publishers that a node runs on its own: the hello to the central node."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any, Protocol

import trio

from steward_otp.message import Message

HELLO_DIRECTORY = "hello-messages"
HELLO_FILE = "hello.log"


class Submitter(Protocol):
    """Something with a node name that accepts messages into its outbox."""

    @property
    def node_name(self) -> str: ...

    def submit(self, messages: Sequence[Message]) -> Awaitable[list[str]]: ...


def hello_message(node: str, central: str, *, ack_timeout: int) -> Message:
    """The hello a node sends to the central node (Steward §5.6)."""
    return Message(
        to_node=central,
        from_node=node,
        method="REQHello",
        directory=HELLO_DIRECTORY,
        file_name=HELLO_FILE,
        ack_timeout=ack_timeout,
        retries=1,
        reply_method="REQNone",
    )


async def hello_loop(
    node: Submitter,
    *,
    central: str,
    interval: float,
    ack_timeout: int,
    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Send a hello to ``central`` now and then every ``interval`` seconds, until cancelled."""
    task_status.started()
    while True:
        await node.submit([hello_message(node.node_name, central, ack_timeout=ack_timeout)])
        await trio.sleep(interval)
