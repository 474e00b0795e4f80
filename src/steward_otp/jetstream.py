"""JetStream delivery: messages kept by the broker until their node takes them.

Everything here speaks plain NATS through a :class:`~steward_otp.transport.Transport`: the
JetStream API is request/reply on ``$JS.API.*`` subjects, a publish into the stream is
acknowledged by the broker on the publish's reply subject, and a push consumer delivers to an
ordinary subject with a queue group. So the transport seam stays as it is, and only the
bridge talks to NATS.

Layout (see ``docs/protocol.md``):

* one stream, :data:`STREAM` (``NODES``), holding subjects ``NODES.<toNode>.<method>.<kind>``
  -- the core subject with the ``NODES.`` prefix. Publishes carry ``Nats-Msg-Id`` = the
  message id, so the broker stores a resend once (within its duplicate window);
* per node name one durable push consumer, ``sotp_<node>``, filtering ``NODES.<node>.>`` and
  ``NODES.all.>`` (broadcast), delivering to ``_SOTP.JS.<node>`` in queue group ``<node>``
  (instances with the same name share it), acknowledged explicitly per message -- after the
  message is durable in the node's own inbox.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Final

import attrs

from steward_otp.transport import RequestTimeout, Transport

log = logging.getLogger(__name__)

STREAM: Final = "NODES"
"""The stream that holds every JetStream-delivered message."""

SUBJECT_PREFIX: Final = STREAM + "."
BROADCAST_NODE: Final = "all"
"""``toNode`` that reaches every node consuming the stream."""

ACK: Final = b"+ACK"
"""Acknowledge a delivered message: it is done for this consumer."""
TERMINATE: Final = b"+TERM"
"""Tell the broker never to deliver this message again (it can never be run here)."""

_NANOS: Final = 1_000_000_000


@attrs.frozen
class StreamLimits:
    """What the broker keeps. ``0`` means no limit."""

    max_age_seconds: float = 7 * 24 * 3600.0
    """How long a message may wait in the stream for its node (default 7 days)."""
    max_msgs_per_subject: int = 0
    """Messages kept per ``NODES.<node>.<method>.<kind>`` subject; the oldest go first."""
    duplicate_window_seconds: float = 120.0
    """How long the broker remembers a message id to store a resend once."""
    ack_wait_seconds: float = 30.0
    """How long the broker waits for a node's acknowledgement before delivering again."""
    max_ack_pending: int = 1024
    """Messages delivered to a node and not yet acknowledged, at most."""


class JetStreamUnavailable(Exception):
    """The broker has no JetStream, or refused to create the stream or a consumer."""


def stream_subject(core_subject: str) -> str:
    """The stream subject of a core subject ``<node>.<method>.<kind>``."""
    return SUBJECT_PREFIX + core_subject


def consumer_name(node: str) -> str:
    """The durable consumer of ``node``."""
    return f"sotp_{node}"


def deliver_subject(node: str) -> str:
    """Where the broker pushes ``node``'s messages."""
    return f"_SOTP.JS.{node}"


def stream_config(limits: StreamLimits) -> dict[str, Any]:
    """The stream's configuration, as the JetStream API takes it."""
    return {
        "name": STREAM,
        "subjects": [SUBJECT_PREFIX + ">"],
        "retention": "limits",
        "storage": "file",
        "discard": "old",
        "max_age": int(limits.max_age_seconds * _NANOS),
        "max_msgs_per_subject": limits.max_msgs_per_subject or -1,
        "duplicate_window": int(limits.duplicate_window_seconds * _NANOS),
    }


def consumer_config(node: str, limits: StreamLimits) -> dict[str, Any]:
    """The configuration of ``node``'s durable push consumer."""
    return {
        "durable_name": consumer_name(node),
        "deliver_subject": deliver_subject(node),
        "deliver_group": node,
        "deliver_policy": "all",
        "ack_policy": "explicit",
        "ack_wait": int(limits.ack_wait_seconds * _NANOS),
        "max_ack_pending": limits.max_ack_pending,
        "filter_subjects": [
            f"{SUBJECT_PREFIX}{node}.>",
            f"{SUBJECT_PREFIX}{BROADCAST_NODE}.>",
        ],
    }


async def ensure_stream_and_consumer(
    transport: Transport, node: str, limits: StreamLimits, *, timeout: float = 5.0
) -> None:
    """Create (or update) the stream and ``node``'s consumer; idempotent.

    Raises JetStreamUnavailable with the broker's reason (or "no JetStream on the broker"
    when nothing answers the API).
    """
    await _api(transport, f"$JS.API.STREAM.CREATE.{STREAM}", stream_config(limits), timeout)
    name = consumer_name(node)
    await _api(
        transport,
        f"$JS.API.CONSUMER.CREATE.{STREAM}.{name}",
        {"stream_name": STREAM, "config": consumer_config(node, limits)},
        timeout,
    )


async def stream_info(transport: Transport, *, timeout: float = 5.0) -> dict[str, Any]:
    """The stream's state (``messages``, ``bytes``, ...), as the JetStream API reports it."""
    answer = await _api(transport, f"$JS.API.STREAM.INFO.{STREAM}", None, timeout)
    state = answer.get("state", {})
    return dict(state) if isinstance(state, dict) else {}


async def _api(
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
    except ValueError as exc:
        raise JetStreamUnavailable(f"{subject}: unreadable answer {reply.payload[:200]!r}") from exc
    error = answer.get("error")
    if error:
        code = error.get("err_code") or error.get("code")
        raise JetStreamUnavailable(f"{subject}: {error.get('description', error)} ({code})")
    return dict(answer)


@attrs.frozen
class PubAck:
    """The broker's answer to a publish into the stream."""

    stored: bool
    duplicate: bool = False
    error: str | None = None


def parse_pub_ack(payload: bytes) -> PubAck:
    """Read a publish acknowledgement; never raises (garbage is an error answer)."""
    try:
        answer = json.loads(payload)
    except ValueError:
        return PubAck(False, error=f"unreadable publish acknowledgement {payload[:100]!r}")
    if not isinstance(answer, dict):
        return PubAck(False, error=f"unexpected publish acknowledgement {payload[:100]!r}")
    error = answer.get("error")
    if error:
        description = error.get("description", error) if isinstance(error, dict) else error
        return PubAck(False, error=str(description))
    if answer.get("stream") != STREAM or "seq" not in answer:
        return PubAck(False, error=f"unexpected publish acknowledgement {payload[:100]!r}")
    return PubAck(True, duplicate=bool(answer.get("duplicate")))
