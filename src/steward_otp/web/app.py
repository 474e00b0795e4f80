"""The web view's HTTP routes (starlette): pages, the JSON API and its event streams.

Pages (HTML; the data comes from the API through the page's script):

* ``/fleet`` every node heard from; ``/nodes/{name}`` a node's live supervision tree;
  ``/queue`` held messages (cancel, retry); ``/send`` compose and watch the replies;
  ``/errors`` the central error log, live; ``/login`` (public) the token form.

API (JSON; ``text/event-stream`` for the streams, one ``data:`` JSON object per event):

* ``GET /api/session`` this node's name and the session's CSRF token;
* ``GET /api/fleet``, ``GET /api/status``, ``GET /api/tree``, ``GET /api/methods``;
* ``GET /api/nodes/{name}/tree/events`` (stream): the tree, again and again;
* ``GET /api/queue?toNode=&states=a,b``; ``POST /api/queue/cancel`` and
  ``POST /api/queue/retry`` with ``{"id": ...}``;
* ``POST /api/send`` with ``{"nodes": [...], "command": "..."}`` or ``{"document": "..."}``
  → the answers and the ``watch`` to pass to ``GET /api/replies`` (stream);
* ``GET /api/errors?lines=N``; ``GET /api/errors/events?lines=N`` (stream);
* ``POST /logout``.

A refused request is answered 400 with ``{"error": ...}`` naming the field, the value and
what is allowed -- the CLI's words, since the same operations answer (see
:mod:`steward_otp.web.operations`). Access rules: :mod:`steward_otp.web.access`.
"""

from __future__ import annotations

import html
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs, quote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from steward_otp.web import operations
from steward_otp.web.access import SESSION_COOKIE, AccessControl
from steward_otp.web.operations import OperationError, WebNode
from steward_otp.web.sessions import Sessions
from steward_otp.web.token import TokenCheck

Endpoint = Callable[[Request], Awaitable[Response]]

HERE: Final = Path(__file__).parent
STATIC: Final = HERE / "static"
MAX_JSON_BYTES: Final = operations.MAX_DOCUMENT_BYTES + 64 * 1024
MAX_FORM_BYTES: Final = 8 * 1024
ERROR_LINES_MAX: Final = 10_000

PAGES: Final = {
    "fleet": "Fleet",
    "queue": "Queue",
    "send": "Send",
    "errors": "Errors",
}


class _BodyTooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _BodyTooLarge(f"request body larger than {limit} bytes")
    return body


def _error(status: int, text: str) -> JSONResponse:
    return JSONResponse({"error": text}, status_code=status)


def _events(events: AsyncIterator[Mapping[str, Any]]) -> StreamingResponse:
    """Server-sent events: one ``data:`` line of JSON per event."""

    async def lines() -> AsyncIterator[bytes]:
        yield b": stream open\n\n"
        async for event in events:
            yield b"data: " + json.dumps(event, ensure_ascii=False).encode() + b"\n\n"

    return StreamingResponse(
        lines(), media_type="text/event-stream", headers={"x-accel-buffering": "no"}
    )


def _layout(node_name: str, title: str, body: str, script: str) -> str:
    links = "".join(
        f'<a href="/{path}" data-page="{path}">{label}</a>' for path, label in PAGES.items()
    )
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)} · {html.escape(node_name)} · steward-otp</title>"
        '<link rel="stylesheet" href="/static/app.css">'
        '<script src="/static/common.js" defer></script>'
        f'<script src="/static/{script}" defer></script></head>\n'
        f'<body><header><strong>steward-otp</strong> <span class="node">'
        f"{html.escape(node_name)}</span><nav>{links}"
        f'<a href="/nodes/{quote(node_name, safe="")}" data-page="node">Tree</a></nav>'
        '<button id="logout" type="button">Log out</button></header>\n'
        f"<main>{body}</main></body></html>\n"
    )


def _page_body(name: str) -> str:
    return (STATIC / "pages" / f"{name}.html").read_text(encoding="utf-8")


def _login_page(message: str, next_path: str, status: int = 200) -> HTMLResponse:
    text = (STATIC / "pages" / "login.html").read_text(encoding="utf-8")
    text = text.replace("{message}", html.escape(message)).replace(
        "{next}", html.escape(next_path, quote=True)
    )
    return HTMLResponse(text, status_code=status)


