"""The status operations: the live tree, the node's status, its method table.

``tree`` is the supervision tree's snapshot; ``status`` the node's name, broker, connection,
outbox counts, last hellos and posture (with JetStream delivery, the messages waiting in the
stream per node); ``methods`` the method table ``steward-otp send`` validates against. They
read bookkeeping only, so inspecting a node under load does not slow it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from steward_otp.control.queues import STREAM_API_TIMEOUT
from steward_otp.control.requests import Inspectable
from steward_otp.jetstream import JetStreamUnavailable, waiting_counts


async def tree_op(node: Inspectable, request: Mapping[str, Any]) -> dict[str, Any]:
    """``{"op": "tree"}``: the live supervision tree."""
    return {"tree": node.snapshot().to_dict()}


async def status_op(node: Inspectable, request: Mapping[str, Any]) -> dict[str, Any]:
    """``{"op": "status"}``: the node, its connection, outbox and posture."""
    counts = await node.store.counts()
    depths = await node.store.queue_depths()
    posture = dict(node.posture())
    delivery = posture.get("delivery")
    if isinstance(delivery, Mapping) and delivery.get("mode") == "jetstream":
        posture["delivery"] = await _with_waiting(node, delivery)
    return {
        "status": {
            "node": node.node_name,
            "broker": node.url,
            "connection": node.connection_state(),
            "outbox": {str(state): n for state, n in counts.items()},
            "queued_per_node": depths,
            "last_hello": dict(node.last_hellos()),
            "time": time.time(),
            **posture,
        }
    }


async def _with_waiting(node: Inspectable, delivery: Mapping[str, Any]) -> dict[str, Any]:
    """``delivery`` with the messages waiting in the stream per node."""
    out = dict(delivery)
    bridge = getattr(node, "bridge", None)
    if bridge is None or not delivery.get("stream_ready", True):
        out["waiting_problem"] = "the stream is not ready"
        return out
    try:
        out["waiting_per_node"] = await waiting_counts(bridge, timeout=STREAM_API_TIMEOUT)
    except JetStreamUnavailable as exc:
        out["waiting_problem"] = str(exc)
    return out


async def methods_op(node: Inspectable, request: Mapping[str, Any]) -> dict[str, Any]:
    """``{"op": "methods"}``: the node's method table."""
    return {
        "methods": [
            {
                "name": spec.name,
                "kind": str(spec.kind),
                "replyCapable": spec.reply_capable,
                "routable": spec.routable,
                "quick": spec.quick,
                "description": spec.description,
                "args": spec.args,
            }
            for spec in node.table
        ]
    }
