"""Soak: a steady stream of requests for a long time; do memory and descriptors stay flat?

    .venv/bin/python bench/soak.py [--minutes 30] [--rate 20] [--sample-seconds 10] [--json]

Two real node processes (``bench/bench_node.py``: the daemon plus ``REQBenchEcho``) on one
real ``nats-server`` on 127.0.0.1. Every second ``--rate`` requests go into central's socket
input, each to ship1 with ``REQBenchEcho``, whose reply (the request's data) is appended
to ``data/soak/ship1/reply.log`` on central: both directions, both outboxes, both stores and
the audit log are exercised the whole time.

Every ``--sample-seconds`` the script records, for each node, resident memory (``VmRSS``),
open file descriptors (``/proc/<pid>/fd``) and the size of its store files (``var/lib``),
plus how many replies have arrived. At the end it prints the samples, the growth of each
figure over the second half of the run (the first half includes warm-up: caches, the
audit log filling up to its retention) as a rate per hour from a least-squares line, and
checks that every request was answered exactly once.

Verdict "flat" when, over the second half, RSS grows by less than ``--rss-mb-per-hour``
(default 5 MB/h) and descriptors by at most 2 on each node. Figures only: no test asserts
them; the exit status is 0 either way unless the run itself failed (a node died, replies
missing).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from fanout import inject, spawn, start_broker, wait_socket  # this folder: the script's own
from processes import proc_status_mb, stopping

NODES = ("central", "ship1")


def open_fds(pid: int) -> int:
    """How many file descriptors process ``pid`` has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def store_mb(home: Path) -> float:
    """Size of the node's store files (database, WAL, shared memory), in MB."""
    folder = home / "var" / "lib"
    return sum(p.stat().st_size for p in folder.glob("*") if p.is_file()) / 1e6


