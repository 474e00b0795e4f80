"""A fault-injecting TCP proxy: latency, jitter, a bandwidth cap, black holes and resets.

It sits between nodes and the broker and makes a perfect loopback link behave like a bad
real one, for tests (``tests/chaos/``) and for operators who want to see what a node does
on a satellite link before it is on one::

    python -m steward_otp.faultproxy --listen 127.0.0.1:4333 --upstream 127.0.0.1:4222 \\
        --profile satellite --seed 1

Nodes then use ``--broker-address 127.0.0.1:4333``. While it runs, ``SIGUSR1`` resets every
connection and ``SIGUSR2`` starts an outage of ``--manual-outage`` seconds. See
``docs/chaos.md`` for the profiles and the options.

In a Trio program or test::

    proxy = FaultProxy(("127.0.0.1", nats_port), profile=SATELLITE.scaled(0.1), seed=7)
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.serve)        # listens on proxy.port
        ...
        proxy.start_outage(5)                   # black hole from now on, for 5 s
        proxy.reset_all()                       # RST both ends of every connection

Guarantees (each direction of each connection separately, "up" = client to upstream):

* **Bytes are never changed, reordered or dropped on an open connection.** What the proxy
  delivers is a prefix of what it read, in order. The one mode that discards bytes (an
  outage in ``drop`` mode) resets every connection that lost bytes when the outage ends, so
  no peer ever reads a stream with a hole in it.
* **Latency.** A byte is delivered no earlier than ``latency`` seconds, plus its chunk's
  jitter sample (uniform in ``[0, jitter]``), after the proxy read it. Jitter never reorders:
  a chunk is never delivered before the one read before it.
* **Bandwidth.** With a cap of ``bandwidth`` bytes/s, the bytes delivered in one direction,
  over all connections of the proxy together (one physical link), in any interval of ``T``
  seconds are at most ``bandwidth * T + burst`` (``burst`` is a few hundredths of a second's
  worth, see :func:`quantum_for`).
* **Outage (black hole).** While one lasts nothing is delivered and no connection is closed
  by the proxy. In ``hold`` mode (a link that is down while TCP keeps retrying) the bytes
  read meanwhile are delivered after it, in order, within the bandwidth cap; in ``drop``
  mode they are discarded (see above). A connection accepted during an outage is connected
  upstream only when it ends.
* **Reset.** :meth:`FaultProxy.reset_all` (and a profile's random resets) close both sockets
  of every connection with ``SO_LINGER`` 0, so both peers see a connection reset, as when a
  NAT box or a modem drops its state. An upstream that refuses the connection (broker down)
  resets the client too.
* **Determinism.** The schedule of outages and resets depends only on the profile and the
  seed; the jitter samples of a connection only on the seed, the connection's number (1 for
  the first accepted) and the direction. Operating-system timing is not under its control,
  so a replay repeats the same faults at the same times, not the same interleaving.
* **Bounded.** At most ``max_buffered`` bytes (default 16 MiB) wait in the proxy per
  connection and direction; beyond that it stops reading from the sender (TCP back-pressure,
  as a full modem buffer does).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import random
import signal
import socket
import struct
import sys
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, Literal

import attrs
import trio

__all__ = [
    "FLAKY",
    "PERFECT",
    "PROFILES",
    "SATELLITE",
    "FaultEvent",
    "FaultProxy",
    "OutageMode",
    "Profile",
    "ProxyStats",
    "TokenBucket",
    "main",
    "quantum_for",
]

log = logging.getLogger(__name__)

OutageMode = Literal["hold", "drop"]
"""``hold``: bytes wait and are delivered after the outage; ``drop``: they are discarded and
the connections that lost bytes are reset when it ends."""

Direction = Literal["up", "down"]

READ_SIZE: Final = 65536
DEFAULT_MAX_BUFFERED: Final = 16 * 1024 * 1024


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


@attrs.define
class ProxyStats:
    """Counters of one proxy since it was made."""

    connections: int = 0
    """Connections accepted."""
    active: int = 0
    """Connections open now."""
    bytes_up: int = 0
    """Bytes delivered from clients to the upstream."""
    bytes_down: int = 0
    """Bytes delivered from the upstream to clients."""
    dropped_bytes: int = 0
    """Bytes discarded by ``drop`` outages."""
    resets: int = 0
    """Connections reset (by a reset, a ``drop`` outage, a failed upstream connect or a peer's
    reset passed on)."""
    outages: int = 0
    """Outages started."""
    upstream_failures: int = 0
    """Upstream connects that failed (the client was reset)."""


@attrs.frozen
class FaultEvent:
    """One fault the proxy played: an outage (``seconds`` long, in ``mode``) or a reset (of
    ``count`` connections), at ``at`` on Trio's clock (:attr:`FaultProxy.started_at` is
    when the proxy started)."""

    at: float
    kind: Literal["outage", "reset"]
    seconds: float = 0.0
    mode: OutageMode = "hold"
    count: int = 0


class _Buffer:
    """The bytes read in one direction and not yet delivered, as ``(read time, bytes)``
    chunks (empty bytes: the end of the stream), with back-pressure above ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self._chunks: deque[tuple[float, bytes]] = deque()
        self._changed = trio.Event()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def put(self, item: tuple[float, bytes]) -> None:
        while self.size >= self.limit:
            await self._changed.wait()
        self._chunks.append(item)
        self.size += len(item[1])
        self._notify()

    async def get(self) -> tuple[float, bytes]:
        while not self._chunks:
            await self._changed.wait()
        return self._chunks.popleft()

    def delivered(self, n: int) -> None:
        self.size -= n
        self._notify()


