"""--json on the commands whose answer is one object: keys show/ls, config check, version,
web token, broker-config."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from steward_otp import __version__
from steward_otp.cli import app

runner = CliRunner()


def as_json(*args: str) -> object:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_keys_show_and_ls(tmp_path: Path) -> None:
    shown = as_json("keys", "show", "--home", str(tmp_path))
    assert isinstance(shown, dict) and shown["created"] is True and shown["public_key"]
    assert as_json("keys", "show", "--home", str(tmp_path))["created"] is False  # type: ignore[index]
    key = shown["public_key"]
    runner.invoke(app, ["keys", "add", "ship1", key, "--home", str(tmp_path)])
    assert as_json("keys", "ls", "--home", str(tmp_path)) == {
        "allowed": {"ship1": key},
        "pending": {},
    }


def test_config_check_version_web_token_and_broker_config(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "config.toml").write_text('node_name = "ship1"\n')
    checked = as_json("config", "check", "--home", str(tmp_path))
    assert checked == {"ok": True, "file": str(tmp_path / "etc" / "config.toml"), "node": "ship1"}
    assert as_json("version") == {"version": __version__}
    made = as_json("web", "token", "--home", str(tmp_path))
    assert isinstance(made, dict) and len(made["token"]) >= 32
    assert Path(made["hash_file"]).exists()
    layout = as_json("broker-config", "--nodes", "central,ship1", "--out", str(tmp_path / "b"))
    assert isinstance(layout, dict) and set(layout["seed_files"]) == {"central", "ship1"}
    assert Path(layout["config_file"]).exists()
