"""``steward-otp store check|repair``: the operator's tools for a damaged store (issue 17)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import trio
from typer.testing import CliRunner

from steward_otp.cli import app
from steward_otp.config import load_config, save_config
from steward_otp.store import OutboxEntry, Store, check_store_file, store_path
from steward_otp.store.schema import damage_mark, mark_damaged, open_database

runner = CliRunner()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "ship1"
    save_config(load_config(home, {"node_name": "ship1"}))
    return home


def _db(home: Path) -> Path:
    return store_path(home / "var" / "lib")


def _fill(path: Path, count: int, size: int = 3000) -> None:
    async def fill() -> None:
        store = Store(path)
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            await store.enqueue(
                [
                    OutboxEntry(f"m{i}", "ship2", "REQPing", bytes([i % 256]) * size, 1e6)
                    for i in range(count)
                ]
            )
            nursery.cancel_scope.cancel()

    trio.run(fill)


def _store(home: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["store", *args, "--home", str(home)])
    return result.exit_code, result.output


def test_check_says_ok_and_what_the_store_holds(home: Path) -> None:
    _fill(_db(home), 3)
    status, output = _store(home, "check")
    assert status == 0, output
    assert f"{_db(home)}: ok (outbox 3, inbox 0, audit 0, outbox.queued 3)" in output
    status, output = _store(home, "check", "--json")
    assert json.loads(output)["counts"]["outbox"] == 3


def test_check_finds_damage_and_points_to_repair(home: Path) -> None:
    _fill(_db(home), 3)
    with _db(home).open("r+b") as file:
        file.seek(100)
        file.write(b"\xff" * 400)
    status, output = _store(home, "check")
    assert status == 1, output
    assert "DAMAGED" in output
    assert f"steward-otp store repair --home {home}" in output


def test_a_healthy_check_lifts_the_damage_mark_so_the_node_starts_again(home: Path) -> None:
    _fill(_db(home), 1)
    mark_damaged(_db(home), "disk I/O error")
    status, output = _store(home, "check")
    assert status == 0, output
    assert "the damage noted earlier is gone" in output
    assert not damage_mark(_db(home)).exists()
    check_store_file(_db(home))


def test_check_and_repair_refuse_while_a_node_holds_the_store(home: Path) -> None:
    _fill(_db(home), 1)
    owner = open_database(_db(home))
    try:
        for command in ("check", "repair"):
            status, output = _store(home, command)
            assert status == 2, output
            assert "in use by a running node: stop it first" in output
    finally:
        owner.close()


def test_repair_copies_every_readable_row_and_keeps_the_old_file_aside(home: Path) -> None:
    path = _db(home)
    _fill(path, 100)
    size = path.stat().st_size
    with path.open("r+b") as file:  # one page in the middle of the messages
        file.seek((size // 4096 * 6 // 10) * 4096)
        file.write(b"\xff" * 4096)
    damaged = path.read_bytes()

    status, output = _store(home, "repair", "--json")
    report = json.loads(output)
    aside = Path(report["kept_aside"])
    assert aside.read_bytes() == damaged  # kept as it was
    outbox = report["tables"]["outbox"]
    assert status == 1 and outbox["unreadable"] >= 1  # the damaged page's rows
    assert 90 <= outbox["copied"] <= 99
    with sqlite3.connect(path) as db:
        (count,) = db.execute("SELECT count(*) FROM outbox").fetchone()
        (payload,) = db.execute("SELECT payload FROM outbox WHERE msg_id = 'm7'").fetchone()
    assert count == outbox["copied"]
    assert payload == bytes([7]) * 3000
    assert _store(home, "check")[0] == 0
    check_store_file(path)


def test_repair_of_an_empty_store_keeps_it_aside_and_lets_the_node_start(home: Path) -> None:
    path = _db(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    status, output = _store(home, "repair")
    assert status == 1, output
    assert "nothing could be copied: it is empty (0 bytes)" in output
    assert "kept aside as" in output
    check_store_file(path)  # the node starts again, on a new empty store
    assert [p.name for p in path.parent.glob("steward.db.damaged-*")]


def test_store_commands_need_a_node_home(tmp_path: Path) -> None:
    status, output = _store(tmp_path, "check")
    assert status == 2
    assert "is not a node's home folder" in output


def test_check_finds_the_store_where_the_environment_puts_it(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "db"
    _fill(store_path(elsewhere), 2)
    monkeypatch.setenv("STEWARD_OTP_DATABASE_FOLDER", str(elsewhere))
    status, output = _store(home, "check")
    assert status == 0, output
    assert f"{store_path(elsewhere)}: ok (outbox 2," in output


def test_a_bad_database_folder_variable_is_named(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STEWARD_OTP_DATABASE_FOLDER", "")
    status, output = _store(home, "check")
    assert status == 2, output
    assert "STEWARD_OTP_DATABASE_FOLDER" in output
