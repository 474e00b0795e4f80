"""File copy: REQCopySrc on the source node, the file arriving on the other node.

A copy's answers go to ``<fileName>.copyreply`` / ``<fileName>.copyerror`` (Steward's names),
not to the ``.error`` file other methods use.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from steward_otp.handlers.base import HandlerError
from steward_otp.handlers.copy.protocol import (
    Chunk,
    Result,
    Want,
    copy_id_for,
    notice_args,
)
from steward_otp.handlers.copy.session_supervisor import CopySessions
from steward_otp.handlers.copy.source import PROGRESS_INTERVAL, CopySource
from steward_otp.handlers.copy.target import CopyTarget
from steward_otp.message import Message
from steward_otp.node import Node
from tests.unit.handlers.fakes import FakeServices, context, request
from tests.unit.handlers.loopback_nodes import (
    LoopbackNet,
    file_text,
    message,
    subscriber_restarts,
    wait_for_text,
)
from tests.unit.supervisors.probes import running

LATE_COPY = "0123456789abcdef0123456789abcdef"  # a copy id no REQCopyDst started here
CONTENT = b"0123456789abcdef-tail"  # 21 bytes: 6 chunks of 4 (the last one 1 byte)


def source_file(home: Path, data: bytes = CONTENT) -> Path:
    path = home / "data" / "files" / "a.bin"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def copy_request(*args: str) -> Message:
    """REQCopySrc from central to ship1 (the source); answers in data/out/ship1/ on central."""
    return request("REQCopySrc", *args, method_timeout=30)


def state_files(home: Path) -> list[str]:
    return sorted(p.name for p in (home / "var" / "copy").glob("*"))


# ----------------------------------------------------------------- the handlers, directly


async def test_copy_src_hashes_the_file_tells_the_destination_and_the_requester(
    tmp_path: Path,
) -> None:
    services = FakeServices(tmp_path)
    source = source_file(tmp_path)
    msg = copy_request("files/a.bin", "central", "incoming/a.bin", "4", "20")
    assert await CopySource().copy_src(context(services, msg, seconds=30), msg) is None

    start, started = services.submitted
    assert (start.method, start.to_node, start.reply_method) == ("REQCopyDst", "central", "REQNone")
    init = json.loads(start.data)
    copy_id = copy_id_for(msg.id)
    assert init["copy_id"] == copy_id
    assert (init["src_path"], init["dst_path"]) == (str(source), "incoming/a.bin")
    assert (init["size"], init["chunk_size"], init["max_time"]) == (21, 4, 20)
    assert init["sha256"] == hashlib.sha256(CONTENT).hexdigest()

    assert (started.to_node, started.file_name) == ("central", "out.txt.copyreply")
    assert started.data.decode() == (
        f"info: copy {copy_id}: started: ship1:{source} -> central:incoming/a.bin, "
        f"21 bytes in 6 chunks of 4 bytes, sha256 {init['sha256']}\n"
    )
    assert state_files(tmp_path) == [f"src-{copy_id}.json"]


async def test_copy_src_serves_the_chunks_wanted_and_reports_the_end(tmp_path: Path) -> None:
    services = FakeServices(tmp_path)
    source = source_file(tmp_path)
    source_side = CopySource()
    msg = copy_request("files/a.bin", "central", "incoming/a.bin", "4")
    await source_side.copy_src(context(services, msg, seconds=30), msg)
    copy_id = copy_id_for(msg.id)
    services.submitted.clear()

    want = request("REQSUBCopySrc", *notice_args(Want(copy_id, (0, 5))), reply_method="REQNone")
    assert await source_side.sub_src(context(services, want), want) is None
    chunks = services.submitted
    assert [(m.method, m.method_args[2], m.data) for m in chunks] == [
        ("REQSUBCopyDst", "0", b"0123"),
        ("REQSUBCopyDst", "5", b"l"),
    ]
    assert chunks[0].method_args[3] == hashlib.sha256(b"0123").hexdigest()
    services.submitted.clear()

    done = request(
        "REQSUBCopySrc",
        *notice_args(Result(copy_id, True, "/dst/incoming/a.bin")),
        reply_method="REQNone",
    )
    await source_side.sub_src(context(services, done), done)
    [reply] = services.submitted
    assert reply.file_name == "out.txt.copyreply"
    assert reply.data == f"copyDstDone,{source},/dst/incoming/a.bin\n".encode()
    assert state_files(tmp_path) == []
    # A second result for the same copy is ignored.
    await source_side.sub_src(context(services, done), done)
    assert len(services.submitted) == 1


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (("files/a.bin", "central"), 'field "methodArgs": value'),
        (("../a.bin", "central", "x"), "field \"methodArgs[0] (srcPath)\": value '../a.bin' "),
        (("files/a.bin", "central", "../../etc/x"), 'contains ".."'),
        (("files/a.bin", "central", "x", "2000000"), 'field "methodArgs[3]" (chunkSize)'),
        (("files/a.bin", "no/such", "x"), 'field "methodArgs[1]" (dstNode)'),
        (("files/missing.bin", "central", "x"), "cannot read "),
    ],
)
async def test_a_bad_copy_request_is_answered_in_the_copyerror_file(
    tmp_path: Path, args: tuple[str, ...], complaint: str
) -> None:
    services = FakeServices(tmp_path)
    source_file(tmp_path)
    msg = copy_request(*args)
    assert await CopySource().copy_src(context(services, msg, seconds=30), msg) is None
    [reply] = services.submitted
    assert (reply.to_node, reply.file_name) == ("central", "out.txt.copyerror")
    assert reply.data.decode().startswith("error: ")
    assert complaint in reply.data.decode()
    assert services.reported("error") == [f"error: REQCopySrc: {reply.data.decode()[7:-1]}"]
    assert state_files(tmp_path) == []


async def test_a_bad_copy_request_too_large_to_answer_is_reported_and_crashes_nothing(
    tmp_path: Path,
) -> None:
    """A request that alone fills a message (a huge ``previousMessage``) cannot be answered
    within the broker's limit: the failure is reported, the reply is left out, the handler
    does not crash."""
    services = FakeServices(tmp_path)
    huge = Message(to_node="ship1", from_node="central", method="REQPing", data=b"x" * 1_044_200)
    msg = attrs.evolve(copy_request("files/a.bin"), previous_message=huge)
    assert await CopySource().copy_src(context(services, msg, seconds=30), msg) is None
    assert services.submitted == []
    [report] = services.reported("error")
    assert report.startswith('error: REQCopySrc: field "methodArgs"')


@pytest.mark.parametrize(
    ("args", "from_node", "complaint"),
    [
        (("want", "nothex"), "central", 'copy protocol: field "methodArgs": value'),
        (("want", "0" * 32, "x"), "central", "chunk index 'x' is not a non-negative integer"),
        (("chunk", "{id}", "0", "a" * 64), "central", "'chunk' is not for a source"),
        (("want", "{id}", "0"), "intruder", "from 'intruder' refused: only 'central' takes part"),
    ],
)
async def test_a_bad_protocol_message_to_the_source_is_a_handler_error(
    tmp_path: Path, args: tuple[str, ...], from_node: str, complaint: str
) -> None:
    services = FakeServices(tmp_path)
    source_file(tmp_path)
    source_side = CopySource()
    msg = copy_request("files/a.bin", "central", "incoming/a.bin", "4")
    await source_side.copy_src(context(services, msg, seconds=30), msg)
    copy_id = copy_id_for(msg.id)
    services.submitted.clear()
    notice = request(
        "REQSUBCopySrc",
        *(a.format(id=copy_id) for a in args),
        from_node=from_node,
        reply_method="REQNone",
    )
    with pytest.raises(HandlerError) as raised:
        await source_side.sub_src(context(services, notice), notice)
    assert complaint in str(raised.value)
    assert services.submitted == []


# ----------------------------------------------------------------- two nodes, end to end


async def test_a_file_on_ship1_is_copied_to_central_which_asked_for_it(
    net: LoopbackNet, pair: tuple[Node, Node]
) -> None:
    central, ship1 = pair
    data = random.Random(7).randbytes(5000)
    source = source_file(net.home("ship1"), data)
    target = net.data("central") / "incoming" / "a.bin"
    reply = net.result("copies", "a.log.copyreply")
    async with central, ship1:
        args = ["files/a.bin", "central", "incoming/a.bin", "1000", "20"]
        await central.submit(
            [message("REQCopySrc", args, directory="copies", file_name="a.log", method_timeout=30)]
        )
        text = await wait_for_text(reply, "copyDstDone")
    assert target.read_bytes() == data
    assert f"copyDstDone,{source},{target}\n" in text
    assert "5000 bytes in 5 chunks of 1000 bytes" in text
    assert not reply.with_name("a.log.copyerror").exists()


async def test_a_copy_that_would_leave_the_data_folder_is_refused_and_copies_go_on(
    net: LoopbackNet, pair: tuple[Node, Node]
) -> None:
    central, ship1 = pair
    source_file(net.home("ship1"))
    error = net.result("out", "out.txt.copyerror")
    reply = net.result("out", "out.txt.copyreply")
    async with central, ship1:
        await central.submit([message("REQCopySrc", ["../secret", "central", "x"])])
        text = await wait_for_text(error, 'contains ".."')
        assert text.startswith("error: field \"methodArgs[0] (srcPath)\": value '../secret'")

        await central.submit([message("REQCopySrc", ["files/a.bin", "central", "in/a.bin", "8"])])
        await wait_for_text(reply, "copyDstDone")
        assert (net.data("central") / "in" / "a.bin").read_bytes() == CONTENT
        assert subscriber_restarts(ship1, "REQCopySrc") == 0
    assert not net.result("out", "out.txt.error").exists()
    assert "copyDstDone" not in file_text(error)


def own_folder_refusal(field: str, value: str, home: Path, own: str) -> str:
    """The error text of a copy path that leads into the node's own folder ``own``."""
    return (
        f'field "{field}": value {value!r} leads into {home / own}, the node\'s own folder; '
        f"allowed: any folder but {home / 'etc'}, {home / 'var'}, {home / 'tmp'}"
    )


