"""A read-folder file whose name is not UTF-8: rejected and reported, nothing crashes."""

from __future__ import annotations

import json
import os
from pathlib import Path

from steward_otp.error_kernel import ErrorEvent, error_log_message
from tests.unit.handlers.loopback_nodes import LoopbackNet, file_text, wait_for


def _restarts(node: object, path: str) -> int:
    entry = node.snapshot().find(path)  # type: ignore[attr-defined]
    assert entry is not None and entry.state == "running", path
    return int(entry.restart_count)


async def test_a_file_whose_name_is_not_utf8_is_rejected_and_reported_without_a_crash(
    tmp_path: Path,
) -> None:
    net = LoopbackNet(tmp_path)
    central = net.node("central", enable_read_folder=True)
    folder = central.config.readfolder_dir
    raw_folder = os.fsencode(folder)
    ping = b'[{"toNode": "local", "method": "REQPing", "replyMethod": "REQNone"}]'
    async with central:
        for name, content in ((b"x\xff.json", b"[]"), (b"y\xfe\xfd.json", ping)):
            with open(raw_folder + b"/" + name, "wb") as file:
                file.write(content)
        rejected = folder / "rejected"
        await wait_for(lambda: len(os.listdir(os.fsencode(rejected))) == 4)
        assert sorted(os.listdir(os.fsencode(rejected))) == [
            b"x\xff.json",
            b"x\xff.json.error",
            b"y\xfe\xfd.json",
            b"y\xfe\xfd.json.error",
        ]
        assert [n for n in os.listdir(raw_folder) if n != b"rejected"] == []
        with open(os.fsencode(rejected) + b"/x\xff.json.error", "rb") as file:
            (answer,) = [json.loads(line) for line in file.read().decode().splitlines()]
        assert answer["status"] == "rejected"
        assert answer["error"] == (
            'file: its name "x\\xff.json" is not valid UTF-8 (the bytes shown as \\xNN); '
            "nothing in it was read"
        )
        assert "rename the file" in answer["allowed"]

        log = net.error_log()
        await wait_for(lambda: "y\\xfe\\xfd.json" in file_text(log))
        assert "error: readFolder file x\\xff.json: file: its name" in file_text(log)
        # The error kernel took the lines in its stride: nothing was restarted.
        assert _restarts(central, "node/errors") == 0
        assert _restarts(central, "node/inputs") == 0
        assert _restarts(central, "node/inputs/readfolder") == 0


def test_an_error_log_line_that_cannot_be_encoded_is_escaped_not_a_crash() -> None:
    event = ErrorEvent("error", "bad name x\udcff.json", 0.0)
    message = error_log_message("central", event, ack_timeout=5, retries=1)
    assert message.data.endswith(b", node: central, bad name x\\udcff.json\n")
