"""The central error log writes REQErrorLog lines from known nodes only (issue 17).

Known: the central error logger itself and the central node, nodes that said hello (now or
in an earlier run: their hello folder), nodes with a key in the trust store, and the nodes
listed in ``error_log_known_nodes`` (``*``: any). Other senders' lines are dropped and
counted, and one line per window says so.
"""

from __future__ import annotations

from pathlib import Path

from steward_otp.error_kernel import ErrorLogSenders, KnownNodes
from steward_otp.message import Message
from steward_otp.timers import hello_message
from tests.unit.handlers.loopback_nodes import LoopbackNet, file_text, wait_for


def _known(tmp_path: Path, **kw: object) -> KnownNodes:
    options: dict[str, object] = {
        "own": ("central",),
        "hellos": {},
        "hello_dir": tmp_path / "hello-messages",
    }
    options.update(kw)
    return KnownNodes(**options)  # type: ignore[arg-type]


def test_a_node_is_known_by_name_hello_hello_folder_key_or_configuration(tmp_path: Path) -> None:
    hellos: dict[str, float] = {}
    known = _known(
        tmp_path,
        configured={"listed"},
        hellos=hellos,
        trusted=lambda node: node == "keyed",
    )
    (tmp_path / "hello-messages" / "earlier").mkdir(parents=True)
    assert known("central")
    assert known("listed")
    assert known("keyed")
    assert known("earlier")
    assert not known("stranger")
    hellos["stranger"] = 1.0
    assert known("stranger")
    assert not known("..")  # never looked up as a folder
    assert not known("a/../../etc")


def test_a_star_makes_every_node_known(tmp_path: Path) -> None:
    assert _known(tmp_path, configured={"*"})("anybody")


def test_unknown_senders_are_dropped_counted_and_reported_once_a_window(tmp_path: Path) -> None:
    now = [0.0]
    lines: list[str] = []
    senders = ErrorLogSenders(
        _known(tmp_path, configured={"ship1"}), lines.append, window=60.0, clock=lambda: now[0]
    )
    assert senders.admit("ship1")
    assert not senders.admit("forged1")
    assert len(lines) == 1
    assert "dropped 1 REQErrorLog message(s) from node(s) it does not know: 'forged1'" in lines[0]
    assert "error_log_known_nodes" in lines[0]
    for i in range(5000):
        now[0] = i / 100  # 50 s of garbage, every message from a new name
        assert not senders.admit(f"garbage{i}\x1b[2J")
    assert len(lines) == 1  # nothing more inside the window
    now[0] = 61.0
    assert not senders.admit("late")
    assert len(lines) == 2
    assert "dropped 5001 REQErrorLog message(s) in the last 61 s" in lines[1]
    assert "'garbage0\\x1b[2J'" in lines[1]  # escaped, never raw
    assert "and 995+ more" in lines[1]
    assert "(5002 in all)" in lines[1]
    assert senders.dropped == 5002
    assert senders.admit("ship1")


def _error_line(text: str) -> Message:
    return Message(
        to_node="errorCentral",
        method="REQErrorLog",
        directory="errorLog",
        file_name="error.log",
        data=f"{text}\n".encode(),
        ack_timeout=2,
        retries=3,
        reply_method="REQNone",
    )


async def test_the_central_error_log_takes_a_nodes_lines_once_it_said_hello(
    net: LoopbackNet,
) -> None:
    central = net.node("central", error_log_known_nodes="")
    ship1 = net.node("ship1", error_log_known_nodes="")
    async with central, ship1:
        await ship1.submit([_error_line("before hello")])
        await wait_for(lambda: "does not know: 'ship1'" in file_text(net.error_log()))
        assert central.error_log_senders.dropped == 1

        await ship1.submit([hello_message("ship1", "central", ack_timeout=2)])
        await wait_for(lambda: "ship1" in central.last_hellos())
        await ship1.submit([_error_line("after hello")])
        await wait_for(lambda: "after hello" in file_text(net.error_log()))
    assert "before hello" not in file_text(net.error_log())
    assert central.error_log_senders.dropped == 1