@pytest.mark.parametrize("own", ["etc", "var", "tmp"])
async def test_a_copy_into_the_destination_node_s_own_folders_is_refused(
    net: LoopbackNet, pair: tuple[Node, Node], own: str
) -> None:
    central, ship1 = pair
    source_file(net.home("ship1"))
    error = net.result("out", "out.txt.copyerror")
    reply = net.result("out", "out.txt.copyreply")
    home = net.home("central")
    # Also through a link in the data folder that leads into the own folder.
    (net.data("central")).mkdir(parents=True, exist_ok=True)
    (net.data("central") / "sneaky").symlink_to(home / own, target_is_directory=True)
    async with central, ship1:
        for n, dst in enumerate([str(home / own / "x"), "sneaky/y"]):
            await central.submit([message("REQCopySrc", ["files/a.bin", "central", dst])])
            text = await wait_for_text(error, f"value {dst!r}")
            assert text.startswith("error: copy ")
            assert own_folder_refusal("methodArgs[2] (dstPath)", dst, home, own) in text
            assert text.count("leads into") == n + 1
        assert not (home / own / "x").exists() and not (home / own / "y").exists()

        await central.submit([message("REQCopySrc", ["files/a.bin", "central", "in/a.bin"])])
        await wait_for_text(reply, "copyDstDone")
        assert (net.data("central") / "in" / "a.bin").read_bytes() == CONTENT
        assert subscriber_restarts(central, "REQCopyDst") == 0


