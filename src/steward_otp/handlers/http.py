"""HTTP methods: GET a URL on the node and send the body back.

``REQHttpGet`` ``[url]`` replies with the body of a ``200`` answer. Anything else is an
error reply: another status (``methodREQHttpGet: not 200, were 404, bailing out: <url>``),
a URL that is not ``http``/``https``, or a transport failure (refused, DNS, TLS, timeout)
with its reason. The request gets the time the handler has left (``methodTimeout``) and
follows redirects, as Go's client does. Bodies larger than :data:`BODY_LIMIT` are refused.

``REQHttpGetScheduled`` ``[url, intervalSeconds, totalMinutes]`` is kept for Steward's
message files and is deprecated: it is ``REQHttpGet`` with ``schedule:
[intervalSeconds, totalMinutes * 60]`` (the subscriber runs it on that schedule; see
``steward_otp.schedule``), so every run gets its own ``methodTimeout`` and its own reply.
"""

from __future__ import annotations

import math

from steward_otp.handlers.base import HandlerContext, HandlerError, handler
from steward_otp.message import Message
from steward_otp.schedule import ScheduleError, legacy_http_schedule

BODY_LIMIT = 64 * 1024 * 1024
"""The largest body sent back, in bytes."""

_URL_ALLOWED = 'an http or https URL, e.g. ["http://127.0.0.1:9100/metrics"]'


def request_url(msg: Message) -> str:
    """``methodArgs[0]``, checked to be an http(s) URL."""
    # httpx is loaded by the first REQHttpGet, not when the node starts.
    import httpx  # noqa: PLC0415

    url = msg.method_args[0] if msg.method_args else ""
    if not url:
        raise HandlerError(
            f'method{msg.method}: field "methodArgs": value {list(msg.method_args)!r} names no '
            f"URL; allowed: {_URL_ALLOWED}"
        )
    try:
        scheme = httpx.URL(url).scheme
    except httpx.InvalidURL as exc:
        raise HandlerError(
            f'method{msg.method}: field "methodArgs[0]": value {url!r} is not a URL ({exc}); '
            f"allowed: {_URL_ALLOWED}"
        ) from exc
    if scheme not in ("http", "https"):
        raise HandlerError(
            f'method{msg.method}: field "methodArgs[0]": value {url!r} is not http or https; '
            f"allowed: {_URL_ALLOWED}"
        )
    return url


async def http_get_body(url: str, *, timeout: float, method: str = "REQHttpGet") -> bytes:
    """GET ``url`` within ``timeout`` seconds (``math.inf``: no limit); the body of a 200.

    Raises HandlerError, naming the status or the transport failure, for anything else.
    """
    import httpx  # noqa: PLC0415

    limit = None if math.isinf(timeout) else max(timeout, 0.001)
    try:
        async with (
            httpx.AsyncClient(timeout=limit, follow_redirects=True) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                raise HandlerError(
                    f"method{method}: not 200, were {response.status_code}, bailing out: {url}"
                )
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > BODY_LIMIT:
                    raise HandlerError(
                        f"method{method}: body larger than {BODY_LIMIT} bytes, bailing out: {url}"
                    )
            return bytes(body)
    except httpx.HTTPError as exc:
        reason = str(exc) or type(exc).__name__
        raise HandlerError(f"method{method}: get failed: {reason}, url: {url}") from exc


@handler("REQHttpGet", description="HTTP GET a URL; reply with the body", args='["url"]')
async def http_get(ctx: HandlerContext, msg: Message) -> bytes | None:
    """GET ``methodArgs[0]`` within the method timeout; reply with the body of a 200."""
    return await http_get_body(request_url(msg), timeout=ctx.seconds_left, method=msg.method)


@handler(
    "REQHttpGetScheduled",
    description="deprecated: REQHttpGet on the schedule [intervalSeconds, totalMinutes*60]",
    args='["url", "intervalSeconds", "totalMinutes"]',
)
async def http_get_scheduled(ctx: HandlerContext, msg: Message) -> bytes | None:
    """One run of the schedule: GET ``methodArgs[0]``; the subscriber repeats it."""
    try:
        legacy_http_schedule(msg.method_args)
    except ScheduleError as exc:
        raise HandlerError(f"method{msg.method}: {exc}") from exc
    return await http_get_body(request_url(msg), timeout=ctx.seconds_left, method=msg.method)


HTTP_HANDLERS = (http_get, http_get_scheduled)
