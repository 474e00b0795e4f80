"""A tiny HTTP/1.1 server on 127.0.0.1 for tests: fixed answers per path, requests counted."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import trio

_REASONS = {200: "OK", 404: "Not Found", 500: "Internal Server Error"}


class LocalHttpServer:
    """Answers ``GET <path>`` with ``routes[path]`` = (status, body); other paths get 404."""

    def __init__(self, routes: Mapping[str, tuple[int, bytes]]) -> None:
        self.routes = dict(routes)
        self.requests: list[str] = []
        self.port = 0

    def url(self, path: str) -> str:
        """The URL of ``path`` on this server."""
        return f"http://127.0.0.1:{self.port}{path}"

    def count(self, path: str) -> int:
        """How many requests for ``path`` were answered."""
        return self.requests.count(path)

    async def serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on a free loopback port and answer until cancelled."""
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._answer, listeners)

    async def _answer(self, stream: trio.SocketStream) -> None:
        async with stream:
            head = b""
            with trio.move_on_after(10):
                while b"\r\n\r\n" not in head and len(head) < 65536:
                    chunk = await stream.receive_some(4096)
                    if not chunk:
                        return
                    head += chunk
            method, path, _version = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
            status, body = self.routes.get(path, (404, b"no such page\n"))
            self.requests.append(path)
            reason = _REASONS.get(status, "Status")
            await stream.send_all(
                f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\n"
                "Content-Type: text/plain\r\nConnection: close\r\n\r\n".encode()
                + (body if method == "GET" else b"")
            )


@asynccontextmanager
async def local_http_server(
    routes: Mapping[str, tuple[int, bytes]],
) -> AsyncIterator[LocalHttpServer]:
    """Run a :class:`LocalHttpServer` for the duration of the ``async with`` block."""
    server = LocalHttpServer(routes)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        yield server
        nursery.cancel_scope.cancel()