@pytest.mark.parametrize("own", ["etc", "var", "tmp"])
async def test_a_copy_from_the_source_node_s_own_folders_is_refused(
    net: LoopbackNet, pair: tuple[Node, Node], own: str
) -> None:
    central, ship1 = pair
    source_file(net.home("ship1"))
    error = net.result("out", "out.txt.copyerror")
    reply = net.result("out", "out.txt.copyreply")
    home = net.home("ship1")
    (home / own).mkdir(parents=True, exist_ok=True)
    (home / own / "secret").write_bytes(b"private key")
    # Also through a link in the data folder that leads into the own folder.
    (net.data("ship1") / "sneaky").symlink_to(home / own, target_is_directory=True)
    async with central, ship1:
        for n, src in enumerate([str(home / own / "secret"), "sneaky/secret"]):
            await central.submit([message("REQCopySrc", [src, "central", f"in/{n}"])])
            text = await wait_for_text(error, f"value {src!r}")
            assert own_folder_refusal("methodArgs[0] (srcPath)", src, home, own) in text
            assert text.count("leads into") == n + 1

        await central.submit([message("REQCopySrc", ["files/a.bin", "central", "in/a.bin"])])
        await wait_for_text(reply, "copyDstDone")
        assert (net.data("central") / "in" / "a.bin").read_bytes() == CONTENT
        assert subscriber_restarts(ship1, "REQCopySrc") == 0
    assert not (net.data("central") / "in" / "0").exists()
    assert not (net.data("central") / "in" / "1").exists()


