"""The command line refuses a bad value before it acts: a usage error naming the option or
argument, the value and what is allowed, with nothing sent to a node and no file written.

Values that are not text: the shell hands Python undecodable bytes (``$'x\\xff'``) as lone
surrogates (``"x\\udcff"``), which is what these tests give.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from steward_otp.cli import app, inspection, send, stream
from steward_otp.security.keyfiles import encode_key_text

runner = CliRunner()

NOT_TEXT = "x\udcff"
"""What ``$'x\\xff'`` becomes in Python's argv."""


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What ``send`` and ``cmd`` would hand to a node (nothing is sent)."""
    calls: list[dict[str, Any]] = []

    def run_delivery(home: Path, document: bytes, **options: Any) -> None:
        calls.append({"document": json.loads(document), **options})

    monkeypatch.setattr(send, "run_delivery", run_delivery)
    return calls


# -- cmd and send --wait: --timeout, --directory, --file-name -----------------------------------


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        (["--timeout", "9999999"], "--timeout: value 9999999; allowed: seconds from 0 to 604800"),
        (["--timeout", "inf"], "--timeout: value inf; allowed: seconds from 0 to 604800"),
        (
            ["--directory", "../x"],
            '--directory: field "directory": value \'../x\' contains "..": a relative '
            "directory must stay inside the data folder",
        ),
        (
            ["--directory", "./a/../../x"],
            '--directory: field "directory": value \'./a/../../x\' contains "..": a relative '
            "directory must stay inside the data folder",
        ),
        (
            ["--file-name", "a/b"],
            "--file-name: field \"fileName\": value 'a/b' is not a plain file name "
            '(no "/", not "." or "..")',
        ),
        (
            ["--file-name", ".."],
            "--file-name: field \"fileName\": value '..' is not a plain file name "
            '(no "/", not "." or "..")',
        ),
    ],
)
def test_cmd_refuses_what_the_node_would_refuse_before_sending(
    tmp_path: Path, sent: list[dict[str, Any]], options: list[str], complaint: str
) -> None:
    result = runner.invoke(
        app, ["cmd", "central", *options, "--home", str(tmp_path), "--", "touch", "x"]
    )
    assert result.exit_code == 2
    assert result.stderr == f"steward-otp: error: {complaint}\n"
    assert sent == []


def test_cmd_sends_what_is_allowed(tmp_path: Path, sent: list[dict[str, Any]]) -> None:
    result = runner.invoke(
        app,
        ["cmd", "central", "--timeout", "604800", "--directory", "/srv/out", "--file-name",
         "run.log", "--home", str(tmp_path), "--", "uptime"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    [delivery] = sent
    assert delivery["wait"] == 604800
    assert (delivery["document"][0]["directory"], delivery["document"][0]["fileName"]) == (
        "/srv/out",
        "run.log",
    )


@pytest.mark.parametrize("timeout", ["9999999", "inf"])
def test_send_wait_refuses_a_timeout_the_node_would_refuse(
    tmp_path: Path, sent: list[dict[str, Any]], timeout: str
) -> None:
    file = tmp_path / "m.json"
    file.write_text('[{"toNode": "central", "method": "REQPing"}]')
    result = runner.invoke(
        app, ["send", str(file), "--wait", "--timeout", timeout, "--home", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert result.stderr == (
        f"steward-otp: error: --timeout: value {timeout}; allowed: seconds from 0 to 604800\n"
    )
    assert sent == []


# -- queue ls --state, queue stream cancel --seq --to-node -------------------------------------


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The control requests the inspection commands send; each answered as done."""
    requests: list[dict[str, Any]] = []

    def ask(home: Path, request: dict[str, Any]) -> dict[str, Any]:
        requests.append(request)
        if request["op"] == "queue.stream.cancel":
            return {"ok": True, "done": False, "seqs": []}
        return {"ok": True, "messages": [], "draining": {}}

    monkeypatch.setattr(inspection, "ask", ask)
    monkeypatch.setattr(stream, "ask", ask)
    return requests


