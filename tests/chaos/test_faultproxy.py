"""The fault-injecting proxy itself: what it promises in steward_otp.faultproxy's docstring.

Timing is checked on in-memory streams under Trio's autojump clock, where it is exact; on
real sockets only bytes, resets and generous bounds are checked.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from functools import partial

import attrs
import pytest
import trio
import trio.testing

from steward_otp.faultproxy import (
    FLAKY,
    PERFECT,
    SATELLITE,
    FaultProxy,
    Profile,
    TokenBucket,
    quantum_for,
)
from tests.conftest import free_loopback_port

pytestmark = pytest.mark.timeout(60)


class MemoryLink:
    """A proxy relaying in-memory streams: ``client`` <-> proxy <-> ``server``."""

    def __init__(self, proxy: FaultProxy, nursery: trio.Nursery) -> None:
        self.proxy = proxy
        self.nursery = nursery
        self.servers: list[trio.abc.Stream] = []
        self._server_ready = trio.Event()

    async def _connect(self) -> trio.abc.Stream:
        proxy_side, server_side = trio.testing.memory_stream_pair()
        self.servers.append(server_side)
        self._server_ready.set()
        return proxy_side

    async def open(self) -> tuple[trio.abc.Stream, trio.abc.Stream]:
        """A new client connection; returns (client end, server end)."""
        self._server_ready = trio.Event()
        client, proxy_side = trio.testing.memory_stream_pair()
        self.nursery.start_soon(self.proxy.serve_stream, proxy_side)
        await self._server_ready.wait()
        return client, self.servers[-1]


async def start_memory_link(nursery: trio.Nursery, profile: Profile, seed: int = 0) -> MemoryLink:
    link: MemoryLink | None = None

    async def connect() -> trio.abc.Stream:
        assert link is not None
        return await link._connect()

    proxy = FaultProxy(connect, profile=profile, seed=seed)
    link = MemoryLink(proxy, nursery)
    await nursery.start(proxy.run)
    return link


async def receive_exactly(stream: trio.abc.ReceiveStream, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = await stream.receive_some(n - len(data))
        assert chunk, f"stream ended after {len(data)} of {n} bytes"
        data += chunk
    return bytes(data)


# ------------------------------------------------------------------ in memory, exact clock


async def test_bytes_pass_unchanged_in_both_directions(autojump_clock: trio.abc.Clock) -> None:
    up = random.Random(1).randbytes(300_000)
    down = random.Random(2).randbytes(200_000)
    async with trio.open_nursery() as nursery:
        link = await start_memory_link(nursery, attrs.evolve(FLAKY, reset_every=None))
        client, server = await link.open()
        got: dict[str, bytes] = {}

        async def send(stream: trio.abc.SendStream, data: bytes) -> None:
            for i in range(0, len(data), 7000):
                await stream.send_all(data[i : i + 7000])

        async def receive(name: str, stream: trio.abc.ReceiveStream, n: int) -> None:
            got[name] = await receive_exactly(stream, n)

        async with trio.open_nursery() as inner:
            inner.start_soon(send, client, up)
            inner.start_soon(send, server, down)
            inner.start_soon(receive, "up", server, len(up))
            inner.start_soon(receive, "down", client, len(down))
        assert got == {"up": up, "down": down}
        assert link.proxy.stats.bytes_up == len(up)
        assert link.proxy.stats.bytes_down == len(down)
        nursery.cancel_scope.cancel()


async def test_latency_is_added_each_way(autojump_clock: trio.abc.Clock) -> None:
    async with trio.open_nursery() as nursery:
        link = await start_memory_link(nursery, Profile("slow", latency=0.3))
        client, server = await link.open()
        start = trio.current_time()
        await client.send_all(b"ping")
        assert await receive_exactly(server, 4) == b"ping"
        one_way = trio.current_time() - start
        await server.send_all(b"pong")
        assert await receive_exactly(client, 4) == b"pong"
        round_trip = trio.current_time() - start
        nursery.cancel_scope.cancel()
    assert one_way == pytest.approx(0.3, abs=0.01)
    assert round_trip == pytest.approx(0.6, abs=0.01)


async def test_jitter_delays_within_bounds_and_never_reorders(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio.open_nursery() as nursery:
        link = await start_memory_link(nursery, Profile("jittery", latency=0.1, jitter=0.2))
        client, server = await link.open()
        arrivals: list[float] = []
        received = bytearray()
        sent_at: list[float] = []

        async def receive() -> None:
            while len(received) < 50:
                received.extend(await server.receive_some(1))
                arrivals.append(trio.current_time())

        async with trio.open_nursery() as inner:
            inner.start_soon(receive)
            for i in range(50):
                sent_at.append(trio.current_time())
                await client.send_all(bytes([i]))
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert bytes(received) == bytes(range(50))
    delays = [a - s for a, s in zip(arrivals, sent_at, strict=True)]
    assert all(d >= 0.1 - 1e-6 for d in delays)
    assert max(delays) <= 0.1 + 0.2 + 50 * 0.01  # jitter plus waiting behind earlier bytes
    assert len({round(d, 3) for d in delays}) > 5  # the delay does vary


async def test_bandwidth_cap_is_respected(autojump_clock: trio.abc.Clock) -> None:
    rate = 32_000.0
    size = 320_000  # 10 s worth
    async with trio.open_nursery() as nursery:
        link = await start_memory_link(nursery, Profile("capped", bandwidth=rate))
        client, server = await link.open()
        start = trio.current_time()
        nursery.start_soon(client.send_all, bytes(size))
        times: list[tuple[float, int]] = []
        total = 0
        while total < size:
            total += len(await server.receive_some())
            times.append((trio.current_time() - start, total))
        nursery.cancel_scope.cancel()
    burst = 2 * quantum_for(rate)
    elapsed = times[-1][0]
    assert (size - burst) / rate <= elapsed <= size / rate + 0.1
    for t, delivered in times:  # never ahead of the cap at any point
        assert delivered <= rate * t + burst + 1


async def test_bandwidth_cap_is_shared_by_all_connections(
    autojump_clock: trio.abc.Clock,
) -> None:
    rate = 10_000.0
    async with trio.open_nursery() as nursery:
        link = await start_memory_link(nursery, Profile("capped", bandwidth=rate))
        pairs = [await link.open() for _ in range(4)]
        start = trio.current_time()
        for client, _ in pairs:
            nursery.start_soon(client.send_all, bytes(25_000))
        for _, server in pairs:
            await receive_exactly(server, 25_000)
        elapsed = trio.current_time() - start
        nursery.cancel_scope.cancel()
    assert elapsed >= (100_000 - 2 * quantum_for(rate)) / rate


async def test_token_bucket_rate_over_many_takers(autojump_clock: trio.abc.Clock) -> None:
    bucket = TokenBucket(1000.0, 100.0)
    done: list[float] = []

    async def taker() -> None:
        for _ in range(10):
            await bucket.take(50)
        done.append(trio.current_time())

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(taker)
    assert max(done) - start == pytest.approx((4 * 10 * 50 - 100) / 1000, abs=1e-6)


async def test_hold_outage_delays_bytes_then_delivers_them_in_order(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio.open_nursery() as nursery:
        link = await start_memory_link(nursery, PERFECT)
        client, server = await link.open()
        link.proxy.start_outage(5.0)
        assert link.proxy.in_outage
        start = trio.current_time()
        await client.send_all(b"held ")
        await client.send_all(b"bytes")
        assert await receive_exactly(server, 10) == b"held bytes"
        assert trio.current_time() - start == pytest.approx(5.0, abs=0.01)
        assert link.proxy.active_connections == 1  # nothing was closed
        nursery.cancel_scope.cancel()


async def test_outage_can_be_ended_early_and_new_connections_wait_for_it(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio.open_nursery() as nursery:
        link = await start_memory_link(nursery, PERFECT)
        link.proxy.start_outage(100.0)
        opened = trio.Event()

        async def open_one() -> None:
            await link.open()
            opened.set()

        nursery.start_soon(open_one)
        await trio.sleep(3)
        assert not opened.is_set()  # not connected upstream during the outage
        link.proxy.end_outage()
        await opened.wait()
        assert trio.current_time() < 3.5
        nursery.cancel_scope.cancel()


async def test_drop_outage_discards_and_then_resets_the_damaged_connection(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio.open_nursery() as nursery:
        link = await start_memory_link(nursery, PERFECT)
        damaged_client, damaged_server = await link.open()
        idle_client, _idle_server = await link.open()
        link.proxy.start_outage(2.0, mode="drop")
        await damaged_client.send_all(b"lost")
        await trio.sleep(3)
        # The damaged connection was closed on both ends; the idle one lives on.
        assert await damaged_server.receive_some() == b""
        with pytest.raises(trio.BrokenResourceError):
            for _ in range(3):
                await damaged_client.send_all(b"x")
                await trio.sleep(0.1)
        assert link.proxy.active_connections == 1
        assert link.proxy.stats.dropped_bytes == 4
        assert link.proxy.stats.resets == 1
        await idle_client.send_all(b"fine")
        nursery.cancel_scope.cancel()


async def test_satellite_profile_plays_a_10_s_outage_every_minute(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio.open_nursery() as nursery:
        link = await start_memory_link(nursery, SATELLITE, seed=3)
        start = link.proxy.started_at
        assert start is not None
        samples: dict[int, bool] = {}
        for second in range(0, 181):
            await trio.sleep_until(start + second + 0.5)
            samples[second] = link.proxy.in_outage
        nursery.cancel_scope.cancel()
    down = [s for s, out in samples.items() if out]
    assert down == [*range(50, 60), *range(110, 120), *range(170, 180)]
    assert [(e.kind, e.seconds) for e in link.proxy.events] == [("outage", 10.0)] * 3


def schedule(seed: int) -> list[tuple[str, float, float]]:
    """The first minute of FLAKY's fault schedule for ``seed``, relative to the start."""
    events: list[tuple[str, float, float]] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            link = await start_memory_link(nursery, FLAKY, seed=seed)
            await link.open()
            await trio.sleep(60)
            start = link.proxy.started_at
            assert start is not None
            events.extend(
                (e.kind, round(e.at - start, 6), round(e.seconds, 6)) for e in link.proxy.events
            )
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return events


