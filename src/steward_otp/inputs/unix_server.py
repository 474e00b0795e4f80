"""Serving a unix stream socket owned by the node's user (mode 0600), removed on stop."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

SOCKET_MODE = 0o600


def _prepare(path: Path) -> None:
    # Start-up only: a local mkdir and unlink, not worth a worker thread.
    path.parent.mkdir(mode=0o770, parents=True, exist_ok=True)
    path.unlink(missing_ok=True)


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)


async def serve_unix_socket(
    path: Path,
    handler: Callable[[trio.SocketStream], Awaitable[object]],
    *,
    backlog: int = 128,
    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on ``path`` and run ``handler`` for each connection, until cancelled.

    A stale socket file is replaced; the new one gets mode 0600 before the first client can
    connect (only the node's own user may use it) and is removed on the way out. Ready once
    the socket accepts connections.
    """
    _prepare(path)
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        await sock.bind(str(path))
        os.chmod(path, SOCKET_MODE)
        sock.listen(backlog)
        task_status.started()
        await trio.serve_listeners(handler, [trio.SocketListener(sock)])
    finally:
        sock.close()
        _remove(path)


async def send_document(path: Path, document: bytes) -> list[dict[str, Any]]:
    """Client side of the input protocol: send ``document``, return the JSON answer lines."""
    stream = await trio.open_unix_socket(str(path))
    async with stream:
        await stream.send_all(document)
        await stream.send_eof()
        chunks = []
        while chunk := await stream.receive_some(1 << 16):
            chunks.append(chunk)
    return [json.loads(line) for line in b"".join(chunks).decode().splitlines() if line]