def test_queue_ls_refuses_an_unknown_state_naming_the_states(
    tmp_path: Path, asked: list[dict[str, Any]]
) -> None:
    result = runner.invoke(
        app, ["queue", "ls", "--state", "failed", "--state", "bogus", "--home", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert result.stderr == (
        "steward-otp: error: --state: value 'bogus' is not an outbox state; "
        "allowed: queued, in_flight, failed, cancelled\n"
    )
    assert asked == []
    result = runner.invoke(app, ["queue", "ls", "--state", "in_flight", "--home", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert asked == [{"op": "queue.ls", "states": ["in_flight"]}]


def test_stream_cancel_by_seq_keeps_to_node(tmp_path: Path, asked: list[dict[str, Any]]) -> None:
    result = runner.invoke(
        app,
        ["queue", "stream", "cancel", "--seq", "7", "--to-node", "ship1", "--home", str(tmp_path)],
    )
    assert asked == [{"op": "queue.stream.cancel", "seq": 7, "toNode": "ship1"}]
    assert result.exit_code == 1
    assert result.stdout == "not removed: no such message waits in the stream for ship1\n"


# -- keys add, acl add: names that are not text -----------------------------------------------


def test_keys_add_refuses_a_node_name_that_is_not_text(tmp_path: Path) -> None:
    key = encode_key_text(bytes(range(32)))
    result = runner.invoke(app, ["keys", "add", NOT_TEXT, key, "--home", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stderr == (
        "keys: error: 'x\\udcff' is not a valid node name: it contains U+DCFF at position 1, "
        "a lone surrogate: not valid Unicode text\n"
    )
    keys = tmp_path / "etc" / "signing" / "keys.json"
    assert not keys.exists() or "udcff" not in keys.read_text()
    result = runner.invoke(app, ["keys", "add", "ship1", key, "--home", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert json.loads(keys.read_text())["allowed"] == {"ship1": key}


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        (["add", NOT_TEXT, "s", "c"], "host: 'x\\udcff'"),
        (["add", "h", NOT_TEXT, "c"], "source: 'x\\udcff'"),
        (["add", "h", "s", NOT_TEXT], "command: 'x\\udcff'"),
        (["add", "grp_nodes_" + NOT_TEXT, "s", "c"], "host: 'grp_nodes_x\\udcff'"),
        (["group-nodes-add", "grp_nodes_a", NOT_TEXT], "node: 'x\\udcff'"),
        (["group-commands-add", "grp_commands_a", NOT_TEXT], "command: 'x\\udcff'"),
    ],
)
def test_acl_edits_refuse_text_that_is_not_text(
    tmp_path: Path, arguments: list[str], complaint: str
) -> None:
    result = runner.invoke(app, ["acl", *arguments, "--home", str(tmp_path)])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stderr.startswith(f"acl: error: {complaint} contains U+DCFF at position ")
    assert result.stderr.endswith(", a lone surrogate: not valid Unicode text\n")
    acl_file = tmp_path / "etc" / "acl" / "central.json"
    assert not acl_file.exists() or "udcff" not in acl_file.read_text()


# -- broker-config --error-logger, --port -----------------------------------------------------


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        (
            ["--error-logger", "cntral"],
            "error logger node 'cntral' is not among the nodes ['central', 'ship1']",
        ),
        (["--port", "99999"], "--port: value 99999; allowed: 1 to 65535"),
        (["--port", "0"], "--port: value 0; allowed: 1 to 65535"),
    ],
)
def test_broker_config_refuses_an_error_logger_outside_the_fleet_and_a_bad_port(
    tmp_path: Path, options: list[str], complaint: str
) -> None:
    out = tmp_path / "broker"
    result = runner.invoke(
        app, ["broker-config", "--nodes", "central,ship1", "--out", str(out), *options]
    )
    assert result.exit_code == 2
    assert result.stderr == f"steward-otp: error: broker-config: {complaint}\n"
    assert not out.exists()
    result = runner.invoke(
        app,
        ["broker-config", "--nodes", "central,ship1", "--out", str(out), "--error-logger",
         "ship1", "--port", "65535"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "port: 65535" in (out / "nats-server.conf").read_text()
