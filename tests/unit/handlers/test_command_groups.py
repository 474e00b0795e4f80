"""Command process groups: recorded before the program starts, killed before a re-run."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from steward_otp.handlers import command_groups
from steward_otp.handlers.command_groups import (
    COMMANDS_FOLDER,
    GATE_OPEN,
    gated_argv,
    kill_all_leftovers,
    kill_leftover,
    record_path,
    write_record,
)
from steward_otp.handlers.commands import cli_command
from tests.unit.handlers.fakes import FakeServices, context, request


@pytest.fixture
def group(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A process group left running (a sleeping shell with a sleeping child)."""
    process = subprocess.Popen(
        ["sh", "-c", "sleep 60 & sleep 60"], start_new_session=True, stdin=subprocess.DEVNULL
    )
    yield process
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, 9)
    process.wait()


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _write_as_previous(home: Path, message_id: str, pgid: int) -> Path:
    """The record as a previous node process (another incarnation) would have written it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(command_groups, "_INCARNATION", "previous")
        return write_record(home, message_id, pgid)


def test_a_recorded_leftover_group_is_killed_whole_and_forgotten(
    tmp_path: Path, group: subprocess.Popen[bytes]
) -> None:
    path = _write_as_previous(tmp_path, "central:1", group.pid)
    assert json.loads(path.read_text())["pgid"] == group.pid
    assert kill_leftover(tmp_path, "central:1") == [group.pid]
    group.wait(timeout=5)
    deadline = time.monotonic() + 5
    while _alive(group.pid) and time.monotonic() < deadline:
        time.sleep(0.05)  # the orphaned child is reaped by whoever adopted it
    assert not _alive(group.pid)
    assert not path.exists()
    assert kill_leftover(tmp_path, "central:1") == []


def test_groups_of_this_node_process_are_left_alone(
    tmp_path: Path, group: subprocess.Popen[bytes]
) -> None:
    """Overlapping runs of a scheduled message share its id: none kills another."""
    path = write_record(tmp_path, "central:1", group.pid)
    assert kill_leftover(tmp_path, "central:1") == []
    assert kill_all_leftovers(tmp_path) == []
    assert group.poll() is None and path.exists()


def test_a_group_whose_leader_pid_was_reused_is_left_alone(
    tmp_path: Path, group: subprocess.Popen[bytes]
) -> None:
    path = _write_as_previous(tmp_path, "m", group.pid)
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "start": "1"}))  # another process's start time
    assert kill_leftover(tmp_path, "m") == []
    assert group.poll() is None and not path.exists()


def test_a_record_from_before_a_reboot_is_left_alone(
    tmp_path: Path, group: subprocess.Popen[bytes]
) -> None:
    path = _write_as_previous(tmp_path, "m", group.pid)
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "boot": "another-boot"}))
    assert kill_leftover(tmp_path, "m") == []
    assert group.poll() is None


def test_record_names_are_safe_for_any_message_id(tmp_path: Path) -> None:
    path = record_path(tmp_path, "../../etc/passwd\x00 and more", 42)
    assert path.parent == tmp_path / COMMANDS_FOLDER
    assert path.name.endswith(".42.pgid") and "/" not in path.name


def test_the_program_never_starts_when_the_gate_is_not_opened(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    process = subprocess.Popen(
        gated_argv(["sh", "-c", f"touch {marker}"]), stdin=subprocess.PIPE, start_new_session=True
    )
    assert process.stdin is not None
    process.stdin.close()  # the node died before the record was durable
    assert process.wait(timeout=5) == 125
    assert not marker.exists()

    opened = subprocess.Popen(gated_argv(["sh", "-c", f"touch {marker}"]), stdin=subprocess.PIPE)
    out, err = opened.communicate(GATE_OPEN, timeout=5)
    assert out is None and err is None  # no pipes for them
    assert opened.returncode == 0 and marker.exists()


async def test_a_command_is_recorded_while_it_runs_and_forgotten_after(tmp_path: Path) -> None:
    services = FakeServices(tmp_path)
    msg = request("REQCliCommand", "sh", "-c", "sleep 0.5; echo done")
    assert msg.id
    folder = tmp_path / COMMANDS_FOLDER
    seen: list[int] = []

    async def watch() -> None:
        while not (folder.exists() and list(folder.glob("*.pgid"))):
            await trio.sleep(0.01)
        [path] = folder.glob("*.pgid")
        seen.append(json.loads(path.read_text())["pgid"])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        assert await cli_command(context(services, msg), msg) == b"done\n"
    assert seen and list(folder.glob("*.pgid")) == []


async def test_a_re_run_kills_the_leftover_group_first_and_says_so(
    tmp_path: Path, group: subprocess.Popen[bytes]
) -> None:
    services = FakeServices(tmp_path)
    msg = request("REQCliCommand", "echo", "again")
    _write_as_previous(tmp_path, msg.id, group.pid)
    assert await cli_command(context(services, msg), msg) == b"again\n"
    group.wait(timeout=5)
    [(level, text)] = services.reports
    assert level == "warning"
    assert f"killed process group {group.pid}" in text and msg.id in text


def test_a_start_sweep_kills_every_group_of_a_previous_process(
    tmp_path: Path, group: subprocess.Popen[bytes]
) -> None:
    _write_as_previous(tmp_path, "a", group.pid)
    (tmp_path / COMMANDS_FOLDER / "garbage.1.pgid").write_text("{not json")
    assert kill_all_leftovers(tmp_path) == [group.pid]
    group.wait(timeout=5)
    assert list((tmp_path / COMMANDS_FOLDER).iterdir()) == []
    assert kill_all_leftovers(tmp_path / "nowhere") == []
