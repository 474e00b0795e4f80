"""The README's five-minute tour, run as written: two `steward-otp run` processes (central
with its embedded broker, ship1 on central's broker), `cmd`, `send --wait` with the
README's own uptime.json, the inspection commands, then "stop ship1 and send again": the
message waits in central's outbox and is delivered when ship1 is back.

The only changes to the README's commands: the embedded broker listens on a free port
instead of 4222, and `python -m steward_otp` stands for `.venv/bin/steward-otp`."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from tests.conftest import free_loopback_port
from tests.nodes import file_text, wait_for

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_uptime_json() -> str:
    """The uptime.json the README's tour writes with its here-document."""
    text = README.read_text(encoding="utf-8")
    match = re.search(r"cat > uptime\.json <<'EOF'\n(.*?)\nEOF\n", text, re.DOTALL)
    assert match, "the README's tour no longer writes uptime.json"
    return match.group(1)


class Run:
    """One `steward-otp run`, as `make run NODE=... ARGS=...` starts it."""

    def __init__(self, base: Path, node: str, *args: str) -> None:
        self.home = base / "node-home" / node
        self.home.mkdir(parents=True, exist_ok=True)
        self.argv = [sys.executable, "-m", "steward_otp", "run", "--node-name", node,
                     "--home", str(self.home), *args]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        with (self.home / "run.log").open("ab") as log:
            self.process = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        socket = self.home / "tmp" / "control.sock"
        with trio.fail_after(30):
            while True:
                assert self.process.poll() is None, (self.home / "run.log").read_text()
                try:
                    stream = await trio.open_unix_socket(str(socket))
                except OSError:
                    await trio.sleep(0.05)
                    continue
                await stream.aclose()
                return

    def stop(self) -> None:
        """Ctrl-C in its terminal."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


async def steward(cwd: Path, *args: str) -> tuple[int, str, str]:
    result = await trio.run_process(
        [sys.executable, "-m", "steward_otp", *args],
        cwd=cwd,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    return result.returncode, result.stdout.decode(), result.stderr.decode()


async def test_the_readme_tour_works_as_written(tmp_path: Path) -> None:
    port = free_loopback_port()
    central = Run(tmp_path, "central", "--embedded-broker-port", str(port))
    ship1 = Run(tmp_path, "ship1", "--broker-address", f"nats://127.0.0.1:{port}")
    home = "node-home/central"
    (tmp_path / "uptime.json").write_text(readme_uptime_json() + "\n", encoding="utf-8")
    uptime_log = tmp_path / home / "data" / "uptime" / "ship1" / "uptime.log"
    try:
        await central.start()
        await ship1.start()

        code, out, err = await steward(tmp_path, "cmd", "ship1", "--home", home, "--", "uptime")
        assert code == 0, (out, err)
        assert out.startswith("ship1 (ok, ") and "load average" in out
        assert out.splitlines()[-1] == "1/1 replied"

        code, out, err = await steward(tmp_path, "send", "uptime.json", "--home", home, "--wait")
        assert code == 0, (out, err)
        answer = json.loads(out.splitlines()[0])
        assert answer["status"] == "accepted" and answer["toNode"] == "ship1"
        assert answer["warnings"] == []
        assert out.splitlines()[-1] == "1/1 replied"
        assert "load average" in file_text(uptime_log)

        for inspect in (["tree"], ["status"], ["queue", "ls"], ["audit", "--since", "10m"]):
            code, out, err = await steward(tmp_path, *inspect, "--home", home)
            assert code == 0, (inspect, out, err)
        code, out, _ = await steward(tmp_path, "tree", "--home", home)
        assert "control" in out and "broker" in out

        # Stop ship1 and send again: still queued when --wait gives up (exit status 3) ...
        ship1.stop()
        code, out, err = await steward(tmp_path, "send", "uptime.json", "--home", home, "--wait=3")
        assert code == 3, (out, err)
        waiting = json.loads(out.splitlines()[0])["id"]
        assert re.search(rf"0/1 replied; ship1 still queued.*, id {waiting}$", out), out
        code, out, _ = await steward(tmp_path, "queue", "ls", "--json", "--home", home)
        assert [m["id"] for m in json.loads(out)] == [waiting]

        # ... and as the message is written, it would wait far longer than anyone takes to
        # restart ship1: every attempt is ACKTimeout + retryWait seconds after the last.
        [message] = json.loads(readme_uptime_json())
        window = (message["retries"] + 1) * (message["ACKTimeout"] + message["retryWait"])
        assert window >= 3600

        # ship1 back: the waiting message is delivered and its reply lands in uptime.log.
        await ship1.start()
        await wait_for(lambda: file_text(uptime_log).count("load average") == 2, timeout=60)
        code, out, _ = await steward(tmp_path, "audit", "--json", "--id", waiting, "--home", home)
        assert code == 0 and [r["outcome"] for r in json.loads(out)] == ["delivered"]
    finally:
        ship1.stop()
        central.stop()
