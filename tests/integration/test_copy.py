"""File copy (REQCopySrc) between real nodes through a real nats-server."""

from __future__ import annotations

import hashlib
import random
import stat
from collections.abc import Sequence
from pathlib import Path

import attrs
import pytest
import trio

from steward_otp.message import Message
from steward_otp.node import Node
from tests.conftest import NatsServer
from tests.nodes import NodeProcess, file_text, node_config, wait_for

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
CHUNK = 1_000_000
BIG = 20 * MIB
BIG_CHUNKS = -(-BIG // CHUNK)  # 21


def write_random(path: Path, size: int, seed: int = 1) -> str:
    """Write ``size`` random bytes to ``path``; return their SHA-256."""
    data = random.Random(seed).randbytes(size)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(MIB):
            digest.update(block)
    return digest.hexdigest()


def copy_request(*args: str, max_time: int = 60) -> Message:
    """REQCopySrc to node "src", replies to data/copies/src/big.log.copy{reply,error} on src."""
    return Message(
        to_node="src",
        method="REQCopySrc",
        method_args=[*args[:3], args[3] if len(args) > 3 else str(CHUNK), str(max_time), *args[4:]],
        directory="copies",
        file_name="big.log",
        ack_timeout=2,
        retries=3,
        method_timeout=30,
    )


class ChunkTap:
    """Sits in front of a source node's outbox: counts the chunk messages it sends, and can
    hold back chunks from an index on (until ``release``) or damage one on its first send."""

    def __init__(self, node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent: list[int] = []
        self.hold_from: int | None = None
        self.damage: set[int] = set()
        self.release = trio.Event()
        self._submit = node.submit
        monkeypatch.setattr(node, "submit", self.submit)

    async def submit(self, messages: Sequence[Message]) -> list[str]:
        passed = []
        for message in messages:
            if message.method == "REQSUBCopyDst" and message.method_args[0] == "chunk":
                index = int(message.method_args[2])
                self.sent.append(index)
                if self.hold_from is not None and index >= self.hold_from:
                    await self.release.wait()
                if index in self.damage:
                    self.damage.discard(index)
                    data = bytearray(message.data)
                    data[len(data) // 2] ^= 0xFF
                    passed.append(attrs.evolve(message, data=bytes(data)))
                    continue
            passed.append(message)
        return await self._submit(passed)


def paths(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    """(source file, destination file, reply file, error reply file)."""
    reply = tmp_path / "src" / "data" / "copies" / "src" / "big.log.copyreply"
    return (
        tmp_path / "src" / "data" / "files" / "big.bin",
        tmp_path / "dst" / "data" / "incoming" / "big.bin",
        reply,
        reply.with_name("big.log.copyerror"),
    )


def chunk_files(tmp_path: Path) -> list[Path]:
    return list((tmp_path / "dst" / "var" / "copy").glob("dst-*/*.chunk"))


def leftovers(tmp_path: Path) -> list[str]:
    """Copy state still on disk after a copy ended (the destination's result record stays)."""
    found = [p.name for p in (tmp_path / "src" / "var" / "copy").glob("*")]
    found += [
        p.name for p in (tmp_path / "dst" / "var" / "copy").glob("*") if p.suffix != ".result"
    ]
    found += [p.name for p in (tmp_path / "dst" / "data").rglob(".*.part")]
    return found


async def test_a_20_mib_file_arrives_identical(
    nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, target, reply, error = paths(tmp_path)
    digest = write_random(source, BIG)
    src = Node(node_config(tmp_path, "src", nats_server.url))
    dst = Node(node_config(tmp_path, "dst", nats_server.url))
    tap = ChunkTap(src, monkeypatch)
    async with src, dst:
        await src.submit([copy_request("files/big.bin", "dst", "incoming/big.bin")])
        await wait_for(lambda: "copyDstDone" in file_text(reply), timeout=60)
    assert sha256_of(target) == digest
    assert sorted(tap.sent) == list(range(BIG_CHUNKS))
    assert f"copyDstDone,{source},{target}\n" in file_text(reply)
    assert f"sha256 {digest}" in file_text(reply)
    assert file_text(error) == ""
    assert leftovers(tmp_path) == []


async def test_copy_resumes_after_the_destination_restarts(
    nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, target, reply, _ = paths(tmp_path)
    digest = write_random(source, BIG, seed=2)
    src = Node(node_config(tmp_path, "src", nats_server.url))
    tap = ChunkTap(src, monkeypatch)
    tap.hold_from = 10
    async with src:
        async with Node(node_config(tmp_path, "dst", nats_server.url)):
            await src.submit([copy_request("files/big.bin", "dst", "incoming/big.bin")])
            await wait_for(lambda: len(chunk_files(tmp_path)) == 10, timeout=30)
            await wait_for(lambda: len(tap.sent) > 10)  # the next window is asked for
        # The destination is down: chunks it asked for go out now and wait in the outbox.
        tap.release.set()
        assert not target.exists()
        async with Node(node_config(tmp_path, "dst", nats_server.url)):
            await wait_for(lambda: "copyDstDone" in file_text(reply), timeout=60)
    assert sha256_of(target) == digest
    resent = len(tap.sent) - BIG_CHUNKS
    assert sorted(set(tap.sent)) == list(range(BIG_CHUNKS))
    assert len(tap.sent) < 2 * BIG_CHUNKS
    assert 0 < resent < BIG_CHUNKS
    assert all(tap.sent.count(i) == 1 for i in range(10))  # verified chunks never came again
    assert leftovers(tmp_path) == []


async def test_copy_resumes_after_the_destination_is_killed(
    nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, target, reply, _ = paths(tmp_path)
    digest = write_random(source, BIG, seed=5)
    src = Node(node_config(tmp_path, "src", nats_server.url))
    tap = ChunkTap(src, monkeypatch)
    tap.hold_from = 10
    dst = NodeProcess(tmp_path / "dst", "dst", nats_server.url)
    try:
        async with src:
            await dst.start()
            await src.submit([copy_request("files/big.bin", "dst", "incoming/big.bin")])
            await wait_for(lambda: len(chunk_files(tmp_path)) == 10, timeout=30)
            dst.kill()  # SIGKILL, in the middle of the copy
            tap.release.set()
            await dst.start()
            await wait_for(lambda: "copyDstDone" in file_text(reply), timeout=60)
    finally:
        dst.kill()
    assert sha256_of(target) == digest
    assert len(tap.sent) < 2 * BIG_CHUNKS
    assert all(tap.sent.count(i) == 1 for i in range(10))
    assert leftovers(tmp_path) == []


async def test_a_broker_outage_only_delays_the_copy(
    nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, target, reply, _ = paths(tmp_path)
    digest = write_random(source, 8 * MIB, seed=4)
    src = Node(node_config(tmp_path, "src", nats_server.url))
    dst = Node(node_config(tmp_path, "dst", nats_server.url))
    tap = ChunkTap(src, monkeypatch)
    tap.hold_from = 4
    async with src, dst:
        await src.submit([copy_request("files/big.bin", "dst", "incoming/big.bin")])
        await wait_for(lambda: len(chunk_files(tmp_path)) == 4, timeout=30)
        await nats_server.astop()
        tap.release.set()  # the rest goes into the outbox while the link is down
        await wait_for(lambda: len(tap.sent) == 9)
        await nats_server.astart()
        await wait_for(lambda: "copyDstDone" in file_text(reply), timeout=60)
    assert sha256_of(target) == digest
    assert sorted(tap.sent) == list(range(9))  # retried by the outbox, never sent again


async def test_a_damaged_chunk_is_detected_and_sent_again(
    nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, target, reply, _ = paths(tmp_path)
    digest = write_random(source, BIG, seed=3)
    src = Node(node_config(tmp_path, "src", nats_server.url))
    dst = Node(node_config(tmp_path, "dst", nats_server.url))
    tap = ChunkTap(src, monkeypatch)
    tap.damage = {3}
    async with src, dst:
        await src.submit([copy_request("files/big.bin", "dst", "incoming/big.bin")])
        await wait_for(lambda: "copyDstDone" in file_text(reply), timeout=60)
    assert sha256_of(target) == digest
    assert tap.sent.count(3) == 2
    assert sorted(tap.sent) == sorted([*range(BIG_CHUNKS), 3])


async def test_absolute_destination_gets_folder_permission_and_source_mode(
    nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, _, reply, _ = paths(tmp_path)
    digest = write_random(source, 2500)
    source.chmod(0o640)
    target = tmp_path / "elsewhere" / "deep" / "small.bin"
    src = Node(node_config(tmp_path, "src", nats_server.url))
    dst = Node(node_config(tmp_path, "dst", nats_server.url))
    async with src, dst:
        request = copy_request("files/big.bin", "dst", str(target), "1000", "0750")
        await src.submit([request])
        await wait_for(lambda: "copyDstDone" in file_text(reply))
    assert sha256_of(target) == digest
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o750
    assert stat.S_IMODE((tmp_path / "elsewhere").stat().st_mode) == 0o750


async def test_a_source_that_changes_during_the_copy_fails_clearly(
    nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, target, reply, error = paths(tmp_path)
    write_random(source, 5000)
    src = Node(node_config(tmp_path, "src", nats_server.url))
    dst = Node(node_config(tmp_path, "dst", nats_server.url))
    tap = ChunkTap(src, monkeypatch)
    tap.hold_from = 1
    async with src, dst:
        await src.submit([copy_request("files/big.bin", "dst", "incoming/big.bin", "1000")])
        await wait_for(lambda: len(tap.sent) == 2)
        with source.open("ab") as f:
            f.write(b"more")
        tap.release.set()
        await wait_for(lambda: "changed during the copy" in file_text(error))
        await wait_for(lambda: leftovers(tmp_path) == [])
    assert "copyDstDone" not in file_text(reply)
    assert not target.exists()


async def test_a_copy_that_runs_out_of_time_is_cleaned_up_and_reported(
    nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, target, _, error = paths(tmp_path)
    write_random(source, 5000)
    src = Node(node_config(tmp_path, "src", nats_server.url))
    dst = Node(node_config(tmp_path, "dst", nats_server.url))
    tap = ChunkTap(src, monkeypatch)
    tap.hold_from = 2  # chunks from 2 on never leave
    async with src, dst:
        request = copy_request("files/big.bin", "dst", "incoming/big.bin", "1000", max_time=2)
        await src.submit([request])
        await wait_for(lambda: "maxTotalCopyTime=2s" in file_text(error), timeout=20)
        await wait_for(lambda: leftovers(tmp_path) == [])
    assert "2 of 5 chunks arrived" in file_text(error)
    assert not target.exists()


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["files/big.bin", "dst", "../../etc/x"], 'contains ".."'),
        (["../big.bin", "dst", "x"], 'contains ".."'),
        (["files/missing.bin", "dst", "x"], "No such file"),
        (["files/big.bin", "dst", "x", "2000000"], "chunkSize"),
        (["{home}/etc/signing/private.key", "dst", "x"], "the node's own folder"),
    ],
)
async def test_bad_requests_are_answered_in_the_copyerror_file(
    nats_server: NatsServer,
    tmp_path: Path,
    args: list[str],
    complaint: str,
) -> None:
    source, _, _, error = paths(tmp_path)
    write_random(source, 100)
    src = Node(node_config(tmp_path, "src", nats_server.url))
    async with src:
        home = str(tmp_path / "src")
        args = [a.replace("{home}", home) for a in args]
        await src.submit([attrs.evolve(copy_request(), method_args=args)])
        await wait_for(lambda: complaint in file_text(error))
    assert list((tmp_path / "src" / "var" / "copy").glob("*")) == []
