"""What waits in the JetStream stream for the nodes (``steward-otp queue ls --stream``, ``status``).

A message waits for a node until that node's consumer acknowledges it: :func:`waiting_counts`
gives the count per node (a node that has never consumed counts every message on its
subjects and every broadcast), :func:`waiting_messages` lists them, oldest first per node,
above each node's acknowledgement floor (:func:`waiting_message`: whether a given one
waits for a node), and :func:`delete_waiting` removes one from the stream so no node takes
it any more. Everything is read through the JetStream API and raises
:class:`~steward_otp.jetstream.api.JetStreamUnavailable` when the broker cannot answer;
nothing here changes what a node receives except :func:`delete_waiting`.
"""

from __future__ import annotations

import base64
from typing import Any, Final

import attrs

from steward_otp.jetstream.api import JetStreamUnavailable, api_request
from steward_otp.jetstream.layout import BROADCAST_NODE, STREAM, SUBJECT_PREFIX, consumer_name
from steward_otp.transport import Transport

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
        start = await _first_waiting(transport, name, timeout)
        mine: list[WaitingMessage] = []
        for subject_filter in _filters(name):
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


async def waiting_message(
    transport: Transport, node: str, seq: int, *, timeout: float = 5.0
) -> WaitingMessage | None:
    """Message ``seq`` when it waits in the stream for ``node`` -- addressed to it or a
    broadcast, above its acknowledgement floor, as :func:`waiting_messages` would list it --
    else None. Raises JetStreamUnavailable."""
    if seq < await _first_waiting(transport, node, timeout):
        return None
    for subject_filter in _filters(node):
        found = await _messages_from(
            transport, node, subject_filter, start=seq, limit=1, timeout=timeout
        )
        if found and found[0].seq == seq:
            return found[0]
    return None


async def delete_waiting(transport: Transport, seq: int, *, timeout: float = 5.0) -> bool:
    """Remove message ``seq`` from the stream: no node takes it any more (a broadcast: no
    node). False when the stream has no such message. Raises JetStreamUnavailable."""
    try:
        await api_request(transport, f"$JS.API.STREAM.MSG.DELETE.{STREAM}", {"seq": seq}, timeout)
    except JetStreamUnavailable as exc:
        if exc.code in SEQUENCE_NOT_FOUND:
            return False
        raise
    return True


async def _first_waiting(transport: Transport, node: str, timeout: float) -> int:
    """The first stream sequence that may wait for ``node``: above its acknowledgement floor."""
    if node == BROADCAST_NODE:
        return 1
    info = await _consumer_info(transport, node, timeout)
    floor = info.get("ack_floor", {}) if info else {}
    return int(floor.get("stream_seq", 0)) + 1


def _filters(node: str) -> list[str]:
    """The subjects of the messages that wait for ``node``: its own, and the broadcasts."""
    filters = [f"{SUBJECT_PREFIX}{node}.>"]
    if node != BROADCAST_NODE:
        filters.append(f"{SUBJECT_PREFIX}{BROADCAST_NODE}.>")
    return filters


def _subject_node(subject: str) -> str:
    """The node of ``NODES.<node>.<method>.<kind>`` (a node name may hold dots)."""
    parts = subject.split(".")
    return ".".join(parts[1:-2]) if len(parts) >= 4 and parts[0] == STREAM else ""


async def _subject_counts(transport: Transport, timeout: float) -> dict[str, int]:
    answer = await api_request(
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
        answer = await api_request(
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
        return await api_request(
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
            answer = await api_request(
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
