"""REQTailFile across two real nodes: ship1 follows a file, central gets each new line.

The tail starts at the end of the file and survives rotation: the file renamed and
recreated, or truncated in place.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from steward_otp.message import Message
from steward_otp.node import Node
from tests.conftest import NatsServer
from tests.nodes import file_text, node_config, wait_for

pytestmark = pytest.mark.integration


def tail(path: Path | str, **fields: object) -> Message:
    settings: dict[str, object] = {
        "to_node": "ship1",
        "method": "REQTailFile",
        "method_args": [str(path)],
        "directory": "tail",
        "file_name": "app.log",
        "ack_timeout": 5,
        "retries": 3,
        "method_timeout": -1,
        "reply_method": "REQToFileAppend",
    }
    settings.update(fields)
    return Message(**settings)  # type: ignore[arg-type]


def append(path: Path, text: str) -> None:
    with path.open("a") as f:
        f.write(text)


async def wait_until_following(log: Path, out: Path) -> None:
    """Write marker lines until one comes back: then the tail is surely reading the file."""
    with trio.fail_after(20):
        for i in range(1000):
            append(log, f"marker {i}\n")
            with trio.move_on_after(0.5):
                await wait_for(lambda: "marker" in file_text(out))
                return


async def test_tail_sends_new_lines_and_survives_rename_and_truncation(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    central = Node(node_config(tmp_path, "central", nats_server.url))
    ship1 = Node(node_config(tmp_path, "ship1", nats_server.url))
    log = tmp_path / "app.log"
    log.write_text("old line, written before the tail started\n")
    out = tmp_path / "central" / "data" / "tail" / "ship1" / "app.log"
    async with central, ship1:
        await central.submit([tail(log)])
        await wait_until_following(log, out)

        append(log, "first new line\n")
        await wait_for(lambda: "first new line\n" in file_text(out))

        # logrotate's default: rename the file away, create a new one.
        log.rename(tmp_path / "app.log.1")
        append(tmp_path / "app.log.1", "late line in the rotated file\n")
        log.write_text("line in the new file\n")
        await wait_for(lambda: "line in the new file\n" in file_text(out))
        assert "late line in the rotated file\n" in file_text(out)

        # copytruncate: the same file, emptied in place.
        log.write_text("")
        append(log, "after truncation\n")
        await wait_for(lambda: "after truncation\n" in file_text(out))

        # and it keeps following the new file
        append(log, "still following\n")
        await wait_for(lambda: "still following\n" in file_text(out))
    assert "old line" not in file_text(out)


async def test_tail_waits_through_a_rotation_gap(nats_server: NatsServer, tmp_path: Path) -> None:
    central = Node(node_config(tmp_path, "central", nats_server.url))
    ship1 = Node(node_config(tmp_path, "ship1", nats_server.url))
    log = tmp_path / "app.log"
    log.write_text("")
    out = tmp_path / "central" / "data" / "tail" / "ship1" / "app.log"
    async with central, ship1:
        await central.submit([tail(log)])
        await wait_until_following(log, out)
        log.unlink()
        # Leave the path missing for a few polls (the gap itself is what is tested).
        await trio.sleep(0.5)
        log.write_text("back again\n")
        await wait_for(lambda: "back again\n" in file_text(out))


async def test_tail_ends_at_the_method_timeout_with_an_info_line(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    central = Node(node_config(tmp_path, "central", nats_server.url))
    ship1 = Node(node_config(tmp_path, "ship1", nats_server.url))
    log = tmp_path / "app.log"
    log.write_text("")
    error_log = tmp_path / "central" / "data" / "errorLog" / "errorCentral" / "error.log"
    async with central, ship1:
        await central.submit([tail(log, method_timeout=2)])
        await wait_for(
            lambda: (
                f"info: method timeout reached REQTailFile, canceling: [{log}]"
                in file_text(error_log)
            )
        )


async def test_tail_without_a_path_or_of_a_missing_file_is_an_error_reply(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    central = Node(node_config(tmp_path, "central", nats_server.url))
    ship1 = Node(node_config(tmp_path, "ship1", nats_server.url))
    error = tmp_path / "central" / "data" / "tail" / "ship1" / "app.log.error"
    missing = tmp_path / "no-such.log"
    async with central, ship1:
        await central.submit([tail("", method_args=[]), tail(missing)])
        await wait_for(lambda: 'field "methodArgs": value [] names no file' in file_text(error))
        await wait_for(lambda: f"cannot follow {str(missing)!r}" in file_text(error))
