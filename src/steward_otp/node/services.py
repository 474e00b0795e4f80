"""What a node's handlers get as ``ctx.services``: its everyday capabilities, nothing else.

:class:`HandlerServices` is a view of a node that offers exactly the members of
:class:`~steward_otp.handlers.base.NodeServices`, each passed on to the node when it is
called. Process control (:class:`~steward_otp.handlers.base.SubscriberControl`),
control-socket requests (:class:`~steward_otp.handlers.base.QueueControl`) and the rest of
the node (its store, configuration, security) are not among its members.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from steward_otp.handlers.base import Level, NodeServices
from steward_otp.message import Message


class HandlerServices:
    """``node``'s :class:`~steward_otp.handlers.base.NodeServices` and nothing more, as its
    Subscribers hand them to handlers. One per node (the central error log keys its
    per-sender limits by it). Every call goes to ``node`` as it is at the time of the call."""

    __slots__ = ("__weakref__", "_node")

    def __init__(self, node: NodeServices) -> None:
        self._node = node

    @property
    def node_name(self) -> str:
        """This node's name."""
        return self._node.node_name

    @property
    def home(self) -> Path:
        """This node's home folder."""
        return self._node.home

    @property
    def data_dir(self) -> Path:
        """Where handlers write results."""
        return self._node.data_dir

    async def submit(self, messages: Sequence[Message]) -> list[str]:
        """Accept messages into the durable outbox; returns their ids once on disk."""
        return await self._node.submit(messages)

    def report(self, level: Level, text: str) -> None:
        """Log locally and forward to the central error log."""
        self._node.report(level, text)

    def test_event(self, message: Message) -> None:
        """Deliver a REQTest message to the node's ``test_events``."""
        self._node.test_event(message)

    async def write_file(self, path: Path, data: bytes, *, append: bool) -> None:
        """Write ``data`` to ``path`` durably."""
        await self._node.write_file(path, data, append=append)

    async def write_many(
        self, writes: Mapping[Path, bytes], *, append: bool
    ) -> dict[Path, OSError | None]:
        """Write many files durably (see FileWriter)."""
        return await self._node.write_many(writes, append=append)

    def note_hello(self, node: str) -> None:
        """Remember when ``node`` last said hello."""
        self._node.note_hello(node)


__all__ = ["HandlerServices"]
