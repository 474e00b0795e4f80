"""The link profiles of the fault proxy: how a link misbehaves, and the named ones.

A :class:`Profile` is a frozen record of a link's latency, jitter, bandwidth cap, outage
schedule and random resets; :data:`PROFILES` holds the named ones (:data:`PERFECT`,
:data:`SATELLITE`, :data:`FLAKY`) that ``--profile`` chooses from. A profile is checked when
made (ValueError for an impossible link) and never changes; :meth:`Profile.scaled` makes a
new one.
"""

from __future__ import annotations

from typing import Final, Literal

import attrs

OutageMode = Literal["hold", "drop"]
"""``hold``: bytes wait and are delivered after the outage; ``drop``: they are discarded and
the connections that lost bytes are reset when it ends."""


@attrs.frozen
class Profile:
    """How a link misbehaves. Durations are seconds, ``bandwidth`` bytes per second.

    ``latency`` and ``jitter`` apply to each direction (``latency`` is one way: the round trip
    is twice it). ``bandwidth`` is per direction for the whole proxy; None is no cap.

    Outages: every ``outage_every`` seconds an outage of ``outage_seconds``; periodic (the
    link is up ``outage_every - outage_seconds``, then down ``outage_seconds``) unless
    ``random_outages``, in which case the gaps between outages are exponential with mean
    ``outage_every`` and each lasts uniformly between half and one and a half times
    ``outage_seconds``. ``reset_every``: mean seconds between random resets of every
    connection (exponential gaps); None for none.
    """

    name: str
    latency: float = 0.0
    jitter: float = 0.0
    bandwidth: float | None = None
    outage_every: float | None = None
    outage_seconds: float = 0.0
    outage_mode: OutageMode = "hold"
    random_outages: bool = False
    reset_every: float | None = None

    def __attrs_post_init__(self) -> None:
        if self.latency < 0 or self.jitter < 0 or self.outage_seconds < 0:
            raise ValueError(f"profile {self.name}: latency, jitter and outages must be >= 0")
        if self.bandwidth is not None and self.bandwidth <= 0:
            raise ValueError(f"profile {self.name}: bandwidth must be > 0 bytes/s (or None)")
        if self.outage_every is not None and self.outage_every <= 0:
            raise ValueError(f"profile {self.name}: outage_every must be > 0 (or None)")
        if (
            self.outage_every is not None
            and not self.random_outages
            and self.outage_seconds >= self.outage_every
        ):
            raise ValueError(
                f"profile {self.name}: a periodic outage must be shorter than its period"
            )
        if self.reset_every is not None and self.reset_every <= 0:
            raise ValueError(f"profile {self.name}: reset_every must be > 0 (or None)")

    def scaled(self, factor: float) -> Profile:
        """The same link with its fault schedule (outage period and length, reset gaps)
        multiplied by ``factor``; latency, jitter and bandwidth are unchanged.

        ``SATELLITE.scaled(0.1)`` has a 1 s outage every 6 s: the same duty cycle in a tenth
        of the time, for short test runs.
        """
        if factor <= 0:
            raise ValueError("factor must be > 0")
        return attrs.evolve(
            self,
            name=f"{self.name}x{factor:g}",
            outage_every=None if self.outage_every is None else self.outage_every * factor,
            outage_seconds=self.outage_seconds * factor,
            reset_every=None if self.reset_every is None else self.reset_every * factor,
        )

    def describe(self) -> str:
        """One line for logs: the profile's figures."""
        parts = [f"latency {self.latency * 1000:g} ms (RTT {self.latency * 2000:g} ms)"]
        if self.jitter:
            parts.append(f"jitter {self.jitter * 1000:g} ms")
        if self.bandwidth is not None:
            parts.append(f"{self.bandwidth * 8 / 1000:g} kbit/s")
        if self.outage_every is not None and self.outage_seconds:
            how = "about every" if self.random_outages else "every"
            outage = f"{self.outage_seconds:g} s outage ({self.outage_mode})"
            parts.append(f"{outage} {how} {self.outage_every:g} s")
        if self.reset_every is not None:
            parts.append(f"resets about every {self.reset_every:g} s")
        return f"{self.name}: " + ", ".join(parts)


PERFECT: Final = Profile("perfect")
"""No fault at all: a plain relay (useful as a baseline and to inject faults by hand)."""

SATELLITE: Final = Profile(
    "satellite",
    latency=0.3,
    jitter=0.02,
    bandwidth=256_000 / 8,
    outage_every=60.0,
    outage_seconds=10.0,
    outage_mode="hold",
)
"""A geostationary link: 600 ms RTT (+ up to 20 ms jitter each way), 256 kbit/s each way,
and a 10 s outage every minute (the last 10 s of each minute) that TCP rides out."""

FLAKY: Final = Profile(
    "flaky",
    latency=0.04,
    jitter=0.06,
    bandwidth=1_000_000 / 8,
    outage_every=20.0,
    outage_seconds=2.0,
    outage_mode="hold",
    random_outages=True,
    reset_every=30.0,
)
"""A bad terrestrial or radio link: 80 ms RTT with up to 60 ms jitter each way, 1 Mbit/s,
outages of 1-3 s about every 20 s, and every connection reset about every 30 s."""

PROFILES: Final[dict[str, Profile]] = {p.name: p for p in (PERFECT, SATELLITE, FLAKY)}
"""The named profiles, by name."""
