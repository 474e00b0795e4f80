"""One relayed connection of the fault proxy: its state, its byte buffers, its reset.

:class:`RelayedConnection` is what the proxy knows of one accepted connection (its number,
the cancel scope that ends it, whether it was reset or lost bytes); :class:`ChunkBuffer`
holds the bytes read in one direction and not yet delivered; :func:`abort_socket` makes
closing a socket send a TCP RST.

Guarantees: a buffer hands out chunks in the order they were put, and makes ``put`` wait
while it holds ``limit`` bytes or more (back-pressure on the sender).
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections import deque

import attrs
import trio


class ChunkBuffer:
    """The bytes read in one direction and not yet delivered, as ``(read time, bytes)``
    chunks (empty bytes: the end of the stream), with back-pressure above ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self._chunks: deque[tuple[float, bytes]] = deque()
        self._changed = trio.Event()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def put(self, item: tuple[float, bytes]) -> None:
        while self.size >= self.limit:
            await self._changed.wait()
        self._chunks.append(item)
        self.size += len(item[1])
        self._notify()

    async def get(self) -> tuple[float, bytes]:
        while not self._chunks:
            await self._changed.wait()
        return self._chunks.popleft()

    def delivered(self, n: int) -> None:
        self.size -= n
        self._notify()


@attrs.define(eq=False)
class RelayedConnection:
    """One accepted connection: its number (1 for the first), the scope that ends it, whether
    it was reset (``aborted``) and whether an outage in ``drop`` mode discarded bytes of it
    (``damaged``)."""

    number: int
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    aborted: bool = False
    damaged: bool = False

    def reset(self) -> None:
        self.aborted = True
        self.scope.cancel()


def abort_socket(stream: trio.abc.Stream) -> None:
    """Make closing ``stream`` send a TCP RST (SO_LINGER on, 0 s) when it is a socket."""
    if isinstance(stream, trio.SocketStream):
        with contextlib.suppress(OSError):
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
