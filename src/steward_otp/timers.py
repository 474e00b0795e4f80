"""Periodic publishers that a node runs on its own: the hello to the central node, and the
loop the key and ACL update requests use (:func:`submit_every`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import trio

from steward_otp.message import Message

HELLO_DIRECTORY = "hello-messages"
HELLO_FILE = "hello.log"


class Outbox(Protocol):
    """Something that accepts messages into its outbox."""

    def submit(self, messages: Sequence[Message]) -> Awaitable[list[str]]: ...


class Submitter(Outbox, Protocol):
    """An outbox with a node name."""

    @property
    def node_name(self) -> str: ...


async def submit_every(
    node: Outbox,
    interval: float,
    make: Callable[[], Message],
    *,
    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Submit ``make()`` to ``node`` now and then every ``interval`` seconds, until
    cancelled (a fresh message each time: ``make`` sees the state of the moment)."""
    task_status.started()
    while True:
        await node.submit([make()])
        await trio.sleep(interval)


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
    await submit_every(
        node,
        interval,
        lambda: hello_message(node.node_name, central, ack_timeout=ack_timeout),
        task_status=task_status,
    )
