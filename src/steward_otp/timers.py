"""Periodic publishers that a node runs on its own: the hello to the central node, and the
loop the key and ACL update requests use (:func:`submit_every`).

A round whose message the outbox cannot store for a full disk is skipped with one log line;
the timer keeps running and the next round tries again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import trio

from steward_otp.message import Message
from steward_otp.store.schema import StoreFull

log = logging.getLogger(__name__)

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
    cancelled (a fresh message each time: ``make`` sees the state of the moment).

    A round the outbox refuses for a full disk (:class:`~steward_otp.store.StoreFull`) is
    skipped with one log line, not retried before the next round; any other error
    propagates (the timer's supervisor restarts it)."""
    task_status.started()
    while True:
        message = make()
        try:
            await node.submit([message])
        except StoreFull as exc:
            log.warning(
                "%s to %s not sent this round, next in %g s: %s",
                message.method,
                message.to_node,
                interval,
                exc,
            )
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
