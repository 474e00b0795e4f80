"""The unix socket input ``<home>/tmp/steward.sock``: the operator's main door.

Protocol: the client writes one JSON or YAML document (a list of messages, or one message)
and shuts down its write side (``nc -NU tmp/steward.sock < msg.json``); the node answers one
JSON line per message (see :class:`steward_otp.inputs.intake.Answer`) and closes. A document
larger than ``max_document_bytes`` is refused whole with one error line. The socket file is
created with mode 0600 (only the node's user can hand it messages) and removed on stop.

Limits (see :mod:`steward_otp.inputs.document_stream` and
:mod:`steward_otp.inputs.connections`): at most ``limits.max_connections`` clients at once,
an idle and a total read timeout, answers bounded in size, and an answer for an empty
document too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from steward_otp.inputs.connections import ConnectionGate, Limits
from steward_otp.inputs.document_stream import (
    DEFAULT_MAX_DOCUMENT_BYTES,
    AcceptDocument,
    answer_client,
    read_document,
    too_large_line,
)
from steward_otp.inputs.unix_server import serve_unix_socket

__all__ = [
    "DEFAULT_MAX_DOCUMENT_BYTES",
    "AcceptDocument",
    "UnixSocketInput",
    "answer_client",
    "read_document",
    "too_large_line",
]


class UnixSocketInput:
    """Supervised process serving the unix socket input. See the module docstring."""

    SOURCE = "socket"

    def __init__(
        self,
        path: Path,
        accept: AcceptDocument,
        *,
        max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
        limits: Limits | None = None,
    ) -> None:
        self.path = path
        self.accept = accept
        self.max_document_bytes = max_document_bytes
        # The gate outlives restarts of this process: clients it counts are still open.
        self.gate = ConnectionGate(limits)
        self._info: dict[str, object] = {"path": str(path)}

    @property
    def info(self) -> dict[str, object]:
        """What the tree snapshot shows: the path, clients served now, refused and dropped."""
        return {
            **self._info,
            "clients": self.gate.active,
            "refused": self.gate.refused,
            "dropped": self.gate.evicted,
        }

    async def run(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled; ready once the socket accepts connections."""
        await serve_unix_socket(self.path, self._serve, task_status=task_status)

    async def _serve(self, stream: trio.SocketStream) -> None:
        await answer_client(stream, self.accept, self.max_document_bytes, self.SOURCE, self.gate)
