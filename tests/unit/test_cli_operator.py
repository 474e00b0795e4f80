"""The operator's commands without a node: `config check|show`, completion, the pieces of
`cmd`/`send --wait` (message, summary, exit status), durations, and the audit-log search."""

from __future__ import annotations

import json
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from steward_otp.cli import app
from steward_otp.cli.inspection import parse_duration, parse_since
from steward_otp.cli.send import split_wait_value
from steward_otp.inputs.intake import accept_document
from steward_otp.message import Message
from steward_otp.methods import BUILTIN_METHODS
from steward_otp.replies.follow import audit_end, follow
from steward_otp.replies.send_plan import CMD_DEFAULTS, command_message, summarise
from steward_otp.store import AuditRecord, Direction
from steward_otp.tree_view import human_duration, render_audit, render_queue

runner = CliRunner()


def write_config(home: Path, text: str) -> Path:
    path = home / "etc" / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_text(text, encoding="utf-8")
    return path


# -- config check / show ----------------------------------------------------------------------


def test_config_check_accepts_a_good_file_and_starts_nothing(tmp_path: Path) -> None:
    path = write_config(tmp_path, 'node_name = "ship1"\nbroker_address = "nats://hub:4222"\n')

    result = runner.invoke(app, ["config", "check", "--home", str(tmp_path)])

    assert result.exit_code == 0, result.output
    assert result.stdout == f"ok: {path} (node ship1)\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["etc"]  # no var/, data/, tmp/
    assert path.read_text(encoding="utf-8").count("\n") == 2  # not rewritten


def test_config_check_rejects_a_bad_file_naming_the_field(tmp_path: Path) -> None:
    path = write_config(tmp_path, 'node_name = "ship1"\ndefault_message_retries = -5\n')

    result = runner.invoke(app, ["config", "check", "--home", str(tmp_path)])

    assert result.exit_code == 2
    assert "default_message_retries = -5 is not allowed" in result.stderr
    assert str(path) in result.stderr and "--default-message-retries" in result.stderr


def test_config_check_without_a_node_name_names_the_field(tmp_path: Path) -> None:
    result = runner.invoke(app, ["config", "check", "--home", str(tmp_path)])

    assert result.exit_code == 2
    assert "node_name is required" in result.stderr


def test_config_check_prints_warnings_for_unknown_keys(tmp_path: Path) -> None:
    write_config(tmp_path, 'node_name = "ship1"\nbroker_adress = "x"\n')

    result = runner.invoke(app, ["config", "check", "--home", str(tmp_path)])

    assert result.exit_code == 0
    assert "unknown key ignored (did you mean 'broker_address'?)" in result.stderr


def test_config_show_prints_the_effective_configuration(tmp_path: Path) -> None:
    write_config(tmp_path, 'node_name = "ship1"\n')

    result = runner.invoke(app, ["config", "show", "--home", str(tmp_path)])
    assert result.exit_code == 0, result.output
    shown = tomllib.loads(result.stdout)
    assert shown["node_name"] == "ship1" and "broker_address" in shown

    result = runner.invoke(app, ["config", "show", "--json", "--home", str(tmp_path)])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["node_name"] == "ship1"


def test_shell_completion_is_offered() -> None:
    result = runner.invoke(app, ["--help"])

    assert "--install-completion" in result.stdout and "--show-completion" in result.stdout


def test_every_inspection_command_has_json() -> None:
    for command in (
        ["tree"],
        ["status"],
        ["audit"],
        ["send"],
        ["cmd"],
        ["queue", "ls"],
        ["queue", "cancel"],
        ["queue", "retry"],
        ["queue", "purge"],
        ["config", "show"],
    ):
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0, command
        assert "--json" in result.stdout, command


def test_cmd_and_send_document_their_exit_status() -> None:
    for command in ("cmd", "send"):
        result = runner.invoke(app, [command, "--help"], terminal_width=200)
        flat = " ".join(result.stdout.split())
        assert "Exit status: 0" in flat and "3 some node did not reply within the timeout" in flat


# -- cmd / send --wait pieces ----------------------------------------------------------------


def test_wait_with_a_value_becomes_wait_and_timeout() -> None:
    assert split_wait_value(["send", "f.json", "--wait=30"]) == [
        "send", "f.json", "--wait", "--timeout", "30",
    ]  # fmt: skip
    assert split_wait_value(["send", "--wait", "f"]) == ["send", "--wait", "f"]
    assert split_wait_value(["cmd", "a", "--", "x", "--wait=3"])[-1] == "--wait=3"