def test_the_fault_schedule_is_a_function_of_the_seed() -> None:
    first, again, other = schedule(11), schedule(11), schedule(12)
    assert first == again
    assert first != other
    assert {kind for kind, _, _ in first} == {"outage", "reset"}


def test_scaled_profile_keeps_the_link_and_shrinks_the_schedule() -> None:
    fast = SATELLITE.scaled(0.1)
    assert (fast.latency, fast.bandwidth) == (SATELLITE.latency, SATELLITE.bandwidth)
    assert (fast.outage_every, fast.outage_seconds) == pytest.approx((6.0, 1.0))
    with pytest.raises(ValueError, match="shorter than its period"):
        Profile("bad", outage_every=1, outage_seconds=2)


# ------------------------------------------------------------------ real sockets


@pytest.fixture
async def echo_server(nursery: trio.Nursery) -> AsyncIterator[tuple[int, list[str]]]:
    """A TCP echo server on 127.0.0.1; yields (port, how each connection ended)."""
    endings: list[str] = []

    async def echo(stream: trio.SocketStream) -> None:
        try:
            while data := await stream.receive_some():
                await stream.send_all(data)
            endings.append("eof")
        except trio.BrokenResourceError:
            endings.append("reset")

    listeners = await nursery.start(partial(trio.serve_tcp, echo, 0, host="127.0.0.1"))
    yield listeners[0].socket.getsockname()[1], endings


