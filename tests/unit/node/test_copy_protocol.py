"""The pure parts of the file copy: arguments, paths, records, messages, chunks, pull window."""

from __future__ import annotations

import json
import math
from pathlib import Path

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from steward_otp.handlers.copy.arguments import CopyArgsError, parse_copy_args, resolve_copy_path
from steward_otp.handlers.copy.plan import (
    MAX_WINDOW,
    MIN_WINDOW,
    ChunkPlan,
    PullWindow,
    chunk_digest,
    chunk_is_intact,
    window_for,
)
from steward_otp.handlers.copy.protocol import (
    MAX_CHUNK_SIZE,
    Abort,
    Chunk,
    CopyInit,
    ProtocolError,
    Result,
    Want,
    check_peer,
    copy_id_for,
    copy_reply,
    notice_args,
    parse_notice,
    protocol_retries,
)
from steward_otp.message import Message

COPY_ID = "0123456789abcdef0123456789abcdef"
SHA = "ab" * 32

# --------------------------------------------------------------------------- arguments


def test_defaults_follow_steward_and_the_method_timeout() -> None:
    request = parse_copy_args(["/srv/a.bin", "ship1", "b.bin"], method_seconds=9.2)
    assert (request.chunk_size, request.max_time, request.folder_permission) == (
        100_000,
        10,
        0o755,
    )
    assert parse_copy_args(["a", "n", "b"], method_seconds=math.inf).max_time == 0


def test_all_arguments_given() -> None:
    request = parse_copy_args(["a", "n", "b", "5000", "30", "0700"], method_seconds=1)
    assert (request.chunk_size, request.max_time, request.folder_permission) == (5000, 30, 0o700)
    assert parse_copy_args(["a", "n", "b", "", "-1", ""], method_seconds=5).max_time == 0


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["a", "n"], '"methodArgs"'),
        (["a", "n", "b", "1", "2", "3", "4"], '"methodArgs"'),
        (["", "n", "b"], "srcPath"),
        (["a", "two words", "b"], "dstNode"),
        (["a", "n", " "], "dstPath"),
        (["a", "n", "b", "0"], "chunkSize"),
        (["a", "n", "b", "lots"], "chunkSize"),
        (["a", "n", "b", str(MAX_CHUNK_SIZE + 1)], "chunkSize"),
        (["a", "n", "b", "10", "0"], "maxTotalCopyTime"),
        (["a", "n", "b", "10", "soon"], "maxTotalCopyTime"),
        (["a", "n", "b", "10", "10", "0999"], "folderPermission"),
        (["a", "n", "b", "10", "10", "17777"], "folderPermission"),
    ],
)
def test_bad_arguments_name_the_field_and_what_is_allowed(args: list[str], field: str) -> None:
    with pytest.raises(CopyArgsError) as caught:
        parse_copy_args(args, method_seconds=10)
    assert field in str(caught.value)
    assert "allowed" in str(caught.value)


def test_relative_paths_stay_in_the_data_folder_and_absolute_ones_are_kept() -> None:
    base = Path("/home/n/data")
    assert resolve_copy_path("in/x.bin", base, "dstPath") == base / "in" / "x.bin"
    assert resolve_copy_path("./x.bin", base, "dstPath") == base / "x.bin"
    assert resolve_copy_path("/srv/x.bin", base, "dstPath") == Path("/srv/x.bin")


@pytest.mark.parametrize("value", ["../x", "a/../../x", "/srv/../etc/passwd", "", ".", "a\0b"])
def test_paths_that_escape_or_name_nothing_are_refused(value: str) -> None:
    with pytest.raises(CopyArgsError, match="dstPath"):
        resolve_copy_path(value, Path("/home/n/data"), "dstPath")


@given(st.text(min_size=1), st.text(min_size=1))
def test_copy_ids_are_stable_hex_and_distinct_per_message(a: str, b: str) -> None:
    assert copy_id_for(a) == copy_id_for(a)
    assert len(copy_id_for(a)) == 32
    assert int(copy_id_for(a), 16) >= 0
    if a != b:
        assert copy_id_for(a) != copy_id_for(b)


@given(st.integers(1, 10**6), st.integers(1, 3600))
def test_protocol_retries_cover_the_whole_copy_time(max_time: int, ack: int) -> None:
    assert (protocol_retries(max_time, ack) + 1) * ack >= max_time


# --------------------------------------------------------------------------- records

