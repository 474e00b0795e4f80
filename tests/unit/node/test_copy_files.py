"""The file copy's disk side: reading the source, and the destination's resumable state."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any

import attrs
import pytest

from steward_otp.handlers.copy.files import (
    AssemblyError,
    DstSession,
    SourceChanged,
    SourceRecord,
    expired_sources,
    hash_source,
    load_source,
    read_chunk,
    remove_source,
    save_source,
    sweep_destination,
)
from steward_otp.handlers.copy.plan import chunk_digest
from steward_otp.handlers.copy.protocol import CopyInit, ProtocolError
from steward_otp.message import Message

COPY_ID = "0123456789abcdef0123456789abcdef"


def make_init(data: bytes, chunk_size: int = 4, **changes: Any) -> CopyInit:
    init = CopyInit(
        copy_id=COPY_ID,
        src_node="src",
        dst_node="dst",
        src_path="/a",
        dst_path="b",
        size=len(data),
        mtime_ns=0,
        chunk_size=chunk_size,
        sha256=hashlib.sha256(data).hexdigest(),
        file_mode=0o640,
        folder_permission=0o750,
        max_time=60,
        ack_timeout=5,
        retries=13,
    )
    return attrs.evolve(init, **changes)


def fill(session: DstSession, init: CopyInit, data: bytes) -> None:
    plan = init.plan
    for index in range(plan.count):
        offset, length = plan.span(index)
        chunk = data[offset : offset + length]
        assert session.store_chunk(index, chunk_digest(chunk), chunk)


def test_hash_source_reads_identity_mode_and_sha(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 3_000_000)
    path.chmod(0o604)
    found = hash_source(path)
    assert found.sha256 == hashlib.sha256(b"x" * 3_000_000).hexdigest()
    assert (found.size, found.mode) == (3_000_000, 0o604)
    assert found.mtime_ns == path.stat().st_mtime_ns
    with pytest.raises(IsADirectoryError):
        hash_source(tmp_path)


def test_read_chunk_gives_the_planned_bytes_and_notices_changes(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    st = path.stat()
    init = make_init(b"0123456789", size=st.st_size, mtime_ns=st.st_mtime_ns)
    assert [read_chunk(path, init, i) for i in range(3)] == [b"0123", b"4567", b"89"]
    with pytest.raises(IndexError):
        read_chunk(path, init, 3)
    path.write_bytes(b"0123456789!")
    with pytest.raises(SourceChanged, match="changed during the copy"):
        read_chunk(path, init, 0)
    path.write_bytes(b"0123456789")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(SourceChanged):
        read_chunk(path, init, 0)


def test_source_records_round_trip_and_expire(tmp_path: Path) -> None:
    request = Message(to_node="src", method="REQCopySrc", file_name="c", id="op:1")
    record = SourceRecord(init=make_init(b"abc"), request=request, expires_at=100.0)
    save_source(tmp_path, record)
    assert load_source(tmp_path, COPY_ID) == record
    assert expired_sources(tmp_path, now=99.0) == []
    assert expired_sources(tmp_path, now=101.0) == [record]
    (tmp_path / "src-ffffffffffffffffffffffffffffffff.json").write_text("{broken")
    expired_sources(tmp_path, now=0.0)
    assert not (tmp_path / "src-ffffffffffffffffffffffffffffffff.json").exists()
    assert remove_source(tmp_path, COPY_ID)
    assert not remove_source(tmp_path, COPY_ID)
    assert load_source(tmp_path, COPY_ID) is None


def test_a_session_survives_a_restart_with_its_verified_chunks(tmp_path: Path) -> None:
    data = b"abcdefghij"
    init = make_init(data)
    session = DstSession(tmp_path, COPY_ID)
    assert session.open(init, now=5.0) == 5.0
    assert session.store_chunk(1, chunk_digest(b"efgh"), b"efgh")
    assert not session.store_chunk(1, chunk_digest(b"efgh"), b"efgh")  # duplicate
    cut_short = session.folder / ".0.abcd.chunk.x.tmp"
    cut_short.write_bytes(b"ab")
    os.utime(cut_short, (1.0, 1.0))
    going_on = session.folder / ".2.abcd.chunk.y.tmp"
    going_on.write_bytes(b"ab")
    again = DstSession(tmp_path, COPY_ID)
    assert again.open(attrs.evolve(init, retries=99), now=50.0) == 5.0
    again.discard_partial_writes(before=1000.0)
    assert again.verified() == {1}
    assert list(again.folder.glob("*.tmp")) == [going_on]
    with pytest.raises(ProtocolError, match="different copy"):
        again.open(attrs.evolve(init, size=11), now=60.0)


def test_assembly_places_the_verified_file_with_modes(tmp_path: Path) -> None:
    data = os.urandom(10)
    init = make_init(data)
    session = DstSession(tmp_path / "state", COPY_ID)
    session.open(init, now=0.0)
    fill(session, init, data)
    target = tmp_path / "out" / "deep" / "f.bin"
    assert session.assemble(init, target) == []
    assert target.read_bytes() == data
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o750
    assert [p.name for p in target.parent.iterdir()] == ["f.bin"]
    session.finish(True, str(target), now=1.0)
    assert session.result() == (True, str(target))
    assert not session.folder.exists()


def test_an_empty_file_is_copied(tmp_path: Path) -> None:
    init = make_init(b"")
    session = DstSession(tmp_path / "state", COPY_ID)
    session.open(init, now=0.0)
    target = tmp_path / "empty"
    assert session.assemble(init, target) == []
    assert target.read_bytes() == b""


def test_a_chunk_damaged_on_disk_is_dropped_and_reported(tmp_path: Path) -> None:
    data = b"abcdefghij"
    init = make_init(data)
    session = DstSession(tmp_path / "state", COPY_ID)
    session.open(init, now=0.0)
    fill(session, init, data)
    damaged = next(session.folder.glob("1.*.chunk"))
    damaged.write_bytes(b"XXXX")
    target = tmp_path / "f"
    assert session.assemble(init, target) == [1]
    assert session.verified() == {0, 2}
    assert not target.exists()
    assert list(tmp_path.glob(".f.*")) == []


def test_chunks_that_do_not_make_the_hashed_file_fail_the_copy(tmp_path: Path) -> None:
    data = b"abcdefghij"
    init = make_init(data, sha256="00" * 32)
    session = DstSession(tmp_path / "state", COPY_ID)
    session.open(init, now=0.0)
    fill(session, init, data)
    with pytest.raises(AssemblyError, match="changed while it was copied"):
        session.assemble(init, tmp_path / "f")
    assert list(tmp_path.glob("*f*")) == []


def test_missing_chunks_are_named_instead_of_assembled(tmp_path: Path) -> None:
    init = make_init(b"abcdefghij")
    session = DstSession(tmp_path, COPY_ID)
    session.open(init, now=0.0)
    assert session.assemble(init, tmp_path / "f") == [0, 1, 2]


def test_sweep_removes_abandoned_sessions_and_old_results(tmp_path: Path) -> None:
    old = DstSession(tmp_path, "1" * 32)
    old.open(make_init(b"abc", copy_id="1" * 32, max_time=10), now=0.0)
    running = DstSession(tmp_path, "2" * 32)
    running.open(make_init(b"abc", copy_id="2" * 32, max_time=10), now=0.0)
    fresh = DstSession(tmp_path, "3" * 32)
    fresh.open(make_init(b"abc", copy_id="3" * 32, max_time=10**6), now=0.0)
    done = DstSession(tmp_path, "4" * 32)
    done.finish(True, "x", now=0.0)
    being_created = tmp_path / ("dst-" + "5" * 32)
    being_created.mkdir()  # a driver is about to write its init.json
    removed = sweep_destination(tmp_path, now=700_000.0, active={"2" * 32})
    assert sorted(removed) == ["1" * 32, "4" * 32]
    assert running.folder.exists() and fresh.folder.exists()
    assert done.result() is None
    os.utime(being_created, (1.0, 1.0))
    assert being_created.exists()
    assert sweep_destination(tmp_path, now=700_000.0, active={"2" * 32}) == ["5" * 32]