def _safe_next(value: str | None) -> str:
    """A local path to go to after login; anything else (another site) becomes /fleet."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/fleet"


def build_app(
    node: WebNode, *, tokens: TokenCheck, sessions: Sessions, error_log: Path
) -> AccessControl:
    """The web view of ``node`` as an ASGI application, wrapped in its access control."""
    me = node.node_name

    async def home(request: Request) -> Response:
        return RedirectResponse("/fleet", status_code=303)

    async def login_form(request: Request) -> Response:
        return _login_page("", _safe_next(request.query_params.get("next")))

    async def login(request: Request) -> Response:
        try:
            form = parse_qs((await _read_body(request, MAX_FORM_BYTES)).decode("utf-8"))
        except (_BodyTooLarge, UnicodeDecodeError):
            return _login_page("The form could not be read.", "/fleet", 400)
        next_path = _safe_next((form.get("next") or [""])[0])
        token = (form.get("token") or [""])[0].strip()
        if not tokens.matches(token):
            why = "That token is not valid."
            if not tokens.stored():  # the details (file, reason) are in the node's log
                why = "This node has no web token yet: make one with steward-otp web token."
            return _login_page(why, next_path, 401)
        session = sessions.create()
        response = RedirectResponse(next_path, status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            session.id,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response

    async def logout(request: Request) -> Response:
        session = request.state.session
        if session is not None:
            sessions.drop(session.id)
        response = JSONResponse({"ok": True})
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    def page(name: str, title: str) -> Endpoint:
        async def show(request: Request) -> Response:
            return HTMLResponse(_layout(me, title, _page_body(name), f"{name}.js"))

        return show

    async def node_page(request: Request) -> Response:
        name = request.path_params["name"]
        body = _page_body("node").replace("{node}", html.escape(name))
        return HTMLResponse(_layout(me, f"Node {name}", body, "node.js"))

    async def session_info(request: Request) -> Response:
        session = request.state.session
        return JSONResponse({"node": me, "csrf": session.csrf if session is not None else None})

    async def control(request: Mapping[str, Any]) -> Response:
        try:
            return JSONResponse(await operations.ask(node, request))
        except OperationError as exc:
            return _error(400, str(exc))

    async def api_fleet(request: Request) -> Response:
        return JSONResponse(await operations.fleet(node))

    async def api_status(request: Request) -> Response:
        return await control({"op": "status"})

    async def api_tree(request: Request) -> Response:
        return await control({"op": "tree"})

    async def api_methods(request: Request) -> Response:
        return await control({"op": "methods"})

    async def api_node_tree(request: Request) -> Response:
        name = request.path_params["name"]
        if name == me:
            return _events(operations.local_tree_events(node))
        return _events(operations.remote_tree_events(node, name))

    async def api_queue(request: Request) -> Response:
        query: dict[str, Any] = {"op": "queue.ls"}
        if to_node := request.query_params.get("toNode"):
            query["toNode"] = to_node
        if states := request.query_params.get("states"):
            query["states"] = [s for s in states.split(",") if s]
        return await control(query)

    async def json_body(request: Request) -> dict[str, Any] | Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip()
        if content_type != "application/json":
            return _error(415, f"content-type {content_type!r}; allowed: 'application/json'")
        try:
            body = json.loads(await _read_body(request, MAX_JSON_BYTES))
        except _BodyTooLarge as exc:
            return _error(413, str(exc))
        except ValueError as exc:
            return _error(400, f"the request body is not JSON: {exc}")
        if not isinstance(body, dict):
            return _error(400, "the request body must be a JSON object")
        return body

    def queue_action(op: str) -> Endpoint:
        async def act(request: Request) -> Response:
            body = await json_body(request)
            if isinstance(body, Response):
                return body
            return await control({"op": op, "id": body.get("id")})

        return act

    async def api_send(request: Request) -> Response:
        body = await json_body(request)
        if isinstance(body, Response):
            return body
        try:
            document = operations.request_document(body)
            sent = await operations.submit_document(node, document)
        except OperationError as exc:
            return _error(400, str(exc))
        return JSONResponse(sent.to_dict(), status_code=200 if not sent.refused else 400)

    async def api_replies(request: Request) -> Response:
        try:
            watch = operations.watch_from_query(request.query_params)
            events = await operations.follow_replies(node, watch)
        except OperationError as exc:
            return _error(400, str(exc))
        return _events(events)

    def error_count(request: Request) -> int:
        return operations.check_count(
            request.query_params.get("lines"), "lines", default=200, maximum=ERROR_LINES_MAX
        )

    async def api_errors(request: Request) -> Response:
        try:
            count = error_count(request)
        except OperationError as exc:
            return _error(400, str(exc))
        lines = await operations.error_log_lines(error_log, count)
        return JSONResponse({"path": str(error_log), "lines": lines})

    async def api_error_events(request: Request) -> Response:
        try:
            count = error_count(request)
        except OperationError as exc:
            return _error(400, str(exc))

        async def batches() -> AsyncIterator[Mapping[str, Any]]:
            first = True
            async for lines in operations.tail_error_log(error_log, last=count):
                yield {"event": "lines", "lines": lines, "first": first}
                first = False

        return _events(batches())

    routes = [
        Route("/", home),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        *(Route(f"/{name}", page(name, title)) for name, title in PAGES.items()),
        Route("/nodes/{name}", node_page),
        Route("/api/session", session_info),
        Route("/api/fleet", api_fleet),
        Route("/api/status", api_status),
        Route("/api/tree", api_tree),
        Route("/api/methods", api_methods),
        Route("/api/nodes/{name}/tree/events", api_node_tree),
        Route("/api/queue", api_queue),
        Route("/api/queue/cancel", queue_action("queue.cancel"), methods=["POST"]),
        Route("/api/queue/retry", queue_action("queue.retry"), methods=["POST"]),
        Route("/api/send", api_send, methods=["POST"]),
        Route("/api/replies", api_replies),
        Route("/api/errors", api_errors),
        Route("/api/errors/events", api_error_events),
        Mount("/static", app=StaticFiles(directory=STATIC / "assets")),
    ]
    return AccessControl(Starlette(routes=routes), tokens=tokens, sessions=sessions)


__all__ = ["PAGES", "build_app"]
