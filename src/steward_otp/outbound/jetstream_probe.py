"""Whether the broker has JetStream: asked once for all of a node's Publishers at a time.

A publish into the stream that finds no stream means the broker has no JetStream, or nobody
has made the stream yet. :class:`JetStreamProbe` finds out which, makes the stream when it
is missing, and keeps its answer for :data:`PROBE_CACHE_SECONDS`, so a burst of such
publishes asks the broker once.
"""

from __future__ import annotations

import logging
import math

import trio

from steward_otp.jetstream import (
    JetStreamUnavailable,
    StreamLimits,
    ensure_stream,
    jetstream_available,
)
from steward_otp.message import Message
from steward_otp.transport import Transport

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 2.0
"""Seconds the broker has to answer whether it has JetStream."""
PROBE_CACHE_SECONDS = 2.0
"""How long that answer stands for further publishes that find no stream."""


class JetStreamProbe:
    """Asks ``bridge``'s broker whether it has JetStream, making the stream with ``limits``
    when it has JetStream and no stream yet."""

    def __init__(self, bridge: Transport, limits: StreamLimits) -> None:
        self.bridge = bridge
        self.limits = limits
        self._lock = trio.Lock()
        self._probed: tuple[float, bool | None] = (-math.inf, None)

    async def available(self) -> bool | None:
        """True: the broker has JetStream and the stream exists (now made if it was
        missing). False: the broker has no JetStream. None: no answer in time, or the stream
        could not be made. One probe at a time; its answer stands for PROBE_CACHE_SECONDS."""
        async with self._lock:
            probed_at, available = self._probed
            if trio.current_time() - probed_at < PROBE_CACHE_SECONDS:
                return available
            available = await jetstream_available(self.bridge, timeout=PROBE_TIMEOUT)
            if available:
                try:
                    if await ensure_stream(self.bridge, self.limits, timeout=PROBE_TIMEOUT):
                        log.info("JetStream: made the stream for messages sent from here")
                except JetStreamUnavailable as exc:
                    log.warning("JetStream: the stream could not be made: %s", exc)
                    available = None
            self._probed = (trio.current_time(), available)
            return available

    def broker_url(self) -> str:
        """The broker's URL, for error lines (``of this node`` when it is not known)."""
        try:
            return str(self.bridge.info.get("url") or "of this node")
        except Exception:  # only words for an error line
            return "of this node"

    def missing_text(self, subject: str, message: Message) -> str:
        """The error line for ``message`` (published on ``subject``), which asked for
        JetStream from a broker that has none."""
        return (
            f"error: {subject}: message {message.id} to {message.to_node}: this message "
            f"asks for JetStream but the broker {self.broker_url()} has none; start the "
            'broker with JetStream (nats-server --jetstream), or send it without "jetstream": '
            "true"
        )
