"""docs/security.md's "A secure deployment, step by step", run as written: real processes, a
real nats-server from `steward-otp broker-config`, the CLI for every step.

At the end ship1 runs exactly what the ACL allows central to run (``echo hello``), refuses
anything else, and nothing was set up by hand but what the steps say.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import NatsServer

pytestmark = pytest.mark.integration

STEWARD = [sys.executable, "-m", "steward_otp"]


def steward(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """One steward-otp command, as an operator types it."""
    done = subprocess.run(
        [*STEWARD, *args], capture_output=True, text=True, timeout=120, check=False
    )
    if check:
        assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"
    return done


def until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


class Daemon:
    """`steward-otp run` in the background, stopped at the end."""

    def __init__(self, home: Path, *args: str) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.home = home
        self.log = home / "run.log"
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [*STEWARD, "run", "--home", str(home), *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        until(lambda: (home / "tmp" / "control.sock").exists() or self.dead(), f"{home} up")
        assert not self.dead(), self.log.read_text()

    def dead(self) -> bool:
        return self.process.poll() is not None

    def stop(self) -> None:
        if not self.dead():
            self.process.terminate()
            self.process.wait(timeout=30)


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in reversed(started):
        daemon.stop()


def test_the_secure_deployment_steps_work_as_written(tmp_path: Path, daemons: list[Daemon]) -> None:
    central_home, ship1_home, broker = tmp_path / "central", tmp_path / "ship1", tmp_path / "b"

    # 1. Broker: one nkey user per node, each allowed only what the protocol needs.
    steward("broker-config", "--nodes", "central,ship1", "--out", str(broker))
    server = NatsServer(tmp_path / "nats", config_file=broker / "nats-server.conf")
    server.start()
    try:
        common = ["--broker-address", server.url, "--start-pub-hello", "1"]
        # 2. Central: the key authority, checking signatures.
        daemons.append(
            Daemon(
                central_home,
                "--node-name",
                "central",
                "--is-central-auth",
                "--enable-signature-check",
                "--nkey-seed-file",
                str(broker / "central.nkey"),
                *common,
            )
        )
        central_key = (central_home / "etc" / "signing" / "public.key").read_text().strip()
        # 3. Each node: checking signatures, trusting central's key, taking keys and ACLs
        #    from central (6. the ACL switches).
        daemons.append(
            Daemon(
                ship1_home,
                "--node-name",
                "ship1",
                "--enable-signature-check",
                "--central-public-key",
                central_key,
                "--enable-key-updates",
                "--keys-update-interval",
                "1",
                "--enable-acl-check",
                "--enable-acl-updates",
                "--acl-update-interval",
                "1",
                "--nkey-seed-file",
                str(broker / "ship1.nkey"),
                *common,
            )
        )

        # 4. Let the node in on central: its hello made its key pending; check and allow it.
        def pending() -> bool:
            return "pending  ship1" in steward("keys", "ls", "--home", str(central_home)).stdout

        until(pending, "ship1's key pending on central")
        ship1_key = (ship1_home / "etc" / "signing" / "public.key").read_text().strip()
        assert ship1_key in steward("keys", "ls", "--home", str(central_home)).stdout
        steward("keys", "allow", "ship1", "--home", str(central_home))

        # 6. ACLs: central may run `echo hello` on ship1, nothing else.
        steward("acl", "group-nodes-add", "grp_nodes_ships", "ship1", "--home", str(central_home))
        steward(
            "acl",
            "group-commands-add",
            "grp_commands_look",
            "echo hello",
            "--home",
            str(central_home),
        )
        steward(
            "acl",
            "add",
            "grp_nodes_ships",
            "central",
            "grp_commands_look",
            "--home",
            str(central_home),
        )

        def ship1_has_acl() -> bool:
            status = steward("status", "--json", "--home", str(ship1_home)).stdout
            return "central" in json.loads(status)["security"].get("acl_sources", [])

        until(ship1_has_acl, "ship1's ACL from central")

        allowed = steward(
            "cmd", "ship1", "--home", str(central_home), "--timeout", "60", "--", "echo", "hello"
        )
        assert "hello" in allowed.stdout and "1/1 replied" in allowed.stdout
        refused = steward(
            "cmd",
            "ship1",
            "--home",
            str(central_home),
            "--timeout",
            "60",
            "--",
            "echo",
            "bye",
            check=False,
        )
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "does not allow 'central' to run REQCliCommand 'echo bye'" in (
            refused.stdout + refused.stderr
        )
    finally:
        for daemon in reversed(daemons):
            daemon.stop()
        server.stop()