inits = st.builds(
    CopyInit,
    copy_id=st.text("0123456789abcdef", min_size=32, max_size=32),
    src_node=st.text(min_size=1).filter(lambda t: "\0" not in t),
    dst_node=st.sampled_from(["ship1", "central", "a.b-c_d"]),
    src_path=st.sampled_from(["/srv/f.bin", "/tmp/ä ö.txt"]),
    dst_path=st.sampled_from(["in/f.bin", "/var/x"]),
    size=st.integers(0, 2**40),
    mtime_ns=st.integers(-(2**63), 2**63 - 1),
    chunk_size=st.integers(1, MAX_CHUNK_SIZE),
    sha256=st.text("0123456789abcdef", min_size=64, max_size=64),
    file_mode=st.integers(0, 0o7777),
    folder_permission=st.integers(0, 0o7777),
    max_time=st.integers(0, 10**6),
    ack_timeout=st.integers(1, 100),
    retries=st.integers(0, 1000),
)


@given(inits)
def test_init_record_round_trips_through_json(init: CopyInit) -> None:
    assert CopyInit.from_bytes(init.to_bytes()) == init


def valid_init_dict() -> dict[str, object]:
    return CopyInit(
        copy_id=COPY_ID,
        src_node="src",
        dst_node="dst",
        src_path="/a",
        dst_path="b",
        size=10,
        mtime_ns=1,
        chunk_size=4,
        sha256=SHA,
        file_mode=0o644,
        folder_permission=0o755,
        max_time=60,
        ack_timeout=5,
        retries=13,
    ).to_dict()


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"copy_id": "../../etc"}, '"copy_id"'),
        ({"sha256": "xyz"}, '"sha256"'),
        ({"chunk_size": MAX_CHUNK_SIZE + 1}, '"chunk_size"'),
        ({"size": -1}, '"size"'),
        ({"size": "10"}, '"size"'),
        ({"file_mode": 0o17777}, '"file_mode"'),
        ({"dst_path": ""}, '"dst_path"'),
    ],
)
def test_bad_init_records_are_refused_naming_the_field(
    change: dict[str, object], complaint: str
) -> None:
    value = valid_init_dict() | change
    with pytest.raises(ProtocolError, match=complaint):
        CopyInit.from_bytes(json.dumps(value).encode())


def test_init_records_that_are_not_objects_or_miss_fields_are_refused() -> None:
    with pytest.raises(ProtocolError, match="not JSON"):
        CopyInit.from_bytes(b"\xff")
    with pytest.raises(ProtocolError, match="JSON object"):
        CopyInit.from_bytes(b"[1, 2]")
    value = valid_init_dict()
    del value["sha256"]
    with pytest.raises(ProtocolError, match="missing fields: sha256"):
        CopyInit.from_bytes(json.dumps(value).encode())


notices = st.one_of(
    st.builds(
        Want, st.just(COPY_ID), st.lists(st.integers(0, 10**9), min_size=1, max_size=64).map(tuple)
    ),
    st.builds(Chunk, st.just(COPY_ID), st.integers(0, 10**11), st.just(SHA)),
    st.builds(Result, st.just(COPY_ID), st.booleans(), st.text()),
    st.builds(Abort, st.just(COPY_ID), st.text()),
)


@given(notices)
def test_protocol_notices_round_trip_through_method_args(notice: object) -> None:
    assert parse_notice(notice_args(notice)) == notice  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["want", "not-an-id", "1"],
        ["want", COPY_ID],
        ["want", COPY_ID, *(["1"] * (MAX_WINDOW + 1))],
        ["want", COPY_ID, "-1"],
        ["chunk", COPY_ID, "1", "nohash"],
        ["result", COPY_ID, "maybe", "x"],
        ["shout", COPY_ID, "x"],
    ],
)
def test_malformed_notices_are_refused(args: list[str]) -> None:
    with pytest.raises(ProtocolError):
        parse_notice(args)


def test_only_the_copys_peer_is_listened_to() -> None:
    check_peer(Message(from_node="src", method="REQSUBCopyDst"), "src", COPY_ID)
    with pytest.raises(ProtocolError, match="refused: only 'src'"):
        check_peer(Message(from_node="evil", method="REQSUBCopyDst"), "src", COPY_ID)