async def start_proxy(
    nursery: trio.Nursery, upstream_port: int, profile: Profile = PERFECT
) -> FaultProxy:
    proxy = FaultProxy(("127.0.0.1", upstream_port), profile=profile, seed=1)
    await nursery.start(proxy.serve)
    return proxy


async def test_real_sockets_pass_bytes_unchanged(
    nursery: trio.Nursery, echo_server: tuple[int, list[str]]
) -> None:
    proxy = await start_proxy(nursery, echo_server[0])
    data = random.Random(5).randbytes(1 << 20)
    client = await trio.open_tcp_stream("127.0.0.1", proxy.port or 0)
    with trio.fail_after(30):
        async with trio.open_nursery() as inner:
            inner.start_soon(client.send_all, data)
            assert await receive_exactly(client, len(data)) == data
    await client.aclose()
    with trio.fail_after(10):
        while echo_server[1] != ["eof"]:
            await trio.sleep(0.01)


async def test_real_sockets_latency_and_cap_within_generous_bounds(
    nursery: trio.Nursery, echo_server: tuple[int, list[str]]
) -> None:
    proxy = await start_proxy(nursery, echo_server[0], Profile("x", latency=0.1, bandwidth=50_000))
    client = await trio.open_tcp_stream("127.0.0.1", proxy.port or 0)
    start = trio.current_time()
    await client.send_all(b"x")
    await receive_exactly(client, 1)
    round_trip = trio.current_time() - start
    assert 0.2 <= round_trip < 5
    start = trio.current_time()
    async with trio.open_nursery() as inner:
        inner.start_soon(client.send_all, bytes(50_000))
        await receive_exactly(client, 50_000)
    # 50 kB each way at 50 kB/s, pipelined: about 1 s plus the round trip.
    assert 0.9 <= trio.current_time() - start < 10
    await client.aclose()


