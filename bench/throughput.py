"""Throughput, footprint and start-up of steward-otp against the transport's own limit.

Prints, from one run on one broker (started here on a free 127.0.0.1 port):

(a) raw nats-py request/reply round trips per second, 50 concurrent requesters, plain asyncio
    in a separate process (``bench/raw_nats_baseline.py``): the transport's limit;
(b) steward-otp end-to-end ACKed messages per second with durability on: messages injected
    into node A's socket, each delivered with an ACK to node B, handled there, and its reply
    delivered with an ACK back to A and appended to a file on A;
(c) the ratio b / a;
plus the resident memory of an idle node and the time from ``steward-otp run`` to ready
(with an external broker, so the broker's own start is not counted).

    .venv/bin/python bench/throughput.py [--messages 5000]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from steward_otp.broker import BrokerSpec, find_nats_server_binary, ready_in_log

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_broker(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    spec = BrokerSpec(port=free_port(), log_file=workdir / "nats.log")
    process = subprocess.Popen(spec.argv(find_nats_server_binary()), stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not ready_in_log(spec.log_file, 0):
        if time.monotonic() > deadline:
            raise RuntimeError("broker did not start")
        time.sleep(0.01)
    return process, spec.url


def start_node(home: Path, name: str, url: str) -> subprocess.Popen[bytes]:
    home.mkdir(parents=True, exist_ok=True)
    log = (home / "node.log").open("wb")
    return subprocess.Popen(
        [sys.executable, str(HERE / "bench_node.py"), str(home), name, url],
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def wait_ready(home: Path, started: float, timeout: float = 30.0) -> float:
    """Seconds from starting the process until its socket input accepts a connection.

    This is what an operator sees: interpreter start-up and imports included.
    """
    deadline = started + timeout
    path = str(home / "tmp" / "steward.sock")
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(path)
            except OSError:
                time.sleep(0.005)
                continue
        return time.monotonic() - started
    log = (home / "node.log").read_text(errors="replace")
    raise RuntimeError(f"node in {home} not ready: {log[-2000:]}")


def inject(socket_path: Path, document: bytes) -> list[dict[str, object]]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(socket_path))
        s.sendall(document)
        s.shutdown(socket.SHUT_WR)
        data = b"".join(iter(lambda: s.recv(65536), b""))
    return [json.loads(line) for line in data.decode().splitlines()]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def count_lines(path: Path) -> int:
    try:
        with path.open("rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    except FileNotFoundError:
        return 0


def measure_steward(url: str, workdir: Path, messages: int, batch: int) -> dict[str, float]:
    a_home, b_home = workdir / "a", workdir / "b"
    started = time.monotonic()
    a = start_node(a_home, "a", url)
    b: subprocess.Popen[bytes] | None = None
    try:
        ready_a = wait_ready(a_home, started)  # alone on the machine, as a node starts
        b = start_node(b_home, "b", url)
        wait_ready(b_home, time.monotonic())
        time.sleep(1.0)  # let both settle before reading idle memory
        idle_rss = rss_mb(a.pid)
        out = a_home / "data" / "bench" / "b" / "echo.log"
        template = {
            "toNode": "b",
            "method": "REQBenchEcho",
            "directory": "bench",
            "fileName": "echo.log",
            "ACKTimeout": 10,
            "retries": 3,
            "replyACKTimeout": 10,
            "replyRetries": 3,
            "replyMethod": "REQToFileAppend",
        }
        started = time.perf_counter()
        for start in range(0, messages, batch):
            document = json.dumps(
                [dict(template, data=f"{i}\n") for i in range(start, min(start + batch, messages))]
            ).encode()
            answers = inject(a_home / "tmp" / "steward.sock", document)
            assert all(x["status"] == "accepted" for x in answers), answers[:3]
        deadline = time.monotonic() + 600
        while count_lines(out) < messages:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {count_lines(out)} of {messages} replies arrived")
            time.sleep(0.01)
        elapsed = time.perf_counter() - started
        return {
            "messages": messages,
            "seconds": elapsed,
            "per_second": messages / elapsed,
            "idle_rss_mb": idle_rss,
            "ready_seconds": ready_a,
        }
    finally:
        for process in (a, b):
            if process is not None:
                process.terminate()
        for process in (a, b):
            if process is not None:
                process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--baseline-seconds", type=float, default=3.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="steward-bench-") as tmp:
        workdir = Path(tmp)
        broker, url = start_broker(workdir)
        try:
            raw = json.loads(
                subprocess.run(
                    [
                        sys.executable,
                        str(HERE / "raw_nats_baseline.py"),
                        "--url",
                        url,
                        "--seconds",
                        str(args.baseline_seconds),
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
            )
            steward = measure_steward(url, workdir, args.messages, args.batch)
        finally:
            broker.terminate()
            broker.wait()
    ratio = steward["per_second"] / raw["per_second"]
    rows = [
        ("(a) raw nats-py request/reply, 50 concurrent", f"{raw['per_second']:.0f} round trips/s"),
        (
            "(b) steward-otp end-to-end ACKed, durable",
            f"{steward['per_second']:.0f} messages/s ({steward['messages']:.0f} in "
            f"{steward['seconds']:.2f} s)",
        ),
        ("(c) ratio b/a (target >= 0.5)", f"{ratio:.3f}"),
        ("idle node RSS (target <= 50 MB)", f"{steward['idle_rss_mb']:.1f} MB"),
        (
            "process start to socket ready, external broker (target <= 1 s)",
            f"{steward['ready_seconds']:.3f} s",
        ),
        ("cores", str(os.cpu_count())),
    ]
    for label, value in rows:
        print(f"{label:<50} {value}")


if __name__ == "__main__":
    main()