def test_replies_go_beside_the_file_name_with_a_stable_id() -> None:
    request = Message(
        id="op:1", from_node="op", to_node="src", method="REQCopySrc", file_name="c.log"
    )
    reply = copy_reply(request, "src", COPY_ID, "done\n", error=False, tag="done")
    error = copy_reply(request, "src", COPY_ID, "no\n", error=True, tag="failed")
    assert reply is not None and error is not None
    assert (reply.to_node, reply.file_name, reply.data) == ("op", "c.log.copyreply", b"done\n")
    assert error.file_name == "c.log.copyerror"
    assert reply.id == f"src:copy-{COPY_ID}-done"
    assert reply == copy_reply(request, "src", COPY_ID, "done\n", error=False, tag="done")
    silent = attrs.evolve(request, reply_method="REQNone")
    assert copy_reply(silent, "src", COPY_ID, "x", error=False, tag="done") is None


# --------------------------------------------------------------------------- chunks


@given(st.integers(0, 10**7), st.data())
def test_chunks_cover_the_file_exactly_once_in_order(size: int, draw: st.DataObject) -> None:
    chunk_size = draw.draw(st.integers(max(1, size // 500), 10**6))
    plan = ChunkPlan(size, chunk_size)
    position = 0
    for index in range(plan.count):
        offset, length = plan.span(index)
        assert offset == position
        assert 0 < length <= chunk_size
        position += length
    assert position == size
    with pytest.raises(IndexError):
        plan.span(plan.count)


@given(st.binary(min_size=1, max_size=200), st.data())
def test_any_damage_to_a_chunk_is_detected(data: bytes, draw: st.DataObject) -> None:
    plan = ChunkPlan(len(data), len(data))
    digest = chunk_digest(data)
    assert chunk_is_intact(plan, 0, data, digest)
    position = draw.draw(st.integers(0, len(data) - 1))
    flip = draw.draw(st.integers(1, 255))
    damaged = bytearray(data)
    damaged[position] ^= flip
    assert not chunk_is_intact(plan, 0, bytes(damaged), digest)
    assert not chunk_is_intact(plan, 0, data[:-1], chunk_digest(data[:-1]))
    assert not chunk_is_intact(plan, 1, data, digest)


@given(st.integers(1, 10**7))
def test_window_keeps_about_8_mib_in_flight(chunk_size: int) -> None:
    window = window_for(chunk_size)
    assert MIN_WINDOW <= window <= MAX_WINDOW
    assert window * chunk_size <= max(8 * 1024 * 1024, MIN_WINDOW * chunk_size)


# --------------------------------------------------------------------------- pull window


def test_a_resumed_pull_asks_only_for_missing_chunks_lowest_first() -> None:
    pull = PullWindow(10, 3, have={0, 1, 2, 4, 7})
    assert pull.next_requests() == [3, 5, 6]
    assert pull.next_requests() == []
    assert pull.received(5)
    assert pull.next_requests() == [8]
    pull.rejected(3)
    assert pull.next_requests() == [3]
    assert not pull.received(5)  # a duplicate changes nothing


def test_chunks_found_bad_later_are_fetched_again() -> None:
    pull = PullWindow(4, 4, have=range(4))
    assert pull.complete
    pull.lost([1, 3])
    assert not pull.complete
    assert pull.next_requests() == [1, 3]


actions = st.lists(
    st.tuples(
        st.sampled_from(["deliver", "duplicate", "damage", "drop", "stall", "restart"]),
        st.integers(0, 10**6),
    ),
    max_size=200,
)


@given(st.integers(0, 60), st.integers(1, 8), actions)
def test_pull_window_under_loss_damage_duplicates_and_restarts(
    count: int, window: int, script: list[tuple[str, int]]
) -> None:
    """Whatever the network does, the window stays bounded, asks only for missing chunks,
    and a reliable network afterwards completes the copy."""
    pull = PullWindow(count, window)
    in_flight: list[int] = []  # requested chunks the network may still deliver
    on_disk: set[int] = set()

    def ask() -> None:
        wanted = pull.next_requests()
        assert not set(wanted) & pull.have
        assert len(pull.outstanding) <= window
        in_flight.extend(wanted)

    for action, pick in script:
        ask()
        if action == "restart":
            pull = PullWindow(count, window, have=on_disk)
            continue
        if action == "stall":
            pull.forget_outstanding()
            continue
        if not in_flight:
            continue
        index = in_flight[pick % len(in_flight)]
        if action != "duplicate":
            in_flight.remove(index)
        if action in ("deliver", "duplicate"):
            on_disk.add(index)
            pull.received(index)
        elif action == "damage":
            pull.rejected(index)
        # "drop": the chunk is lost; only a stall (forget_outstanding) brings it back
    pull.forget_outstanding()
    for _ in range(count + 1):
        for index in pull.next_requests():
            on_disk.add(index)
            pull.received(index)
    assert pull.complete
    assert pull.have == on_disk == set(range(count))
