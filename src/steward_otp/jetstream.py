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

import base64
import hashlib
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

STREAM_EXISTS_DIFFERENTLY: Final = 10058
"""JetStream error code: a stream of that name exists with another configuration."""
STREAM_NOT_FOUND: Final = 10059
"""JetStream error code: no stream of that name."""
NOT_ENABLED_CODES: Final = frozenset({10039, 10076})
"""JetStream error codes saying it is not enabled (for the account, on the server)."""


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
    """The broker has no JetStream, or refused to create the stream or a consumer.

    ``code`` is the JetStream API's ``err_code`` when the broker gave one.
    """

    def __init__(self, text: str, code: int | None = None) -> None:
        super().__init__(text)
        self.code = code


def stream_subject(core_subject: str) -> str:
    """The stream subject of a core subject ``<node>.<method>.<kind>``."""
    return SUBJECT_PREFIX + core_subject


def consumer_name(node: str) -> str:
    """The durable consumer of ``node``: ``sotp_<node>``.

    JetStream names cannot hold ``.``; a dotted node name (``ship.7``) becomes
    ``sotp_ship_7_<8 hex digits of its SHA-256>``, so that ``ship.7`` and ``ship_7`` never
    share a consumer.
    """
    if "." not in node:
        return f"sotp_{node}"
    tag = hashlib.sha256(node.encode()).hexdigest()[:8]
    return f"sotp_{node.replace('.', '_')}_{tag}"


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
    config = stream_config(limits)
    try:
        await _api(transport, f"$JS.API.STREAM.CREATE.{STREAM}", config, timeout)
    except JetStreamUnavailable as exc:
        if exc.code != STREAM_EXISTS_DIFFERENTLY:
            raise
        # Made by a node with other limits (or by a sender with the defaults): this node's
        # configured limits apply from now on.
        await _api(transport, f"$JS.API.STREAM.UPDATE.{STREAM}", config, timeout)
    name = consumer_name(node)
    await _api(
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
        await _api(transport, f"$JS.API.STREAM.INFO.{STREAM}", None, timeout)
    except JetStreamUnavailable as exc:
        if exc.code != STREAM_NOT_FOUND:
            raise
    else:
        return False
    try:
        await _api(transport, f"$JS.API.STREAM.CREATE.{STREAM}", stream_config(limits), timeout)
    except JetStreamUnavailable as exc:
        if exc.code != STREAM_EXISTS_DIFFERENTLY:  # another node made it meanwhile
            raise
        return False
    return True


async def jetstream_available(transport: Transport, *, timeout: float = 5.0) -> bool | None:
    """Whether the broker has JetStream: True, False (nothing serves its API, or the broker
    says it is not enabled), or None when the broker did not answer in time."""
    try:
        await _api(transport, "$JS.API.INFO", None, timeout)
    except JetStreamUnavailable as exc:
        cause = exc.__cause__
        if isinstance(cause, RequestTimeout):
            return False if cause.no_responders else None
        return exc.code not in NOT_ENABLED_CODES
    return True


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
        raise JetStreamUnavailable(
            f"{subject}: {error.get('description', error)} ({code})",
            code if isinstance(code, int) else None,
        )
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


# --- What waits in the stream (``steward-otp queue ls --stream``, ``status``).

NO_MESSAGE: Final = 10037
"""JetStream error code: no (further) message matches."""
CONSUMER_NOT_FOUND: Final = 10014
"""JetStream error code: no consumer of that name."""
SEQUENCE_NOT_FOUND: Final = frozenset({10043, 10057, NO_MESSAGE})
"""JetStream error codes: no message with that sequence (deleted, expired, never stored)."""
CONSUMER_PREFIX: Final = "sotp_"


@attrs.frozen
class WaitingMessage:
    """A message the stream holds for a node that has not taken (acknowledged) it yet."""

    seq: int
    """Its stream sequence: what :func:`delete_waiting` takes."""
    for_node: str
    """The node it waits for (a broadcast waits for each node)."""
    subject: str
    msg_id: str
    from_node: str
    stored_at: str
    """When the broker stored it (RFC 3339, UTC)."""
    size: int

    @property
    def method(self) -> str:
        """The method, from its subject ``NODES.<toNode>.<method>.<kind>``."""
        parts = self.subject.split(".")
        return parts[-2] if len(parts) >= 4 else ""

    @property
    def broadcast(self) -> bool:
        return self.subject.startswith(f"{SUBJECT_PREFIX}{BROADCAST_NODE}.")


async def waiting_counts(transport: Transport, *, timeout: float = 5.0) -> dict[str, int]:
    """Messages waiting in the stream per node, for the nodes that have any.

    A node whose consumer exists: what it has not acknowledged (not yet delivered, or
    delivered and not acknowledged). A node that has never consumed: every message on its
    subjects plus every broadcast the stream holds. Raises JetStreamUnavailable.
    """
    subjects = await _subject_counts(transport, timeout)
    broadcasts = sum(n for s, n in subjects.items() if _subject_node(s) == BROADCAST_NODE)
    counts: dict[str, int] = {}
    for subject, n in subjects.items():
        node = _subject_node(subject)
        if node and node != BROADCAST_NODE:
            counts[node] = counts.get(node, 0) + n
    consumers = await _consumer_nodes(transport, timeout)
    for node in set(counts) | consumers:
        if node in consumers:
            info = await _consumer_info(transport, node, timeout)
            counts[node] = int(info.get("num_pending", 0)) + int(info.get("num_ack_pending", 0))
        else:
            counts[node] += broadcasts
    return {node: n for node, n in sorted(counts.items()) if n > 0}


async def waiting_messages(
    transport: Transport, node: str | None = None, *, limit: int = 1000, timeout: float = 5.0
) -> list[WaitingMessage]:
    """The messages waiting in the stream for ``node`` (None: for every node), oldest
    first per node, at most ``limit`` in all.

    Waiting means above the node's acknowledgement floor (the broker acknowledges in
    order as a rule; one taken out of order may still be listed until the floor passes
    it). Raises JetStreamUnavailable.
    """
    nodes = [node] if node else list(await waiting_counts(transport, timeout=timeout))
    found: list[WaitingMessage] = []
    for name in nodes:
        start = 1
        if name != BROADCAST_NODE:
            info = await _consumer_info(transport, name, timeout)
            floor = info.get("ack_floor", {}) if info else {}
            start = int(floor.get("stream_seq", 0)) + 1
        filters = [f"{SUBJECT_PREFIX}{name}.>"]
        if name != BROADCAST_NODE:
            filters.append(f"{SUBJECT_PREFIX}{BROADCAST_NODE}.>")
        mine: list[WaitingMessage] = []
        for subject_filter in filters:
            mine += await _messages_from(
                transport,
                name,
                subject_filter,
                start=start,
                limit=limit - len(found),
                timeout=timeout,
            )
        mine.sort(key=lambda m: m.seq)
        found += mine[: limit - len(found)]
        if len(found) >= limit:
            break
    return found


async def delete_waiting(transport: Transport, seq: int, *, timeout: float = 5.0) -> bool:
    """Remove message ``seq`` from the stream: no node takes it any more (a broadcast: no
    node). False when the stream has no such message. Raises JetStreamUnavailable."""
    try:
        await _api(transport, f"$JS.API.STREAM.MSG.DELETE.{STREAM}", {"seq": seq}, timeout)
    except JetStreamUnavailable as exc:
        if exc.code in SEQUENCE_NOT_FOUND:
            return False
        raise
    return True


def _subject_node(subject: str) -> str:
    """The node of ``NODES.<node>.<method>.<kind>`` (a node name may hold dots)."""
    parts = subject.split(".")
    return ".".join(parts[1:-2]) if len(parts) >= 4 and parts[0] == STREAM else ""


async def _subject_counts(transport: Transport, timeout: float) -> dict[str, int]:
    answer = await _api(
        transport,
        f"$JS.API.STREAM.INFO.{STREAM}",
        {"subjects_filter": SUBJECT_PREFIX + ">"},
        timeout,
    )
    subjects = answer.get("state", {}).get("subjects") or {}
    return {str(s): int(n) for s, n in subjects.items()}


async def _consumer_nodes(transport: Transport, timeout: float) -> set[str]:
    nodes: set[str] = set()
    offset = 0
    while True:
        answer = await _api(
            transport, f"$JS.API.CONSUMER.NAMES.{STREAM}", {"offset": offset}, timeout
        )
        names = answer.get("consumers") or []
        nodes.update(n[len(CONSUMER_PREFIX) :] for n in names if n.startswith(CONSUMER_PREFIX))
        offset += len(names)
        if not names or offset >= int(answer.get("total", 0)):
            return nodes


async def _consumer_info(transport: Transport, node: str, timeout: float) -> dict[str, Any]:
    """``node``'s consumer state; {} when it has none yet."""
    try:
        return await _api(
            transport, f"$JS.API.CONSUMER.INFO.{STREAM}.{consumer_name(node)}", None, timeout
        )
    except JetStreamUnavailable as exc:
        if exc.code == CONSUMER_NOT_FOUND:
            return {}
        raise


async def _messages_from(
    transport: Transport,
    node: str,
    subject_filter: str,
    *,
    start: int,
    limit: int,
    timeout: float,
) -> list[WaitingMessage]:
    found: list[WaitingMessage] = []
    seq = start
    while len(found) < limit:
        try:
            answer = await _api(
                transport,
                f"$JS.API.STREAM.MSG.GET.{STREAM}",
                {"seq": seq, "next_by_subj": subject_filter},
                timeout,
            )
        except JetStreamUnavailable as exc:
            if exc.code == NO_MESSAGE:
                return found
            raise
        raw = answer.get("message") or {}
        headers = _headers(raw.get("hdrs"))
        found.append(
            WaitingMessage(
                seq=int(raw.get("seq", seq)),
                for_node=node,
                subject=str(raw.get("subject", "")),
                msg_id=headers.get("nats-msg-id", ""),
                from_node=headers.get("fromnode", ""),
                stored_at=str(raw.get("time", "")),
                size=len(base64.b64decode(raw.get("data") or "")),
            )
        )
        seq = found[-1].seq + 1
    return found


def _headers(encoded: object) -> dict[str, str]:
    """The headers of a stored message (base64 of ``NATS/1.0\\r\\nKey: value...``), with
    lower-case keys."""
    if not isinstance(encoded, str):
        return {}
    try:
        text = base64.b64decode(encoded).decode("utf-8", "replace")
    except ValueError:
        return {}
    headers: dict[str, str] = {}
    for line in text.split("\r\n")[1:]:
        key, sep, value = line.partition(":")
        if sep:
            headers.setdefault(key.strip().lower(), value.strip())
    return headers
