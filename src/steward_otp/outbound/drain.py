"""How fast the outbox drains toward each node: the figures behind ``queue ls``'s progress
lines ("ship1: 412 left, 35.2/s, about 12 s").

:class:`DrainMeter` counts deliveries per destination in one-second buckets over the last
:data:`WINDOW` seconds. It is fed by the Publishers as messages are delivered (after the
store has recorded them) and read by the control socket; it keeps at most ``WINDOW``
buckets per destination, and forgets a destination that has been quiet for a whole window.
"""

from __future__ import annotations

from collections import deque
from typing import Final

__all__ = ["WINDOW", "DrainMeter"]

WINDOW: Final = 60
"""Seconds of deliveries the rate is measured over."""


class DrainMeter:
    """Deliveries per destination over the last :data:`WINDOW` seconds."""

    def __init__(self) -> None:
        self._buckets: dict[str, deque[list[int]]] = {}  # [second, count], oldest first

    def delivered(self, to_node: str, count: int, now: float) -> None:
        """Record ``count`` messages delivered to ``to_node`` at ``now`` (seconds)."""
        second = int(now)
        buckets = self._buckets.setdefault(to_node, deque())
        if buckets and buckets[-1][0] == second:
            buckets[-1][1] += count
        else:
            buckets.append([second, count])
        self._trim(buckets, second)

    def _trim(self, buckets: deque[list[int]], second: int) -> None:
        while buckets and buckets[0][0] <= second - WINDOW:
            buckets.popleft()

    def rate(self, to_node: str, now: float) -> float:
        """Messages per second delivered to ``to_node`` over the last window (0: none)."""
        buckets = self._buckets.get(to_node)
        if not buckets:
            return 0.0
        self._trim(buckets, int(now))
        if not buckets:
            del self._buckets[to_node]
            return 0.0
        # Over the time since the first delivery in the window, at least one second.
        span = max(now - buckets[0][0], 1.0)
        return sum(count for _, count in buckets) / span

    def progress(self, held: dict[str, int], now: float) -> dict[str, dict[str, float | None]]:
        """For each destination with messages ``held``: how many, the rate, and the seconds
        left at that rate (None while nothing is being delivered)."""
        result: dict[str, dict[str, float | None]] = {}
        for node, count in sorted(held.items()):
            rate = self.rate(node, now)
            eta = count / rate if rate > 0 else None
            result[node] = {"held": count, "per_second": round(rate, 2), "eta_seconds": eta}
        return result
