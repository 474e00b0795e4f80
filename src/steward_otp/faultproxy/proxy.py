"""The fault proxy itself: relays TCP connections and plays a profile's faults on them.

:class:`FaultProxy` accepts connections, connects each to the upstream and relays both
directions through a :class:`~steward_otp.faultproxy.connection.ChunkBuffer`, delivering
each chunk after the profile's latency and jitter and within its bandwidth cap. It plays
the profile's schedule of outages and resets, and takes the same faults by hand
(:meth:`FaultProxy.start_outage`, :meth:`FaultProxy.end_outage`, :meth:`FaultProxy.reset_all`).
:class:`ProxyStats` counts what it did, :class:`FaultEvent` records each fault played.

What it guarantees (bytes never changed on an open connection, latency, bandwidth, outages,
resets, determinism, bounded buffers) is listed in :mod:`steward_otp.faultproxy`.
"""

from __future__ import annotations

import logging
import math
import random
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, Literal

import attrs
import trio

from steward_otp.faultproxy.bandwidth import TokenBucket, quantum_for
from steward_otp.faultproxy.connection import ChunkBuffer, RelayedConnection, abort_socket
from steward_otp.faultproxy.profiles import PERFECT, OutageMode, Profile

log = logging.getLogger(__name__)

Direction = Literal["up", "down"]

READ_SIZE: Final = 65536
DEFAULT_MAX_BUFFERED: Final = 16 * 1024 * 1024


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


Upstream = tuple[str, int] | Callable[[], Awaitable[trio.abc.Stream]]


class FaultProxy:
    """The proxy. See :mod:`steward_otp.faultproxy` for what it guarantees.

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
        self._connections: set[RelayedConnection] = set()
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
        connection = RelayedConnection(self._numbers)
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
                    abort_socket(stream)
                await trio.aclose_forcefully(stream)

    async def _relay(
        self,
        connection: RelayedConnection,
        source: trio.abc.Stream,
        sink: trio.abc.Stream,
        direction: Direction,
    ) -> None:
        buffer = ChunkBuffer(self.max_buffered)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read, connection, source, buffer)
                await self._deliver(connection, sink, buffer, direction)
        except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            # One peer reset or vanished: pass it on to the other, as an end-to-end TCP
            # connection would.
            connection.reset()

    async def _read(
        self, connection: RelayedConnection, source: trio.abc.Stream, buffer: ChunkBuffer
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
        self,
        connection: RelayedConnection,
        sink: trio.abc.Stream,
        buffer: ChunkBuffer,
        direction: Direction,
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