@attrs.define(eq=False)
class _Connection:
    number: int
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    aborted: bool = False
    damaged: bool = False

    def reset(self) -> None:
        self.aborted = True
        self.scope.cancel()


def _abort_socket(stream: trio.abc.Stream) -> None:
    """Make closing ``stream`` send a TCP RST (SO_LINGER on, 0 s) when it is a socket."""
    if isinstance(stream, trio.SocketStream):
        with contextlib.suppress(OSError):
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


Upstream = tuple[str, int] | Callable[[], Awaitable[trio.abc.Stream]]


class FaultProxy:
    """The proxy. See the module docstring for what it guarantees.

    ``upstream`` is ``(host, port)`` or an async function returning a connected stream (for
    tests on in-memory streams). ``listen`` is where :meth:`serve` listens (port 0: a free
    one, see :attr:`port`). Fault controls (:meth:`start_outage`, :meth:`end_outage`,
    :meth:`reset_all`) work while :meth:`run` or :meth:`serve` runs.
    """

    def __init__(
        self,
        upstream: Upstream,
        *,
        profile: Profile = PERFECT,
        seed: int = 0,
        listen: tuple[str, int] = ("127.0.0.1", 0),
        max_buffered: int = DEFAULT_MAX_BUFFERED,
    ) -> None:
        self.upstream = upstream
        self.profile = profile
        self.seed = seed
        self.listen = listen
        self.max_buffered = max_buffered
        self.stats = ProxyStats()
        self.port: int | None = None
        self._buckets: dict[Direction, TokenBucket | None] = {
            d: self._bucket(profile) for d in ("up", "down")
        }
        self._connections: set[_Connection] = set()
        self._numbers = 0
        self._outage_until = -math.inf
        self._outage_mode: OutageMode = profile.outage_mode
        self._outage_changed = trio.Event()
        self._nursery: trio.Nursery | None = None
        self.started_at: float | None = None
        self.events: deque[FaultEvent] = deque(maxlen=10_000)
        """The faults played so far, oldest first (the newest 10,000)."""

    @staticmethod
    def _bucket(profile: Profile) -> TokenBucket | None:
        if profile.bandwidth is None:
            return None
        return TokenBucket(profile.bandwidth, 2 * quantum_for(profile.bandwidth))

    # ---------------------------------------------------------------- running

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on ``listen``, relay every connection, play the profile's schedule.

        Reports the port it listens on to ``nursery.start`` (also in :attr:`port`); runs until
        cancelled, then closes every connection.
        """
        host, port = self.listen
        listeners = await trio.open_tcp_listeners(port, host=host)
        self.port = int(listeners[0].socket.getsockname()[1])
        await self.run(listeners, task_status=task_status)

    async def run(
        self,
        listeners: Sequence[trio.SocketListener] = (),
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Play the schedule and serve ``listeners`` (none: only :meth:`serve_stream` calls)
        until cancelled. Reports :attr:`port` (0 without listeners) once running."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self.started_at = trio.current_time()
                nursery.start_soon(self._play_outages)
                nursery.start_soon(self._play_resets)
                if listeners:
                    await nursery.start(trio.serve_listeners, self.serve_stream, list(listeners))
                log.info(
                    "faultproxy: port %s -> %s, profile %s, seed %s",
                    self.port,
                    self.upstream_name,
                    self.profile.describe(),
                    self.seed,
                )
                task_status.started(self.port or 0)
                await trio.sleep_forever()
        finally:
            self._nursery = None

    @property
    def upstream_name(self) -> str:
        """``host:port`` of the upstream (or a placeholder for a stream factory)."""
        if isinstance(self.upstream, tuple):
            return f"{self.upstream[0]}:{self.upstream[1]}"
        return "<stream factory>"

    # ---------------------------------------------------------------- controls

    @property
    def in_outage(self) -> bool:
        """True while an outage lasts."""
        return trio.current_time() < self._outage_until

    @property
    def active_connections(self) -> int:
        """Connections open now."""
        return len(self._connections)

    def start_outage(self, seconds: float, mode: OutageMode | None = None) -> None:
        """Black-hole the link from now for ``seconds`` (an outage already running is
        extended, never shortened). ``mode`` defaults to the profile's."""
        if self._nursery is None:
            raise RuntimeError("the proxy is not running (start serve() or run() first)")
        now = trio.current_time()
        if now >= self._outage_until:
            self._outage_mode = mode or self.profile.outage_mode
            self.stats.outages += 1
            self.events.append(FaultEvent(now, "outage", seconds, self._outage_mode))
            log.info("faultproxy: outage (%s) for %.3g s", self._outage_mode, seconds)
            self._nursery.start_soon(self._after_outage)
        self._outage_until = max(self._outage_until, now + seconds)
        self._signal_outage_change()

    def end_outage(self) -> None:
        """End the current outage now (nothing happens when there is none)."""
        if self.in_outage:
            self._outage_until = trio.current_time()
            self._signal_outage_change()

    def reset_all(self) -> int:
        """Reset every open connection now (RST to both peers); returns how many."""
        connections = list(self._connections)
        for connection in connections:
            connection.reset()
        self.events.append(FaultEvent(trio.current_time(), "reset", count=len(connections)))
        if connections:
            log.info("faultproxy: reset %d connection(s)", len(connections))
        return len(connections)

    def _signal_outage_change(self) -> None:
        self._outage_changed.set()
        self._outage_changed = trio.Event()

    async def _wait_link_up(self) -> None:
        """Return when no outage lasts (at once when none does)."""
        while True:
            until = self._outage_until
            if trio.current_time() >= until:
                return
            changed = self._outage_changed
            with trio.move_on_at(until):
                await changed.wait()

    async def _after_outage(self) -> None:
        await self._wait_link_up()
        log.info("faultproxy: link up again")
        for connection in list(self._connections):
            if connection.damaged:
                connection.reset()

    async def _play_outages(self) -> None:
        profile = self.profile
        if profile.outage_every is None or profile.outage_seconds <= 0:
            return
        rng = random.Random(f"{self.seed}/outages")
        start = trio.current_time()
        k = 0
        while True:
            if profile.random_outages:
                start += rng.expovariate(1 / profile.outage_every)
                length = profile.outage_seconds * rng.uniform(0.5, 1.5)
                at = start
                start += length
            else:
                k += 1
                at = start + k * profile.outage_every - profile.outage_seconds
                length = profile.outage_seconds
            await trio.sleep_until(at)
            self.start_outage(length)

    async def _play_resets(self) -> None:
        profile = self.profile
        if profile.reset_every is None:
            return
        rng = random.Random(f"{self.seed}/resets")
        at = trio.current_time()
        while True:
            at += rng.expovariate(1 / profile.reset_every)
            await trio.sleep_until(at)
            self.reset_all()

    # ---------------------------------------------------------------- relaying

    async def _connect_upstream(self) -> trio.abc.Stream:
        if isinstance(self.upstream, tuple):
            host, port = self.upstream
            return await trio.open_tcp_stream(host, port)
        return await self.upstream()

    async def serve_stream(self, client: trio.abc.Stream) -> None:
        """Relay one accepted client stream to a new upstream connection until either side
        ends it or it is reset. (What the listener calls; tests may call it directly.)"""
        self._numbers += 1
        connection = _Connection(self._numbers)
        self.stats.connections += 1
        self.stats.active += 1
        self._connections.add(connection)
        upstream: trio.abc.Stream | None = None
        try:
            with connection.scope:
                await self._wait_link_up()
                try:
                    upstream = await self._connect_upstream()
                except OSError as exc:
                    log.info("faultproxy: upstream %s: %s", self.upstream_name, exc)
                    self.stats.upstream_failures += 1
                    connection.aborted = True
                    return
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._relay, connection, client, upstream, "up")
                    nursery.start_soon(self._relay, connection, upstream, client, "down")
        finally:
            self._connections.discard(connection)
            self.stats.active -= 1
            if connection.aborted:
                self.stats.resets += 1
            for stream in (client, upstream):
                if stream is None:
                    continue
                if connection.aborted:
                    _abort_socket(stream)
                await trio.aclose_forcefully(stream)

    async def _relay(
        self,
        connection: _Connection,
        source: trio.abc.Stream,
        sink: trio.abc.Stream,
        direction: Direction,
    ) -> None:
        buffer = _Buffer(self.max_buffered)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read, connection, source, buffer)
                await self._deliver(connection, sink, buffer, direction)
        except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            # One peer reset or vanished: pass it on to the other, as an end-to-end TCP
            # connection would.
            connection.reset()

    async def _read(
        self, connection: _Connection, source: trio.abc.Stream, buffer: _Buffer
    ) -> None:
        while True:
            data = await source.receive_some(READ_SIZE)
            if not data:
                await buffer.put((trio.current_time(), b""))
                return
            if self.in_outage and self._outage_mode == "drop":
                connection.damaged = True
                self.stats.dropped_bytes += len(data)
                continue
            await buffer.put((trio.current_time(), bytes(data)))

    async def _deliver(
        self, connection: _Connection, sink: trio.abc.Stream, buffer: _Buffer, direction: Direction
    ) -> None:
        rng = random.Random(f"{self.seed}/{connection.number}/{direction}")
        bucket = self._buckets[direction]
        last_due = -math.inf
        while True:
            read_at, data = await buffer.get()
            profile = self.profile
            jitter = rng.uniform(0.0, profile.jitter) if profile.jitter else 0.0
            due = max(last_due, read_at + profile.latency + jitter)
            last_due = due
            await trio.sleep_until(due)
            if not data:  # the sender closed its side: pass the end of stream on
                await self._wait_link_up()
                if isinstance(sink, trio.abc.HalfCloseableStream):
                    await sink.send_eof()
                return
            if bucket is None:
                await self._wait_link_up()
                await sink.send_all(data)
                self._count(direction, len(data))
                buffer.delivered(len(data))
                continue
            quantum = quantum_for(bucket.rate)
            for offset in range(0, len(data), quantum):
                piece = data[offset : offset + quantum]
                await self._wait_link_up()
                await bucket.take(len(piece))
                await self._wait_link_up()  # an outage may have begun while waiting
                await sink.send_all(piece)
                self._count(direction, len(piece))
                buffer.delivered(len(piece))

    def _count(self, direction: Direction, n: int) -> None:
        if direction == "up":
            self.stats.bytes_up += n
        else:
            self.stats.bytes_down += n


