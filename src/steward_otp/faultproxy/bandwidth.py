"""The bandwidth cap of the fault proxy: a token bucket in bytes on Trio's clock.

:class:`TokenBucket` paces the bytes of one direction over all connections of the proxy;
:func:`quantum_for` is how many bytes go at once under a cap. Guarantee: the bytes a bucket
lets go in any interval of ``T`` seconds are at most ``rate * T + burst``.
"""

from __future__ import annotations

import trio


def quantum_for(bandwidth: float) -> int:
    """Bytes sent at once under a cap of ``bandwidth`` bytes/s: 20 ms worth (512 B to 16 KiB).

    The token bucket's burst is two quanta.
    """
    return max(512, min(16384, int(bandwidth * 0.02)))


class TokenBucket:
    """A token bucket in bytes on Trio's clock, shared by every sender of one direction.

    ``take(n)`` returns when ``n`` bytes may go. Tokens refill at ``rate`` per second up to
    ``burst``; a taker that finds too few takes them anyway (the level goes negative) and
    sleeps until the debt is paid, so concurrent takers are served in the order they came
    and the total over any ``T`` seconds is at most ``rate * T + burst``.
    """

    def __init__(self, rate: float, burst: float) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("rate and burst must be > 0")
        self.rate = rate
        self.burst = burst
        self._level = burst
        self._stamp: float | None = None

    async def take(self, n: int) -> None:
        """Wait until ``n`` bytes may be sent."""
        now = trio.current_time()
        if self._stamp is None:
            self._stamp = now
        self._level = min(self.burst, self._level + (now - self._stamp) * self.rate)
        self._stamp = now
        self._level -= n
        if self._level < 0:
            await trio.sleep(-self._level / self.rate)
        else:
            await trio.lowlevel.checkpoint()
