"""The unix socket input ``<home>/tmp/steward.sock``: the operator's main door.

Protocol: the client writes one JSON or YAML document (a list of messages, or one message)
and shuts down its write side (``nc -NU tmp/steward.sock < msg.json``); the node answers one
JSON line per message (see :class:`steward_otp.inputs.intake.Answer`) and closes. A document
larger than ``max_document_bytes`` is refused whole with one error line. The socket file is
created with mode 0600 (only the node's user can hand it messages) and removed on stop.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from steward_otp.inputs.intake import Answer, document_rejection
from steward_otp.inputs.unix_server import serve_unix_socket

log = logging.getLogger(__name__)

DEFAULT_MAX_DOCUMENT_BYTES = 16 * 1024 * 1024

AcceptDocument = Callable[[bytes], Awaitable[list[Answer]]]


def too_large_line(limit: int) -> str:
    """The answer to a document over the size limit."""
    rejection = document_rejection(
        f"document: larger than {limit} bytes; nothing was accepted",
        f"documents up to {limit} bytes",
    )
    return json.dumps(rejection) + "\n"


async def read_document(stream: trio.abc.ReceiveStream, limit: int) -> bytes | None:
    """Everything the client sends until it shuts down its side; None when over ``limit``.

    An oversized document is read to its end and discarded, so the client, still writing,
    gets its answer instead of a broken pipe.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return b"".join(chunks) if size <= limit else None
        size += len(chunk)
        if size <= limit:
            chunks.append(bytes(chunk))
        else:
            chunks.clear()


async def answer_client(
    stream: trio.abc.Stream, accept: AcceptDocument, limit: int, source: str
) -> None:
    """Serve one client connection: read, accept, answer. Client errors are logged only."""
    try:
        async with stream:
            document = await read_document(stream, limit)
            if document is None:
                await stream.send_all(too_large_line(limit).encode())
                return
            answers = await accept(document)
            await stream.send_all("".join(a.to_json_line() for a in answers).encode())
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
        log.info("%s: client went away: %s", source, exc)


class UnixSocketInput:
    """Supervised process serving the unix socket input. See the module docstring."""

    def __init__(
        self,
        path: Path,
        accept: AcceptDocument,
        *,
        max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
    ) -> None:
        self.path = path
        self.accept = accept
        self.max_document_bytes = max_document_bytes
        self.info: dict[str, object] = {"path": str(path)}

    async def run(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled; ready once the socket accepts connections."""
        await serve_unix_socket(self.path, self._serve, task_status=task_status)

    async def _serve(self, stream: trio.SocketStream) -> None:
        await answer_client(stream, self.accept, self.max_document_bytes, "socket")