# -------------------------------------------------------------------- command line


def _host_port(text: str) -> tuple[str, int]:
    host, separator, port = text.rpartition(":")
    if not separator or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m steward_otp.faultproxy",
        description="A TCP proxy that adds latency, jitter, a bandwidth cap, outages and "
        "resets between nodes and their broker. SIGUSR1 resets every connection; SIGUSR2 "
        "starts an outage of --manual-outage seconds.",
    )
    parser.add_argument("--listen", type=_host_port, required=True, help="HOST:PORT to listen on")
    parser.add_argument(
        "--upstream", type=_host_port, required=True, help="HOST:PORT of the broker"
    )
    parser.add_argument("--profile", choices=sorted(PROFILES), default="perfect")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault schedule and jitter")
    parser.add_argument("--latency-ms", type=float, help="one-way latency (overrides the profile)")
    parser.add_argument("--jitter-ms", type=float, help="one-way jitter (overrides the profile)")
    parser.add_argument(
        "--bandwidth-kbit", type=float, help="cap per direction, kbit/s; 0 = none (overrides)"
    )
    parser.add_argument("--outage-every", type=float, help="seconds between outages (overrides)")
    parser.add_argument("--outage-seconds", type=float, help="length of an outage (overrides)")
    parser.add_argument("--outage-mode", choices=["hold", "drop"], help="(overrides the profile)")
    parser.add_argument(
        "--time-scale", type=float, default=1.0, help="multiply the fault schedule by this"
    )
    parser.add_argument(
        "--manual-outage", type=float, default=10.0, help="seconds of the SIGUSR2 outage"
    )
    parser.add_argument("--log-level", choices=["debug", "info", "warning"], default="info")
    return parser


