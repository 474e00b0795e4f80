"""Command process groups that outlive their node are killed before the command runs again.

A command runs in a process group of its own, so a node killed with SIGKILL (or by the OOM
killer) leaves it running; the restarted node then runs the same message again. To keep two
copies from running, every command is started like this:

1. the program is spawned behind a gate: ``/bin/sh`` in a new session (process group =
   its pid) that waits for one line on its stdin before it ``exec``\\ s the program;
2. the record ``<home>/var/run/commands/<hash of the message id>.<group>.pgid`` (JSON:
   message id, process group, boot id, start time of the group leader, and a token of this
   node process) is written and fsynced;
3. only then is the gate opened. When the node dies before that, the gate reads end of
   file and the program never starts.

When the command ends, its record is removed. When a message runs while a record for its
id written by *another* node process exists, that previous incarnation of the node died
during the command: its process group is killed (SIGKILL, whole group) and the command runs
again, from the start, with a reply of its own. Records of this process (overlapping runs
of a scheduled message) are left alone. **Choice: kill, not adopt** — the orphan's output
went to the dead node and cannot be recovered, so only a fresh run can reply with it. So
each command runs *to completion* at most once per delivery of its message; the one
exception is a crash in the few milliseconds between the end of the command and the
message's completion being stored. :func:`kill_all_leftovers` does the same for every
record at once, for a node's start.

A group is killed only when it is provably the recorded one: same boot, and the group
leader, when still alive, has the recorded start time (otherwise its pid was reused and
the record is just removed). Without ``/proc`` (not Linux) the group is killed by its id.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any, Final

from steward_otp.atomic_file import write_atomically

__all__ = [
    "COMMANDS_FOLDER",
    "GATE_OPEN",
    "gated_argv",
    "kill_all_leftovers",
    "kill_leftover",
    "record_path",
    "remove_record",
    "write_record",
]

COMMANDS_FOLDER: Final = Path("var") / "run" / "commands"
"""Where command records live, relative to the node's home."""

GATE_OPEN: Final = b"go\n"
"""What the node writes to the gate's stdin once the record is durable."""

_GATE_SCRIPT: Final = 'IFS= read -r go && [ "$go" = go ] && exec "$@" </dev/null; exit 125'
_PROC: Final = Path("/proc")
_KILL_WAIT: Final = 2.0
_INCARNATION: Final = uuid.uuid4().hex
"""Tells this node process's records from those of a previous one."""


def gated_argv(argv: list[str]) -> list[str]:
    """``argv`` behind the gate: runs only after :data:`GATE_OPEN` arrives on stdin."""
    return ["/bin/sh", "-c", _GATE_SCRIPT, "steward-otp-command", *argv]


def _digest(message_id: str) -> str:
    return hashlib.sha256(message_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def record_path(home: Path, message_id: str, pgid: int) -> Path:
    """The record of process group ``pgid`` run for ``message_id`` (any text: the name
    holds a hash of it)."""
    return home / COMMANDS_FOLDER / f"{_digest(message_id)}.{pgid}.pgid"


def _boot_id() -> str:
    try:
        return (_PROC / "sys" / "kernel" / "random" / "boot_id").read_text().strip()
    except OSError:
        return ""


def _start_time(pid: int) -> str:
    """The start time of ``pid`` (clock ticks after boot), "" when unknown or gone."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return ""
    fields = stat.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else ""


def write_record(home: Path, message_id: str, pgid: int) -> Path:
    """Write the record of ``pgid`` durably (file and folder fsynced); returns its path.
    Blocking."""
    path = record_path(home, message_id, pgid)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    record = {
        "id": message_id,
        "pgid": pgid,
        "boot": _boot_id(),
        "start": _start_time(pgid),
        "incarnation": _INCARNATION,
        "written": time.time(),
    }
    write_atomically(path, json.dumps(record), sync_folder=True)
    return path


def remove_record(path: Path) -> None:
    """Forget a record (the command ended). Blocking; a missing record is fine."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _read(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _is_ours(record: dict[str, Any]) -> bool:
    pgid = record.get("pgid")
    if not isinstance(pgid, int) or pgid <= 1:
        return False
    if not _PROC.is_dir():
        return True  # nothing to check against: trust the record
    if record.get("boot") != _boot_id():
        return False  # the machine restarted: that group is gone
    leader_start = _start_time(pgid)
    return not leader_start or leader_start == record.get("start")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_leftover(home: Path, message_id: str) -> list[int]:
    """Kill the process groups a previous incarnation left for ``message_id``, if any.

    Returns the ids of the groups killed and removes their records (also of groups found
    gone or not provably ours). Records of this process are left alone. Waits up to 2 s
    per group for it to go (killed processes may stay zombies if nobody reaps them; they
    run no more). Blocking.
    """
    try:
        paths = sorted((home / COMMANDS_FOLDER).glob(f"{_digest(message_id)}.*.pgid"))
    except OSError:
        return []
    return [pgid for path in paths if (pgid := _kill_recorded(path, message_id)) is not None]


def _kill_recorded(path: Path, message_id: str | None) -> int | None:
    record = _read(path)
    if record is None or record.get("incarnation") == _INCARNATION:
        return None
    killed: int | None = None
    if (message_id is None or record.get("id") == message_id) and _is_ours(record):
        pgid = int(record["pgid"])
        if _group_alive(pgid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
                killed = pgid
            deadline = time.monotonic() + _KILL_WAIT
            while _group_alive(pgid) and _has_live_member(pgid) and time.monotonic() < deadline:
                time.sleep(0.02)
    remove_record(path)
    return killed


def kill_all_leftovers(home: Path) -> list[int]:
    """Kill every process group recorded under ``home`` by another node process (see
    :func:`kill_leftover`) and remove the records; returns the groups killed. Blocking.

    For a node's start, before any command runs: groups left by the previous incarnation
    are killed even when their message will not run again (cancelled, or its method's
    subscriber switched off). Their messages, when they run again, start afresh.
    """
    try:
        paths = sorted((home / COMMANDS_FOLDER).glob("*.pgid"))
    except OSError:
        return []
    return [pgid for path in paths if (pgid := _kill_recorded(path, None)) is not None]


def _has_live_member(pgid: int) -> bool:
    """Whether a process of group ``pgid`` is still running (not a zombie)."""
    if not _PROC.is_dir():
        return True
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False