def test_cmd_builds_a_valid_command_message_that_survives_an_outage() -> None:
    message = command_message(
        ["ship1", "ship2"], ["uptime"], **CMD_DEFAULTS, directory="cmd",
        file_name="cmd.log",
    )  # fmt: skip
    assert message["methodArgs"] == ["sh", "-c", "uptime"]
    several = command_message(
        ["ship1"], ["ls", "-l", "/"], **CMD_DEFAULTS, directory="d", file_name="f"
    )
    assert several["methodArgs"] == ["ls", "-l", "/"]
    from steward_otp.message import parse_messages  # noqa: PLC0415

    parsed = parse_messages(json.dumps([message]))
    assert parsed.ok and not parsed.warnings
    # An offline node keeps getting attempts for an hour at least.
    window = (message["retries"] + 1) * message["ACKTimeout"] + message["retries"] * message[
        "retryWait"
    ]
    assert window >= 3600


def entry(node: str, state: str, replies: int = 0, errors: int = 0, **more: Any) -> dict[str, Any]:
    return {
        "id": f"central:{node}",
        "node": node,
        "state": state,
        "replies": replies,
        "errors": errors,
        "attempts": more.get("attempts"),
        "reason": more.get("reason"),
        "expectsReply": more.get("expectsReply", True),
    }


def test_the_summary_and_exit_status() -> None:
    ok = [entry("ship1", "replied", 1), entry("ship2", "replied", 2)]
    assert summarise(ok, False) == ("2/2 replied", 0)

    text, status = summarise([*ok, entry("ship3", "queued", attempts=2)], True)
    assert status == 3
    assert text == "2/3 replied; ship3 still queued, 2 attempts, id central:ship3"

    text, status = summarise([entry("ship1", "replied", 2, 1), entry("ship2", "queued")], True)
    assert status == 1  # an error outweighs a node still queued
    assert text.startswith("1/2 replied (1 with an error: ship1); ship2 still queued")

    failed = entry("ship9", "failed", reason="max retries reached")
    text, status = summarise([failed], False)
    assert (text, status) == ("0/1 replied; ship9 failed: max retries reached, id central:ship9", 1)

    quiet = entry("ship1", "delivered", expectsReply=False)
    assert summarise([quiet], False) == ("1/1 delivered", 0)


def test_durations_ages_and_since() -> None:
    assert [parse_duration(t) for t in ("90", "90s", "15m", "2h", "1d", "1w", "x", "")] == [
        90, 90, 900, 7200, 86400, 604800, None, None,
    ]  # fmt: skip
    assert parse_since("1h", 10_000.0) == 10_000.0 - 3600
    assert parse_since("2026-12-01T10:30:00+00:00", 0) == 1796121000.0
    assert parse_since("yesterday", 0) is None
    samples = (None, -3, 5, 125, 3 * 3600 + 420, 2 * 86400 + 4 * 3600)
    shown = [human_duration(s) for s in samples]
    assert shown == ["-", "0s", "5s", "2m05s", "3h07m", "2d04h"]


def test_queue_and_audit_tables_use_human_ages() -> None:
    table = render_queue(
        [{"id": "c:1", "toNode": "ship3", "method": "REQCliCommand", "state": "queued",
          "attempts": 4, "age": 3725.0, "reason": None}]
    )  # fmt: skip
    header, row = table.splitlines()
    assert header.split() == ["ID", "TO", "METHOD", "STATE", "TRIES", "AGE", "REASON"]
    assert row.split() == ["c:1", "ship3", "REQCliCommand", "queued", "4", "1h02m"]
    audit = render_audit(
        [{"id": "s:2", "direction": "in", "node": "ship1", "method": "REQToFileAppend",
          "outcome": "ok", "attempts": None, "recorded": 1000.0, "replyTo": "c:1",
          "reason": None}],
        now=1125.0,
    )  # fmt: skip
    assert "2m05s ago" in audit and "<- ship1" in audit and "reply to c:1" in audit


# -- warnings in every answer -----------------------------------------------------------------


