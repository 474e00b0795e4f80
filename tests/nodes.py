"""Helpers for tests that run real nodes against the nats_server fixture."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from steward_otp.config import Config, load_config
from steward_otp.inputs.unix_server import send_document
from steward_otp.message import Message

__all__ = ["NodeProcess", "file_text", "node_config", "send_document", "wait_for"]


def node_config(base: Path, name: str, url: str, **overrides: Any) -> Config:
    """A node named ``name`` with home ``base/name``, using the broker at ``url``."""
    settings: dict[str, Any] = {
        "node_name": name,
        "broker_address": url,
        "start_pub_hello": 0,
        "nats_connect_retry_interval": 0.1,
        "keep_publishers_alive_for": 10,
        # Without hellos the central error log knows no other node: let it take every
        # node's lines (tests of that door set error_log_known_nodes themselves).
        "error_log_known_nodes": "*",
    }
    settings.update(overrides)
    return load_config(base / name, settings)


async def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    """Poll ``predicate`` until it is true; fail after ``timeout`` seconds."""
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.02)


def echo_command(text: str, directory: str, to_node: str = "ship1") -> Message:
    """A REQCliCommand running ``echo <text>`` on ``to_node``, its output written to
    ``data/<directory>/<to_node>/out.txt`` on the sender (ACKed both ways, 5 retries)."""
    return Message(
        to_node=to_node,
        method="REQCliCommand",
        method_args=["bash", "-c", f"echo {text}"],
        directory=directory,
        file_name="out.txt",
        ack_timeout=5,
        retries=5,
        reply_ack_timeout=5,
        reply_retries=5,
        method_timeout=10,
    )


def file_text(path: Path) -> str:
    """The text of ``path``, or "" while it does not exist."""
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


class NodeProcess:
    """``steward-otp run`` as a real child process (for crash tests: kill -9 and restart)."""

    def __init__(self, home: Path, name: str, url: str, *extra: str) -> None:
        self.home = home
        self.argv = [
            sys.executable, "-m", "steward_otp", "run",
            "--home", str(home), "--node-name", name, "--broker-address", url,
            "--start-pub-hello", "0", "--nats-connect-retry-interval", "0.1",
            "--error-log-known-nodes", "*", *extra,
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None
        self.log = home / "node-process.log"

    @property
    def socket_path(self) -> Path:
        return self.home / "tmp" / "steward.sock"

    async def start(self) -> None:
        """Start the node and wait until its socket input answers."""
        self.home.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        with trio.fail_after(30):
            while True:
                assert self.process.poll() is None, self.log.read_text()
                try:
                    stream = await trio.open_unix_socket(str(self.socket_path))
                except OSError:
                    await trio.sleep(0.05)
                    continue
                await stream.aclose()
                return

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` and wait for the process to end."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)