def reply_count(path: Path) -> int:
    """Reply lines on central so far."""
    try:
        with path.open("rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    """The least-squares slope of ``(seconds, value)`` points, per hour (0 for < 2 points)."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    cov = sum((t - mean_t) * (v - mean_v) for t, v in points)
    return cov / var * 3600


def document(rate: int, first: int) -> bytes:
    """``rate`` requests numbered from ``first``, as one JSON document for the socket input."""
    messages = [
        {
            "toNode": "ship1",
            "method": "REQBenchEcho",
            "data": f"req-{first + i:09d}\n",
            "replyMethod": "REQToFileAppend",
            "directory": "soak",
            "fileName": "reply.log",
            "ACKTimeout": 10,
            "retries": 100,
            "replyACKTimeout": 10,
            "replyRetries": 100,
            "methodTimeout": 10,
        }
        for i in range(rate)
    ]
    return json.dumps(messages).encode()


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    homes = {name: workdir / name for name in NODES}
    with stopping() as processes:
        broker, url, _monitor = start_broker(workdir)
        processes.append(broker)
        pids = {}
        for name in NODES:
            argv = [sys.executable, str(Path(__file__).with_name("bench_node.py"))]
            node = spawn([*argv, str(homes[name]), name, url], workdir / f"{name}.log")
            processes.append(node)
            pids[name] = node.pid
        for name in NODES:
            wait_socket(homes[name] / "tmp" / "steward.sock")
        socket_path = homes["central"] / "tmp" / "steward.sock"
        replies = homes["central"] / "data" / "soak" / "ship1" / "reply.log"

        samples: list[dict[str, Any]] = []
        sent = 0
        start = time.monotonic()
        end = start + args.minutes * 60
        next_sample = start
        while (now := time.monotonic()) < end:
            for process in processes:
                if process.poll() is not None:
                    raise RuntimeError(f"a process exited with {process.returncode}")
            answers = inject(socket_path, document(args.rate, sent))
            refused = [a for a in answers if a.get("status") != "accepted"]
            if refused:
                raise RuntimeError(f"central refused requests: {refused[:2]}")
            sent += args.rate
            if now >= next_sample:
                sample: dict[str, Any] = {"seconds": round(now - start, 1), "sent": sent}
                sample["replies"] = reply_count(replies)
                for name, pid in pids.items():
                    sample[f"{name}_rss_mb"] = round(proc_status_mb(pid), 1)
                    sample[f"{name}_fds"] = open_fds(pid)
                    sample[f"{name}_store_mb"] = round(store_mb(homes[name]), 2)
                samples.append(sample)
                print(json.dumps(sample), file=sys.stderr, flush=True)
                next_sample += args.sample_seconds
            time.sleep(max(0.0, 1.0 - (time.monotonic() - now)))

        deadline = time.monotonic() + 120
        while reply_count(replies) < sent and time.monotonic() < deadline:
            time.sleep(0.5)
        lines = replies.read_bytes().splitlines() if replies.exists() else []

    answered = {line.decode() for line in lines}
    second_half = [s for s in samples if s["seconds"] >= args.minutes * 30]
    figures: dict[str, Any] = {
        "minutes": args.minutes,
        "rate_per_second": args.rate,
        "sent": sent,
        "replies": len(lines),
        "distinct_replies": len(answered),
        "missing": sent - len(answered & {f"req-{i:09d}" for i in range(sent)}),
    }
    flat = figures["missing"] == 0 and len(lines) == sent
    for name in NODES:
        rss = [(s["seconds"], s[f"{name}_rss_mb"]) for s in second_half]
        fds = [s[f"{name}_fds"] for s in second_half]
        store = [(s["seconds"], s[f"{name}_store_mb"]) for s in second_half]
        figures[f"{name}_rss_mb_first"] = samples[0][f"{name}_rss_mb"] if samples else None
        figures[f"{name}_rss_mb_last"] = samples[-1][f"{name}_rss_mb"] if samples else None
        figures[f"{name}_rss_mb_per_hour"] = round(slope_per_hour(rss), 2)
        figures[f"{name}_fds_range"] = [min(fds), max(fds)] if fds else None
        figures[f"{name}_store_mb_per_hour"] = round(slope_per_hour(store), 2)
        flat = flat and figures[f"{name}_rss_mb_per_hour"] < args.rss_mb_per_hour
        flat = flat and (not fds or max(fds) - min(fds) <= 2)
    figures["verdict"] = "flat" if flat else "NOT flat"
    figures["samples"] = samples
    return figures


def print_table(figures: dict[str, Any], stream: Any) -> None:
    print(
        f"soak: {figures['minutes']} min at {figures['rate_per_second']}/s: "
        f"{figures['sent']} sent, {figures['replies']} replies "
        f"({figures['missing']} missing, {figures['replies'] - figures['distinct_replies']} "
        "repeated)",
        file=stream,
    )
    for name in NODES:
        print(
            f"  {name:8} RSS {figures[f'{name}_rss_mb_first']} -> "
            f"{figures[f'{name}_rss_mb_last']} MB, second half "
            f"{figures[f'{name}_rss_mb_per_hour']:+.2f} MB/h; fds "
            f"{figures[f'{name}_fds_range']}; store "
            f"{figures[f'{name}_store_mb_per_hour']:+.2f} MB/h",
            file=stream,
        )
    print(f"  verdict: {figures['verdict']}", file=stream)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=int, default=20, help="requests per second")
    parser.add_argument("--sample-seconds", type=float, default=10.0)
    parser.add_argument("--rss-mb-per-hour", type=float, default=5.0)
    parser.add_argument("--json", action="store_true", help="figures as JSON on stdout")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="soak-") as folder:
        figures = run(args, Path(folder))
    if args.json:
        print(json.dumps(figures))
        print_table(figures, sys.stderr)
    else:
        print_table(figures, sys.stdout)
    if figures["missing"] or figures["replies"] != figures["sent"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
