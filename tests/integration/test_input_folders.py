"""The read folder and the startup folder, on real nodes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import trio

from steward_otp.inputs.folders import StartupFolderInput
from steward_otp.inputs.intake import Answer
from steward_otp.node import Node
from tests.conftest import NatsServer
from tests.nodes import file_text, node_config, send_document, wait_for

pytestmark = pytest.mark.integration

GOOD = {
    "toNode": "local",
    "method": "REQToFileAppend",
    "directory": "in",
    "fileName": "in.log",
    "data": "good\n",
    "ACKTimeout": 2,
    "retries": 3,
    "replyMethod": "REQNone",
}


def central_error_log(tmp_path: Path) -> Path:
    return tmp_path / "central" / "data" / "errorLog" / "errorCentral" / "error.log"


def drop(folder: Path, name: str, content: bytes) -> Path:
    """Write ``content`` beside the folder's files as ``.name.tmp``, then rename it in."""
    temporary = folder / f".{name}.tmp"
    temporary.write_bytes(content)
    os.replace(temporary, folder / name)
    return folder / name


def answer_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in file_text(path).splitlines()]


async def test_read_folder_sends_a_file_renamed_into_place_then_deletes_it(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    node = Node(node_config(tmp_path, "central", nats_server.url))
    folder = node.config.readfolder_dir
    out = tmp_path / "central" / "data" / "in" / "central" / "in.log"
    async with node:
        assert folder.is_dir() and (folder / "rejected").is_dir()
        # A file still being written under a name the folder ignores ...
        partial = folder / "msg.json.part"
        partial.write_bytes(json.dumps([GOOD]).encode()[:20])
        # ... is left alone while another file is sent and deleted.
        first = drop(folder, "first.json", json.dumps([dict(GOOD, data="first\n")]).encode())
        await wait_for(lambda: file_text(out) == "first\n")
        await wait_for(lambda: not first.exists())
        assert partial.exists()

        partial.write_bytes(json.dumps([GOOD]).encode())
        os.replace(partial, folder / "msg.json")
        await wait_for(lambda: file_text(out) == "first\ngood\n")
        await wait_for(lambda: not (folder / "msg.json").exists())
        assert list((folder / "rejected").iterdir()) == []


async def test_read_folder_moves_bad_files_to_rejected_with_their_answers(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    node = Node(node_config(tmp_path, "central", nats_server.url))
    folder = node.config.readfolder_dir
    rejected = folder / "rejected"
    out = tmp_path / "central" / "data" / "in" / "central" / "in.log"
    async with node:
        drop(folder, "broken.json", b'[{"toNode": "ship1", "method": ')
        await wait_for((rejected / "broken.json.error").exists)
        [answer] = answer_lines(rejected / "broken.json.error")
        assert answer["status"] == "rejected" and "malformed JSON" in str(answer["error"])
        assert (rejected / "broken.json").read_bytes() == b'[{"toNode": "ship1", "method": '
        assert not (folder / "broken.json").exists()

        # A partly bad file: rejected as a whole, but its good message still goes through.
        batch = [
            dict(GOOD, method="ECHORequest"),
            {k: v for k, v in GOOD.items() if k != "toNode"},
            dict(GOOD, data="partly\n"),
        ]
        drop(folder, "partly.yaml", json.dumps(batch).encode())
        await wait_for((rejected / "partly.yaml.error").exists)
        answers = answer_lines(rejected / "partly.yaml.error")
        assert {a["field"] for a in answers if a["status"] == "rejected"} == {"method", "toNode"}
        assert [a["status"] for a in answers].count("accepted") == 1
        await wait_for(lambda: file_text(out) == "partly\n")

        # The same name again does not overwrite the first rejected file.
        drop(folder, "broken.json", b"- [unclosed")
        await wait_for((rejected / "broken.json.1.error").exists)
        assert "YAML" in str(answer_lines(rejected / "broken.json.1.error")[0]["error"])

        drop(folder, "huge.json", b"[" + b" " * (16 * 1024 * 1024 + 1) + b"]")
        await wait_for((rejected / "huge.json.error").exists, timeout=30)
        assert "larger than" in str(answer_lines(rejected / "huge.json.error")[0]["error"])

        # Still alive: the next good file goes through.
        drop(folder, "good.json", json.dumps(GOOD).encode())
        await wait_for(lambda: file_text(out) == "partly\ngood\n")
        await wait_for(lambda: not (folder / "good.json").exists())

        errors = central_error_log(tmp_path)
        await wait_for(lambda: "readFolder file broken.json" in file_text(errors))
        await wait_for(lambda: "readFolder file partly.yaml: message rejected" in file_text(errors))


STARTUP_COMMAND = {
    "toNode": "local",
    "method": "REQCliCommand",
    "methodArgs": ["bash", "-c", "echo started"],
    "replyMethod": "REQToFileAppend",
    "directory": "startup",
    "fileName": "out.txt",
    "ACKTimeout": 5,
    "retries": 3,
    "methodTimeout": 10,
}


async def test_startup_folder_runs_its_messages_at_every_start_and_replies_to_from_node(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    central = Node(node_config(tmp_path, "central", nats_server.url))
    ship1_config = node_config(tmp_path, "ship1", nats_server.url)
    startup = ship1_config.startup_dir
    startup.mkdir(parents=True)
    (startup / "10-command.json").write_text(
        json.dumps([dict(STARTUP_COMMAND, fromNode="central"), STARTUP_COMMAND])
    )
    (startup / "20-broken.yaml").write_text("- toNode: [unclosed\n")
    (startup / ".hidden.json").write_text(json.dumps([dict(STARTUP_COMMAND, fromNode="x")]))
    out = tmp_path / "central" / "data" / "startup" / "ship1" / "out.txt"
    errors = central_error_log(tmp_path)
    async with central:
        async with Node(ship1_config) as ship1:
            await wait_for(lambda: file_text(out) == "started\n")
            await wait_for(lambda: 'field "fromNode" is missing' in file_text(errors))
            await wait_for(lambda: "startup folder file 20-broken.yaml" in file_text(errors))
            assert "node: ship1" in file_text(errors)
            # The node is unharmed: its socket still takes messages.
            [answer] = await send_document(ship1.config.socket_path, json.dumps(GOOD).encode())
            assert answer["status"] == "accepted"
        assert (startup / "10-command.json").exists()  # the files stay

        async with Node(ship1_config):
            await wait_for(lambda: file_text(out) == "started\nstarted\n")


async def test_startup_folder_is_submitted_once_even_when_its_process_restarts(
    tmp_path: Path,
) -> None:
    (tmp_path / "a.json").write_text("[]")
    documents: list[bytes] = []

    async def accept(document: bytes) -> list[Answer]:
        documents.append(document)
        return []

    startup = StartupFolderInput(tmp_path, accept, lambda level, text: None)
    for _ in range(2):  # two incarnations of the process
        async with trio.open_nursery() as nursery:
            await nursery.start(startup.run)
            nursery.cancel_scope.cancel()
    assert documents == [b"[]"]
