"""Ids, fan-out and defaults: what makes an accepted message ready for the outbox.

Inputs give each accepted message an id (:func:`ensure_id`) and one copy per destination
(:func:`fan_out`); the outbox fills in the node's defaults (:func:`apply_defaults`). Each
returns new messages (or the same one when nothing changes) and never modifies its input.
"""

from __future__ import annotations

import os
import time
from typing import Final

import attrs

from steward_otp.message.fields import FIELD_NAMES
from steward_otp.message.record import Message

LOCAL_NODE: Final = "local"
"""``toNode`` alias for "this node", replaced by :func:`fan_out`."""
METHOD_TIMEOUT_FOREVER: Final = -1
"""``methodTimeout`` value meaning "no timeout"."""


def new_message_id(from_node: str) -> str:
    """A new globally unique message id, ``<from_node>:<32 hex digits>``.

    The hex part is a UUIDv7 (48-bit millisecond timestamp, then random bits), so ids from
    one node sort roughly by creation time. Without ``from_node`` the id is the hex part.
    Treat ids as opaque text.
    """
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (
        (millis & 0xFFFF_FFFF_FFFF) << 80
        | 0x7 << 76
        | (rand >> 62 & 0xFFF) << 64
        | 0b10 << 62
        | (rand & 0x3FFF_FFFF_FFFF_FFFF)
    )
    hex_part = f"{value:032x}"
    return f"{from_node}:{hex_part}" if from_node else hex_part


def ensure_id(message: Message) -> Message:
    """``message`` itself when it has an id, else a copy with a new id from its fromNode."""
    if message.id:
        return message
    return attrs.evolve(message, id=new_message_id(message.from_node))


def fan_out(message: Message, own_node: str, *, from_node: str | None = None) -> list[Message]:
    """One message per destination, each with ``toNodes`` cleared and ``local`` resolved.

    A message with ``toNode`` is kept as is (its ``toNodes`` is ignored). Otherwise each
    distinct entry of ``toNodes`` (first occurrence order, ``local`` counting as
    ``own_node``) gives one copy with that ``toNode``; when the message has an id, each
    copy gets id ``<id>@<node>``, so copies stay distinct and resubmitting the same
    document yields the same ids. ``local`` becomes
    ``own_node``. A message with neither gives an empty list. ``from_node``, when given,
    becomes every copy's ``fromNode``. One copy per destination (the decoder's fast path,
    no ``attrs.evolve`` chain), and none when nothing changes: ``[message]`` itself. Inputs
    call this for every message they accept.
    """

    def resolve(node: str) -> str:
        return own_node if node == LOCAL_NODE else node

    if message.to_node:
        target = resolve(message.to_node)
        if (
            target == message.to_node
            and not message.to_nodes
            and (from_node is None or from_node == message.from_node)
        ):
            return [message]  # nothing to change: no copy
        targets = [(target, message.id)]
    else:
        targets = []
        # "local" is resolved first: "local" and this node's own name are one destination.
        for target in dict.fromkeys(resolve(node) for node in message.to_nodes):
            targets.append((target, f"{message.id}@{target}" if message.id else ""))
    values = list(message.field_values())
    values[_TO_NODES_AT] = ()
    if from_node is not None:
        values[_FROM_NODE_AT] = from_node
    copies: list[Message] = []
    for target, new_id in targets:
        values[_TO_NODE_AT], values[_ID_AT] = target, new_id
        copies.append(Message.from_field_values(values))
    return copies


_TO_NODE_AT, _TO_NODES_AT, _ID_AT, _FROM_NODE_AT, _RETRIES_AT, _METHOD_TIMEOUT_AT, _DATA_AT = (
    FIELD_NAMES.index(name)
    for name in ("to_node", "to_nodes", "id", "from_node", "retries", "method_timeout", "data")
)


@attrs.frozen
class MessageDefaults:
    """Node-wide defaults filled into messages when they enter the outbox (Steward §3.2)."""

    retries: int = 1
    """``DefaultMessageRetries``: used when a message's ``retries`` is negative."""
    method_timeout: int = 10
    """``DefaultMethodTimeout``: used when ``methodTimeout`` is below 1 and not -1."""


def defaulted_settings(
    message: Message, defaults: MessageDefaults | None = None
) -> tuple[int, int]:
    """``(retries, methodTimeout)`` of ``message`` with node defaults applied (see
    :func:`apply_defaults`), without building a message."""
    defaults = defaults or MessageDefaults()
    retries = defaults.retries if message.retries < 0 else message.retries
    timeout = message.method_timeout
    if timeout < 1 and timeout != METHOD_TIMEOUT_FOREVER:
        timeout = defaults.method_timeout
    return retries, timeout


def apply_defaults(message: Message, defaults: MessageDefaults | None = None) -> Message:
    """``message`` with node defaults applied; the same object when nothing changes.

    ``retries < 0`` becomes ``defaults.retries`` (a missing ``retries``, 0, stays 0);
    ``methodTimeout < 1`` other than -1 (forever) becomes ``defaults.method_timeout``.
    ``ACKTimeout`` is deliberately not defaulted.
    """
    retries, timeout = defaulted_settings(message, defaults)
    if retries == message.retries and timeout == message.method_timeout:
        return message
    values = list(message.field_values())
    values[_RETRIES_AT], values[_METHOD_TIMEOUT_AT] = retries, timeout
    return Message.from_field_values(values)
