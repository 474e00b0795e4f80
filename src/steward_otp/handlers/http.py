"""HTTP methods: GET a URL on the node and send the body back.

``REQHttpGet`` ``[url]`` replies with the body of a ``200`` answer. Anything else is an
error reply: another status (``error: REQHttpGet: not 200, were 404, bailing out: <url>``),
a URL that is not ``http``/``https`` or whose host is no valid name (empty, an empty label,
a label over 63 characters, a bad ``xn--`` label: refused before any request, naming the
URL), or a transport failure (refused, DNS, TLS, timeout) with its reason. The request
gets the time the handler has left (``methodTimeout``) and follows redirects, as Go's
client does. Bodies larger than :data:`BODY_LIMIT` are refused.

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

MAX_LABEL = 63
"""The longest label of a host name (the part between two dots), in characters."""

MAX_NAME = 253
"""The longest host name, in characters (without a final dot)."""

_URL_ALLOWED = 'an http or https URL, e.g. ["http://127.0.0.1:9100/metrics"]'


def request_url(msg: Message) -> str:
    """``methodArgs[0]``, checked to be an http(s) URL whose host can be looked up.

    Checked before any request, so a bad URL is an error reply naming it rather than an
    exception from deep inside the name lookup.
    """
    # httpx is loaded by the first REQHttpGet, not when the node starts.
    import httpx  # noqa: PLC0415

    url = msg.method_args[0] if msg.method_args else ""
    if not url:
        raise HandlerError(
            f'field "methodArgs": value {list(msg.method_args)!r} names no URL; '
            f"allowed: {_URL_ALLOWED}"
        )
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise HandlerError(
            f'field "methodArgs[0]": value {url!r} is not a URL ({exc}); allowed: {_URL_ALLOWED}'
        ) from exc
    if parsed.scheme not in ("http", "https"):
        raise HandlerError(
            f'field "methodArgs[0]": value {url!r} is not http or https; allowed: {_URL_ALLOWED}'
        )
    try:
        parsed.host  # noqa: B018 -- decodes an xn-- host, as sending the request does
    except UnicodeError as exc:  # idna.IDNAError: a bad xn-- label
        problem = str(exc)
    else:
        problem = host_problem(parsed.raw_host.decode("ascii", errors="replace"))
    if problem:
        raise HandlerError(
            f'field "methodArgs[0]": value {url!r} has no valid host: {problem}; '
            f"allowed: {_URL_ALLOWED}"
        )
    return url


def host_problem(host: str) -> str:
    """What makes ``host`` (as sent: IDNA-encoded, IPv6 without brackets) no name to look
    up, or "" when it is fine. IP addresses have been checked by httpx already."""
    if not host:
        return "the host is empty"
    if ":" in host:
        return ""  # an IPv6 address
    name = host.removesuffix(".")  # a fully qualified name may end with a dot
    if len(name) > MAX_NAME:
        return f"the name is {len(name)} characters long, more than {MAX_NAME}"
    for label in name.split("."):
        if not label:
            return "it has an empty label (two dots in a row, or a leading dot)"
        if len(label) > MAX_LABEL:
            return f"the label {label!r} is {len(label)} characters long, more than {MAX_LABEL}"
    return ""


async def http_get_body(url: str, *, timeout: float) -> bytes:
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
                raise HandlerError(f"not 200, were {response.status_code}, bailing out: {url}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > BODY_LIMIT:
                    raise HandlerError(f"body larger than {BODY_LIMIT} bytes, bailing out: {url}")
            return bytes(body)
    except (httpx.HTTPError, httpx.InvalidURL, UnicodeError) as exc:
        # InvalidURL, UnicodeError: a redirect to a URL or host name that cannot be used.
        reason = str(exc) or type(exc).__name__
        raise HandlerError(f"get failed: {reason}, url: {url}") from exc


@handler("REQHttpGet")
async def http_get(ctx: HandlerContext, msg: Message) -> bytes | None:
    """GET ``methodArgs[0]`` within the method timeout; reply with the body of a 200."""
    return await http_get_body(request_url(msg), timeout=ctx.seconds_left)


@handler("REQHttpGetScheduled")
async def http_get_scheduled(ctx: HandlerContext, msg: Message) -> bytes | None:
    """One run of the schedule: GET ``methodArgs[0]``; the subscriber repeats it."""
    try:
        legacy_http_schedule(msg.method_args)
    except ScheduleError as exc:
        raise HandlerError(str(exc)) from exc
    return await http_get_body(request_url(msg), timeout=ctx.seconds_left)


HTTP_HANDLERS = (http_get, http_get_scheduled)