async def test_reset_closes_both_sides(
    nursery: trio.Nursery, echo_server: tuple[int, list[str]]
) -> None:
    proxy = await start_proxy(nursery, echo_server[0])
    client = await trio.open_tcp_stream("127.0.0.1", proxy.port or 0)
    await client.send_all(b"hello")
    assert await receive_exactly(client, 5) == b"hello"
    assert proxy.reset_all() == 1
    with trio.fail_after(10), pytest.raises(trio.BrokenResourceError):
        while True:  # a reset, not a clean end of stream
            if not await client.receive_some():
                pytest.fail("the client saw a clean end of stream, not a reset")
    with trio.fail_after(10):
        while echo_server[1] != ["reset"]:
            await trio.sleep(0.01)
    assert proxy.active_connections == 0
    assert proxy.stats.resets == 1


async def test_an_upstream_that_is_down_resets_the_client(nursery: trio.Nursery) -> None:
    proxy = await start_proxy(nursery, free_loopback_port())
    client = await trio.open_tcp_stream("127.0.0.1", proxy.port or 0)
    with trio.fail_after(10), pytest.raises(trio.BrokenResourceError):
        while await client.receive_some():
            pass
    assert proxy.stats.upstream_failures == 1


def run_cli(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "steward_otp.faultproxy", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def test_command_line_proxy_relays_resets_on_sigusr1_and_stops_on_sigterm(
    echo_server: tuple[int, list[str]],
) -> None:
    port = free_loopback_port()
    argv = ["--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{echo_server[0]}"]
    process = run_cli(*argv, "--profile", "satellite", "--seed", "1", "--time-scale", "100")
    try:
        with trio.fail_after(20):
            while True:
                try:
                    client = await trio.open_tcp_stream("127.0.0.1", port)
                    break
                except OSError:
                    assert process.poll() is None, process.stderr
                    await trio.sleep(0.05)
            start = trio.current_time()
            await client.send_all(b"over the satellite")
            assert await receive_exactly(client, 18) == b"over the satellite"
            assert trio.current_time() - start >= 0.6  # 600 ms RTT
            os.kill(process.pid, signal.SIGUSR1)
            with pytest.raises(trio.BrokenResourceError):
                while await client.receive_some():
                    pass
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert process.stderr is not None
        assert b"satellite" in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_command_line_rejects_a_bad_address() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "steward_otp.faultproxy", "--listen", "nowhere", "--upstream", "x"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert b"HOST:PORT" in result.stderr