async def test_the_source_tells_the_requester_how_far_a_copy_is(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    services = FakeServices(tmp_path)
    source_file(tmp_path)
    source_side = CopySource()
    msg = copy_request("files/a.bin", "central", "incoming/a.bin", "4")
    await source_side.copy_src(context(services, msg, seconds=30), msg)
    copy_id = copy_id_for(msg.id)
    services.submitted.clear()

    def want(*indices: int) -> Message:
        return request(
            "REQSUBCopySrc", *notice_args(Want(copy_id, indices)), reply_method="REQNone"
        )

    first = want(0, 1)
    await source_side.sub_src(context(services, first), first)
    assert [m.method for m in services.submitted] == ["REQSUBCopyDst"] * 2  # no report yet
    assert source_side.info()["copies"] == {
        copy_id: {"chunks_sent": 2, "chunks": 6, "bytes_per_second": 0}
    }

    await trio.sleep(PROGRESS_INTERVAL)
    again = want(1, 2, 3)  # chunk 1 asked for again: counted once
    await source_side.sub_src(context(services, again), again)
    [progress] = [m for m in services.submitted if m.file_name == "out.txt.copyreply"]
    assert progress.to_node == "central"
    assert progress.data.decode() == (f"info: copy {copy_id}: 4/6 chunks sent (66 %), 0.00 MB/s\n")
    assert progress.id.endswith(f"copy-{copy_id}-progress-4")

    done = request(
        "REQSUBCopySrc", *notice_args(Result(copy_id, True, "/dst/a.bin")), reply_method="REQNone"
    )
    await source_side.sub_src(context(services, done), done)
    assert source_side.info() == {"copies": {}}


async def test_a_copy_under_way_shows_in_the_tree_of_both_nodes(tmp_path: Path) -> None:
    net = LoopbackNet(tmp_path)
    central, ship1 = net.node("central"), net.node("ship1")
    source_file(net.home("ship1"), b"x" * 2_000_000)
    seen: dict[str, dict[str, Any]] = {}

    def copies(node: Node, method: str) -> dict[str, Any]:
        for child in node.snapshot().walk():
            if child.path == f"node/inbound/{method}":
                return dict(child.info.get("handler", {}).get("copies", {}))
        return {}

    async with central, ship1:
        await central.submit(
            [
                message(
                    "REQCopySrc", ["files/a.bin", "central", "in/a.bin", "16384"], to_node="ship1"
                )
            ]
        )
        with trio.fail_after(30):
            while not (seen.get("dst") and seen.get("src")):
                seen["dst"] = seen.get("dst") or copies(central, "REQCopyDst")
                seen["src"] = seen.get("src") or copies(ship1, "REQSUBCopySrc")
                await trio.sleep(0.01)
        target = net.data("central") / "in" / "a.bin"
        with trio.fail_after(30):
            while not (target.exists() and target.stat().st_size == 2_000_000):
                await trio.sleep(0.05)
    [dst] = seen["dst"].values()
    assert dst["from"] == "ship1" and dst["chunks"] == 123
    [src] = seen["src"].values()
    assert src["chunks"] == 123


async def test_a_copy_runs_as_a_child_of_copies_and_is_gone_once_it_ends(tmp_path: Path) -> None:
    net = LoopbackNet(tmp_path)
    central, ship1 = net.node("central"), net.node("ship1")
    source_file(net.home("ship1"), b"y" * 1_000_000)
    reply = net.result("copies", "b.log.copyreply")

    def sessions(node: Node) -> dict[str, dict[str, object]]:
        [copies] = [c for c in node.snapshot().walk() if c.path == "node/copies"]
        return {child.path: dict(child.info) for child in copies.children}

    async with central, ship1:
        args = ["files/a.bin", "central", "in/b.bin", "16384"]
        request = message(
            "REQCopySrc", args, to_node="ship1", directory="copies", file_name="b.log"
        )
        [request_id] = await central.submit([request])
        seen: dict[str, dict[str, object]] = {}
        with trio.fail_after(30):
            # The session is started first, then given the pull: wait for the pull. A child
            # caught while it starts has no info yet.
            while not any(info.get("pulling") for info in seen.values()):
                seen = sessions(central)
                await trio.sleep(0.01)
        await wait_for_text(reply, "copyDstDone", timeout=30)
        with trio.fail_after(30):
            while sessions(central):
                await trio.sleep(0.01)
    [(path, info)] = seen.items()
    assert path == f"node/copies/{copy_id_for(request_id)}"
    assert info["pulling"] is True
    assert sessions(ship1) == {}  # the source side runs no session


async def test_an_idle_copy_session_is_reaped_and_a_pulling_one_is_kept(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    source_services = FakeServices(tmp_path / "source")
    source_file(tmp_path / "source")
    msg = copy_request("files/a.bin", "central", "incoming/a.bin", "4", "-1")
    await CopySource().copy_src(context(source_services, msg, seconds=30), msg)
    [start] = [m for m in source_services.submitted if m.method == "REQCopyDst"]
    start = attrs.evolve(start, from_node="ship1", id="ship1:copy-1")
    # Nobody answers the pull's requests: it keeps waiting for the chunks.

    services = FakeServices(tmp_path / "target")
    sessions = CopySessions(idle_timeout=5.0)
    target = CopyTarget(sessions)
    late = request(
        "REQSUBCopyDst", *notice_args(Chunk(LATE_COPY, 0, "0" * 64)), reply_method="REQNone"
    )

    def children() -> list[str]:
        """The sessions running (not stopping)."""
        return sorted(
            child.id
            for child in sessions.supervisor.which_children()
            if child.state.value == "running"
        )

    async with running(sessions.supervisor), trio.open_nursery() as nursery:
        nursery.start_soon(target.copy_dst, context(services, start), start)
        # A chunk of a copy that never started here is ignored, its session left idle.
        assert await target.sub_dst(context(services, late), late) is None
        assert children() == sorted([LATE_COPY, copy_id_for(msg.id)])
        await trio.sleep(4.0)
        assert LATE_COPY in children()
        await trio.sleep(2.0)  # idle for 6 s: reaped; the pulling session stays
        assert children() == [copy_id_for(msg.id)]
        await trio.sleep(20.0)
        assert children() == [copy_id_for(msg.id)]
        assert sessions.pulling() == {copy_id_for(msg.id)}
        nursery.cancel_scope.cancel()
