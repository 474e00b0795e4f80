"""The HTTP input ``http_listener`` (``HOST:PORT``): POST a message document, get JSON back.

``POST`` any path with a JSON or YAML document (a list of messages, or one message) as the
body (``curl --data-binary @msg.json http://127.0.0.1:8092/``). Every response body is
JSON:

* ``202 Accepted`` — ``{"accepted": [answer, ...]}``: every message is durable in the
  outbox (nothing is answered before that).
* ``400 Bad Request`` — ``{"errors": [answer, ...], "accepted": [answer, ...]}``: some
  messages (or the whole document) were rejected. The ones listed under ``accepted`` *were*
  accepted and will be delivered; resend only the rejected ones. An empty body is a 400 too.
  At most :data:`~steward_otp.inputs.answers.MAX_REJECTED_ANSWERS` rejected messages are
  listed; one more entry (``index`` null) counts the others.
* ``413 Content Too Large`` — ``{"errors": [...], "accepted": []}``: the body is larger
  than the limit (by its ``Content-Length``, before reading it, or while reading it);
  nothing was accepted.
* ``405 Method Not Allowed`` — any method but POST (``Allow: POST``).

An answer is the same object the socket inputs send as a line (see
:class:`steward_otp.inputs.intake.Answer`). The server is hypercorn's trio worker; the
ASGI application is :class:`HttpInputApp`. A client that sends nothing for
:data:`~steward_otp.inputs.connections.DEFAULT_READ_TIMEOUT` seconds is disconnected (also
while it waits for its answer, so none takes that long), and
one document causes at most :data:`~steward_otp.inputs.answers.MAX_REPORTS_PER_DOCUMENT`
error-log lines.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import trio

from steward_otp.asgi_serve import ServeError, bind_spec, first_of, serve_asgi
from steward_otp.inputs.answers import bounded_answers, empty_document
from steward_otp.inputs.connections import DEFAULT_READ_TIMEOUT
from steward_otp.inputs.document_stream import DEFAULT_MAX_DOCUMENT_BYTES, AcceptDocument
from steward_otp.inputs.intake import document_rejection
from steward_otp.inputs.tcp import ListenError, Report, parse_listen_address, reporting

log = logging.getLogger(__name__)
_server_log = logging.getLogger(f"{__name__}.server")
# hypercorn's own start line ("Running on ... (CTRL + C to quit)") is for interactive use;
# the input logs where it listens itself. Server errors still come through.
_server_log.setLevel(logging.WARNING)

Scope = MutableMapping[str, Any]
Event = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Event]]
Send = Callable[[Event], Awaitable[None]]

SOURCE = "HTTPListener"


def _too_large(limit: int) -> dict[str, Any]:
    return document_rejection(
        f"document: larger than {limit} bytes; nothing was accepted",
        f"documents up to {limit} bytes",
    )


class _TooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


class HttpInputApp:
    """The ASGI application behind the HTTP input (``http`` and ``lifespan`` scopes).

    ``accept`` is the node's input path (parse, validate, make durable); ``limit`` the
    largest body accepted, in bytes. Rejected messages are reported through ``report``.
    """

    def __init__(self, accept: AcceptDocument, report: Report, limit: int) -> None:
        self.accept = reporting(accept, report, SOURCE)
        self.report = report
        self.limit = limit
        self.requests = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            self.requests += 1
            await self._request(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            event = await receive()
            if event["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif event["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _request(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            error = document_rejection(
                f"HTTP method {scope['method']} is not allowed", "POST with a message document"
            )
            await _respond(send, 405, {"errors": [error], "accepted": []}, [(b"allow", b"POST")])
            return
        try:
            body = await self._body(scope, receive)
        except _TooLarge:
            self.report("warning", f"error: {SOURCE}: body larger than {self.limit} bytes refused")
            body_error = {"errors": [_too_large(self.limit)], "accepted": []}
            await _respond(send, 413, body_error, [(b"connection", b"close")])
            return
        except _Disconnected:
            log.info("%s: client went away before sending its whole body", SOURCE)
            return
        answers = await self.accept(body)
        if not answers:
            await _respond(send, 400, {"errors": [empty_document()], "accepted": []})
            return
        shown = bounded_answers(answers)
        accepted = [a for a in shown if a["status"] == "accepted"]
        errors = [a for a in shown if a["status"] != "accepted"]
        if errors:
            await _respond(send, 400, {"errors": errors, "accepted": accepted})
        else:
            await _respond(send, 202, {"accepted": accepted})

    async def _body(self, scope: Scope, receive: Receive) -> bytes:
        """The whole body; raises _TooLarge as soon as it is known to exceed the limit."""
        for name, value in scope["headers"]:
            if name.lower() == b"content-length":
                try:
                    if int(value) > self.limit:
                        raise _TooLarge
                except ValueError:
                    pass  # h11 has already refused a malformed Content-Length
        chunks: list[bytes] = []
        size = 0
        while True:
            event = await receive()
            if event["type"] == "http.disconnect":
                raise _Disconnected
            chunk = event.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                raise _TooLarge
            chunks.append(chunk)
            if not event.get("more_body", False):
                return b"".join(chunks)


async def _respond(
    send: Send,
    status: int,
    body: dict[str, Any],
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    payload = (json.dumps(body, ensure_ascii=False) + "\n").encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class HttpInput:
    """Supervised process serving the HTTP input. See the module docstring.

    Ready once the listener accepts connections. A bind failure is a crash raising
    :class:`~steward_otp.inputs.tcp.ListenError` ("cannot listen on HOST:PORT: ...").
    Cancellation stops the server at once: a request still waiting for its answer gets
    none (whatever was already accepted stays durable; resending it with the same ``id``
    does not duplicate it).
    """

    def __init__(
        self,
        address: str,
        accept: AcceptDocument,
        report: Report,
        *,
        max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
    ) -> None:
        self.address = parse_listen_address(address)
        self.app = HttpInputApp(accept, report, max_document_bytes)
        self.urls: list[str] = []

    @property
    def info(self) -> dict[str, object]:
        """What the tree snapshot shows: the address, the bound URLs, requests served."""
        return {"address": self.address.text, "url": self.urls, "requests": self.app.requests}

    async def run(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled."""
        try:
            async with trio.open_nursery() as nursery:
                self.urls = await nursery.start(
                    functools.partial(
                        serve_asgi,
                        self.app,
                        bind_spec(self.address.host, self.address.port),
                        setting="http_listener",
                        error_logger=_server_log,
                        read_timeout=int(DEFAULT_READ_TIMEOUT),  # half-sent requests end
                    )
                )
                log.info("HTTP input listening on %s", ", ".join(self.urls))
                task_status.started()
        except (ServeError, BaseExceptionGroup) as failure:
            refused = first_of(failure, ServeError)
            if refused is None:
                raise
            reason = refused.reason
            raise ListenError(f"cannot listen on {self.address.text}: {reason}") from failure


__all__ = ["HttpInput", "HttpInputApp", "ListenError"]
