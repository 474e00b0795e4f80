"""The JetStream layout: the one stream, the consumer of each node, and what the broker keeps.

* one stream, :data:`STREAM` (``NODES``), holding subjects ``NODES.<toNode>.<method>.<kind>``
  -- the core subject with the ``NODES.`` prefix (:func:`stream_subject`). Publishes carry
  ``Nats-Msg-Id`` = the message id, so the broker stores a resend once (within its
  duplicate window);
* per node name one durable push consumer, ``sotp_<node>`` (:func:`consumer_name`),
  filtering ``NODES.<node>.>`` and ``NODES.all.>`` (broadcast), delivering to
  ``_SOTP.JS.<node>`` (:func:`deliver_subject`) in queue group ``<node>`` (instances with
  the same name share it), acknowledged explicitly per message (:data:`ACK`,
  :data:`TERMINATE`) -- after the message is durable in the node's own inbox.

:class:`StreamLimits` are the limits a node asks for; :func:`stream_config` and
:func:`consumer_config` are the configurations as the JetStream API takes them. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

import attrs

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
