"""The JetStream API over a plain :class:`~steward_otp.transport.Transport`.

The API is request/reply on ``$JS.API.*`` subjects, and a publish into the stream is
acknowledged by the broker on the publish's reply subject, so everything here goes through
the node's transport and only the bridge talks to NATS. :func:`api_request` makes one call
and turns every failure (no answer, no JetStream, an unreadable answer, an error answer)
into :class:`JetStreamUnavailable` with the broker's reason and ``err_code``. On it:
making the stream and a node's consumer (idempotently), asking whether the broker has
JetStream, and the stream's state. :func:`parse_pub_ack` reads the broker's answer to a
publish and never raises.
"""

from __future__ import annotations

import json
from typing import Any, Final

import attrs

from steward_otp.jetstream.layout import (
    STREAM,
    StreamLimits,
    consumer_config,
    consumer_name,
    stream_config,
)
from steward_otp.transport import RequestTimeout, Transport

STREAM_EXISTS_DIFFERENTLY: Final = 10058
"""JetStream error code: a stream of that name exists with another configuration."""
STREAM_NOT_FOUND: Final = 10059
"""JetStream error code: no stream of that name."""
NOT_ENABLED_CODES: Final = frozenset({10039, 10076})
"""JetStream error codes saying it is not enabled (for the account, on the server)."""


class JetStreamUnavailable(Exception):
    """The broker has no JetStream, or refused to create the stream or a consumer.

    ``code`` is the JetStream API's ``err_code`` when the broker gave one.
    """

    def __init__(self, text: str, code: int | None = None) -> None:
        super().__init__(text)
        self.code = code


async def ensure_stream_and_consumer(
    transport: Transport, node: str, limits: StreamLimits, *, timeout: float = 5.0
) -> None:
    """Create (or update) the stream and ``node``'s consumer; idempotent.

    Raises JetStreamUnavailable with the broker's reason (or "no JetStream on the broker"
    when nothing answers the API).
    """
    config = stream_config(limits)
    try:
        await api_request(transport, f"$JS.API.STREAM.CREATE.{STREAM}", config, timeout)
    except JetStreamUnavailable as exc:
        if exc.code != STREAM_EXISTS_DIFFERENTLY:
            raise
        # Made by a node with other limits (or by a sender with the defaults): this node's
        # configured limits apply from now on.
        await api_request(transport, f"$JS.API.STREAM.UPDATE.{STREAM}", config, timeout)
    name = consumer_name(node)
    await api_request(
        transport,
        f"$JS.API.CONSUMER.CREATE.{STREAM}.{name}",
        {"stream_name": STREAM, "config": consumer_config(node, limits)},
        timeout,
    )


async def ensure_stream(
    transport: Transport, limits: StreamLimits, *, timeout: float = 5.0
) -> bool:
    """Create the stream unless it exists (whatever its limits); True when created here.

    For a sender: a message published into the stream before any JetStream node has made
    it would find no stream. Raises JetStreamUnavailable as :func:`ensure_stream_and_consumer`.
    """
    try:
        await api_request(transport, f"$JS.API.STREAM.INFO.{STREAM}", None, timeout)
    except JetStreamUnavailable as exc:
        if exc.code != STREAM_NOT_FOUND:
            raise
    else:
        return False
    try:
        await api_request(
            transport, f"$JS.API.STREAM.CREATE.{STREAM}", stream_config(limits), timeout
        )
    except JetStreamUnavailable as exc:
        if exc.code != STREAM_EXISTS_DIFFERENTLY:  # another node made it meanwhile
            raise
        return False
    return True


async def jetstream_available(transport: Transport, *, timeout: float = 5.0) -> bool | None:
    """Whether the broker has JetStream: True, False (nothing serves its API, or the broker
    says it is not enabled), or None when the broker did not answer in time."""
    try:
        await api_request(transport, "$JS.API.INFO", None, timeout)
    except JetStreamUnavailable as exc:
        cause = exc.__cause__
        if isinstance(cause, RequestTimeout):
            return False if cause.no_responders else None
        return exc.code not in NOT_ENABLED_CODES
    return True


async def stream_info(transport: Transport, *, timeout: float = 5.0) -> dict[str, Any]:
    """The stream's state (``messages``, ``bytes``, ...), as the JetStream API reports it."""
    answer = await api_request(transport, f"$JS.API.STREAM.INFO.{STREAM}", None, timeout)
    state = answer.get("state", {})
    return dict(state) if isinstance(state, dict) else {}


async def api_request(
    transport: Transport, subject: str, request: dict[str, Any] | None, timeout: float
) -> dict[str, Any]:
    payload = b"" if request is None else json.dumps(request).encode()
    try:
        reply = await transport.request(subject, payload, timeout=timeout)
    except RequestTimeout as exc:
        why = "no JetStream on the broker" if exc.no_responders else "the broker did not answer"
        raise JetStreamUnavailable(f"{subject}: {why}") from exc
    try:
        answer = json.loads(reply.payload or b"{}")
    except (ValueError, RecursionError) as exc:
        raise JetStreamUnavailable(f"{subject}: unreadable answer {reply.payload[:200]!r}") from exc
    if not isinstance(answer, dict):
        raise JetStreamUnavailable(f"{subject}: unexpected answer {reply.payload[:200]!r}")
    error = answer.get("error")
    if error:
        if not isinstance(error, dict):
            raise JetStreamUnavailable(f"{subject}: {_text(error)}")
        code = error.get("err_code") or error.get("code")
        raise JetStreamUnavailable(
            f"{subject}: {_text(error.get('description', error))} ({_text(code)})",
            code if isinstance(code, int) and abs(code) < 1 << 31 else None,
        )
    return dict(answer)


@attrs.frozen
class PubAck:
    """The broker's answer to a publish into the stream."""

    stored: bool
    duplicate: bool = False
    error: str | None = None


def _text(value: object) -> str:
    """``value`` from a broker's answer as text for an error, at most 200 characters."""
    try:
        return str(value)[:200]
    except ValueError:  # an integer too long to print
        return "(unprintable)"


def parse_pub_ack(payload: bytes) -> PubAck:
    """Read a publish acknowledgement; never raises (garbage is an error answer)."""
    try:
        answer = json.loads(payload)
    except (ValueError, RecursionError):
        return PubAck(False, error=f"unreadable publish acknowledgement {payload[:100]!r}")
    if not isinstance(answer, dict):
        return PubAck(False, error=f"unexpected publish acknowledgement {payload[:100]!r}")
    error = answer.get("error")
    if error:
        description = error.get("description", error) if isinstance(error, dict) else error
        return PubAck(False, error=_text(description))
    if answer.get("stream") != STREAM or "seq" not in answer:
        return PubAck(False, error=f"unexpected publish acknowledgement {payload[:100]!r}")
    return PubAck(True, duplicate=bool(answer.get("duplicate")))