async def test_each_answer_carries_its_own_messages_warnings() -> None:
    async def submit(messages: Any) -> list[str]:
        return [f"id{i}" for i in range(len(messages))]

    document = json.dumps(
        [
            {"toNodes": ["a", "b"], "method": "REQPing", "AckTimeout": 3},
            {"toNode": "a", "method": "REQPing"},
            {"toNode": "a", "method": "REQNope", "retrywait": 2},
        ]
    )
    answers = await accept_document(
        document, node_name="central", submit=submit, table=BUILTIN_METHODS
    )
    shapes = [a.to_dict() for a in answers]
    assert [len(s["warnings"]) for s in shapes] == [1, 1, 0, 1]
    assert '"ACKTimeout"' in shapes[0]["warnings"][0]
    assert shapes[3]["status"] == "rejected" and '"retrywait"' in shapes[3]["warnings"][0]
    from steward_otp.inputs.intake import warning_texts  # noqa: PLC0415

    assert len(warning_texts(answers, "readFolder file x.json")) == 2  # a/b share one


# -- the audit-log search ---------------------------------------------------------------------


class FakeAudit:
    """The audit log's read operation over a fixed set of seqs (with pruned gaps)."""

    def __init__(self, seqs: list[int], records: list[AuditRecord] | None = None) -> None:
        self.records = records or [record(s) for s in seqs]
        self.reads = 0

    async def audit_log(
        self, *, msg_id: str | None = None, limit: int | None = 1000, after_seq: int = 0
    ) -> list[AuditRecord]:
        self.reads += 1
        found = [r for r in self.records if r.seq > after_seq and msg_id in (None, r.msg_id)]
        return found[:limit]

    async def list_outbox(self, **_: Any) -> list[Any]:
        return []


def record(seq: int, **fields: Any) -> AuditRecord:
    values: dict[str, Any] = {
        "seq": seq,
        "direction": Direction.OUTBOUND,
        "msg_id": f"m{seq}",
        "peer_node": "ship1",
        "method": "REQPing",
        "outcome": "delivered",
        "attempts": 1,
        "payload": None,
        "created_at": 0.0,
        "recorded_at": float(seq),
        "reason": None,
    }
    values.update(fields)
    return AuditRecord(**values)


@pytest.mark.parametrize(
    "seqs", [[], [1], [1, 2, 3], list(range(500, 90_000, 7)), [5, 1_000_000], [2**40]]
)
async def test_audit_end_finds_the_newest_record_in_few_reads(seqs: list[int]) -> None:
    store = FakeAudit(seqs)
    assert await audit_end(store) == (seqs[-1] if seqs else 0)
    assert store.reads <= 2 * 41 + 2
    assert await audit_end(store, seqs[-1] if seqs else 0) == (seqs[-1] if seqs else 0)


async def test_follow_reports_replies_and_outcomes_then_ends() -> None:
    from steward_otp import codec  # noqa: PLC0415

    request = Message(to_node="ship1", from_node="central", id="central:1", method="REQPing")
    reply = Message(
        to_node="central", from_node="ship1", id="ship1:9", method="REQToFileAppend",
        data=b"pong\n", file_name="x.log", previous_message=request, is_reply=True,
    )  # fmt: skip
    payload = codec.encode(reply, compress_threshold=None).payload
    store = FakeAudit(
        [],
        [
            record(1),  # before the watch: not reported
            record(2, msg_id="central:1"),
            record(3, direction=Direction.INBOUND, msg_id="ship1:9", payload=payload,
                   outcome="ok", attempts=None),
            record(4, msg_id="central:2", outcome="failed", reason="max retries reached"),
        ],
    )  # fmt: skip
    start = time.monotonic()
    events = [
        e
        async for e in follow(
            store, ["central:1", "central:2"], after_seq=1, timeout=10, quiet=0.05, poll=0.01
        )
    ]
    assert time.monotonic() - start < 5
    assert [e["event"] for e in events] == ["state", "reply", "state", "end"]
    assert events[1]["output"] == "pong\n" and events[1]["node"] == "ship1"
    assert not events[1]["error"]
    end = {m["id"]: m["state"] for m in events[-1]["messages"]}
    assert end == {"central:1": "replied", "central:2": "failed"}


async def test_follow_times_out_with_what_it_knows() -> None:
    store = FakeAudit([1])
    events = [
        e
        async for e in follow(
            store, ["central:7"], timeout=0.2, quiet=0.05, poll=0.01, heartbeat=0.05
        )
    ]
    assert events[-1]["event"] == "end" and events[-1]["timedOut"]
    assert events[-1]["messages"][0]["state"] == "unknown"
    assert any(e["event"] == "waiting" and e["pending"] == 1 for e in events)
