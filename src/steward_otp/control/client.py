"""The client side of the control socket: one request, or one streaming request.

What the CLI (``steward-otp status``, ``tree``, ``queue``, ``cmd``, ...) uses to talk to a
running node through ``<home>/tmp/control.sock``. Raises ConnectionError when the node's
answer is not a JSON object (or it closes without one).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import trio


async def control_stream(path: Path, request: Mapping[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """Send one streaming request to the control socket at ``path``; yield each answer line
    (the first may be ``{"ok": false, ...}``). Ends when the node closes the connection."""
    stream = await trio.open_unix_socket(str(path))
    async with stream:
        await stream.send_all(json.dumps(request).encode() + b"\n")
        buffer = b""
        while chunk := await stream.receive_some(1 << 20):
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.strip():
                    answer = json.loads(line)
                    if not isinstance(answer, dict):
                        raise ConnectionError("control socket answered a non-object line")
                    yield answer


async def control_request(path: Path, request: Mapping[str, Any]) -> dict[str, Any]:
    """Send one request to the control socket at ``path`` and return its response."""
    stream = await trio.open_unix_socket(str(path))
    async with stream:
        await stream.send_all(json.dumps(request).encode() + b"\n")
        buffer = b""
        while b"\n" not in buffer:
            chunk = await stream.receive_some(1 << 20)
            if not chunk:
                raise ConnectionError("control socket closed without an answer")
            buffer += chunk
    response = json.loads(buffer.split(b"\n", 1)[0])
    if not isinstance(response, dict):
        raise ConnectionError("control socket answered something that is not an object")
    return response