def profile_from_args(args: argparse.Namespace) -> Profile:
    """The profile named by ``--profile`` with the command line's overrides applied."""
    profile = PROFILES[args.profile]
    changes: dict[str, Any] = {}
    if args.latency_ms is not None:
        changes["latency"] = args.latency_ms / 1000
    if args.jitter_ms is not None:
        changes["jitter"] = args.jitter_ms / 1000
    if args.bandwidth_kbit is not None:
        changes["bandwidth"] = args.bandwidth_kbit * 1000 / 8 if args.bandwidth_kbit > 0 else None
    if args.outage_every is not None:
        changes["outage_every"] = args.outage_every if args.outage_every > 0 else None
    if args.outage_seconds is not None:
        changes["outage_seconds"] = args.outage_seconds
    if args.outage_mode is not None:
        changes["outage_mode"] = args.outage_mode
    if changes:
        profile = attrs.evolve(profile, **changes)
    if args.time_scale != 1.0:
        profile = profile.scaled(args.time_scale)
    return profile


async def _serve_until_signalled(proxy: FaultProxy, manual_outage: float) -> None:
    signals = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM, signal.SIGINT)
    with trio.open_signal_receiver(*signals) as received:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(proxy.serve)
            print(
                f"faultproxy listening on {proxy.listen[0]}:{port} -> {proxy.upstream_name} "
                f"({proxy.profile.describe()}, seed {proxy.seed})",
                file=sys.stderr,
                flush=True,
            )
            async for signum in received:
                if signum == signal.SIGUSR1:
                    proxy.reset_all()
                elif signum == signal.SIGUSR2:
                    proxy.start_outage(manual_outage)
                else:
                    nursery.cancel_scope.cancel()
                    break


def main(argv: Sequence[str] | None = None) -> int:
    """Run the proxy from the command line until SIGINT or SIGTERM; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        profile = profile_from_args(args)
    except ValueError as exc:
        print(f"faultproxy: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s"
    )
    proxy = FaultProxy(args.upstream, profile=profile, seed=args.seed, listen=args.listen)
    trio.run(_serve_until_signalled, proxy, args.manual_outage)
    return 0


if __name__ == "__main__":
    sys.exit(main())
