"""Who may use the web view: the token, the session cookie and the CSRF checks.

:class:`AccessControl` wraps the whole application (ASGI middleware), so no route can be
reached without passing it; only the login page, the login form's POST and ``/static/``
(style sheet and scripts, no data) are public. For everything else:

* ``Authorization: Bearer <token>`` (the API's way): the token must match the stored hash,
  or the answer is 401 -- a cookie does not rescue a wrong token. A browser never adds this
  header by itself, so such requests need no CSRF token.
* otherwise the session cookie (set by the login form; HttpOnly, SameSite=Strict): it must
  name a live session, or the answer is 401 (pages: a page linking to the login form).
* a state-changing request (any method but GET, HEAD, OPTIONS) made with the cookie must
  come from the view's own origin (``Origin``, when sent, equals the request's own origin;
  ``Sec-Fetch-Site``, when sent, is ``same-origin`` or ``none``) and carry the session's
  CSRF token in ``X-CSRF-Token``; otherwise 403 and nothing is done.

The login form's POST gets the same origin check (no session exists yet to hold a CSRF
token). Every answer carries a strict Content-Security-Policy (scripts and styles from the
view itself only), ``X-Frame-Options: DENY``, ``nosniff`` and ``no-store``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import CookieError, SimpleCookie
from typing import Any, Final
from urllib.parse import quote

from steward_otp.web.sessions import Session, Sessions
from steward_otp.web.token import TokenCheck

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SESSION_COOKIE: Final = "steward_web_session"
CSRF_HEADER: Final = "x-csrf-token"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC_PATHS: Final = frozenset({"/login"})
PUBLIC_PREFIXES: Final = ("/static/",)

SECURITY_HEADERS: Final = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),  # "no-referrer" makes forms send Origin: null
    (b"cache-control", b"no-store"),
]


def headers_of(scope: Scope) -> dict[str, str]:
    """The request headers, lower-cased names, latin-1 values (the last of repeats wins)."""
    return {
        name.decode("latin-1").lower(): value.decode("latin-1")
        for name, value in scope.get("headers") or []
    }


def cookie_value(headers: dict[str, str], name: str) -> str | None:
    """One cookie of the request, or None."""
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except CookieError:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None


def own_origin(scope: Scope, headers: dict[str, str]) -> str:
    """The origin the request was sent to: ``scheme://host[:port]`` from the Host header."""
    scheme = "https" if scope.get("scheme") in ("https", "wss") else "http"
    return f"{scheme}://{headers.get('host', '')}"


def cross_site_reason(scope: Scope, headers: dict[str, str]) -> str | None:
    """Why the request does not come from the view's own pages, or None when it may."""
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return f"Sec-Fetch-Site is {fetch_site!r}; allowed: 'same-origin'"
    origin = headers.get("origin")
    if origin is not None and origin != own_origin(scope, headers):
        return f"Origin {origin!r} is not this view's origin {own_origin(scope, headers)!r}"
    return None


def is_public(method: str, path: str) -> bool:
    """Whether the request needs no login: the login form (GET and its POST) and /static/."""
    return path in PUBLIC_PATHS or (method in SAFE_METHODS and path.startswith(PUBLIC_PREFIXES))


async def send_simple(
    send: Send, status: int, body: bytes, content_type: bytes, extra: list[tuple[bytes, bytes]]
) -> None:
    """Answer with ``status`` and ``body`` (the security headers are added by the wrapper)."""
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _html_401(path: str) -> bytes:
    target = "/login?next=" + quote(path, safe="/")
    return (
        "<!doctype html><html><head><meta charset=utf-8><title>Log in</title>"
        f'<meta http-equiv="refresh" content="0; url={target}"></head>'
        f'<body><p>401: log in first: <a href="{target}">log in</a></p></body></html>'
    ).encode()


class AccessControl:
    """ASGI middleware enforcing the rules of the module docstring on every request."""

    def __init__(self, app: ASGIApp, *, tokens: TokenCheck, sessions: Sessions) -> None:
        self.app = app
        self.tokens = tokens
        self.sessions = sessions
        self.refused = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":  # a websocket: none served; closing first is a 403
            await send({"type": "websocket.close", "code": 1008})
            return

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                names = {name.lower() for name, _ in message.get("headers") or []}
                message["headers"] = [
                    *(message.get("headers") or []),
                    *((n, v) for n, v in SECURITY_HEADERS if n not in names),
                ]
            await send(message)

        method = str(scope.get("method", "GET")).upper()
        path = str(scope.get("path", "/"))
        headers = headers_of(scope)
        scope.setdefault("state", {})
        if is_public(method, path):
            if method not in SAFE_METHODS and (why := cross_site_reason(scope, headers)):
                await self._forbidden(secured, path, why)
                return
            await self.app(scope, receive, secured)
            return
        authorization = headers.get("authorization")
        session: Session | None = None
        if authorization is not None:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not self.tokens.matches(token.strip()):
                await self._unauthorized(secured, path, "the bearer token is not valid")
                return
        else:
            session = self.sessions.get(cookie_value(headers, SESSION_COOKIE))
            if session is None:
                await self._unauthorized(secured, path, "log in, or send Authorization: Bearer")
                return
            if method not in SAFE_METHODS:
                why = cross_site_reason(scope, headers)
                if why is None and not session.csrf_matches(headers.get(CSRF_HEADER)):
                    why = "the X-CSRF-Token header is missing or not this session's"
                if why is not None:
                    await self._forbidden(secured, path, why)
                    return
        scope["state"]["session"] = session
        await self.app(scope, receive, secured)

    async def _unauthorized(self, send: Send, path: str, why: str) -> None:
        self.refused += 1
        challenge = [(b"www-authenticate", b'Bearer realm="steward-otp"')]
        if path.startswith("/api/"):
            body = json.dumps({"error": f"401 unauthorized: {why}"}).encode()
            await send_simple(send, 401, body, b"application/json", challenge)
        else:
            await send_simple(send, 401, _html_401(path), b"text/html; charset=utf-8", challenge)

    async def _forbidden(self, send: Send, path: str, why: str) -> None:
        self.refused += 1
        text = f"403 forbidden: cross-site or unprotected request refused: {why}"
        if path.startswith("/api/"):
            await send_simple(
                send, 403, json.dumps({"error": text}).encode(), b"application/json", []
            )
        else:
            await send_simple(send, 403, text.encode(), b"text/plain; charset=utf-8", [])


__all__ = [
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "AccessControl",
    "cookie_value",
    "cross_site_reason",
    "headers_of",
    "is_public",
]
