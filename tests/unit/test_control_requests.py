"""The control socket refuses bad values naming the field, and survives what it cannot answer.

A request with a number out of range or text that is not valid Unicode (a lone surrogate,
``"\\ud800"`` in JSON) is answered ``{"ok": false}`` naming the field, the value and what is
allowed; an unexpected failure while answering one request is answered as an error to that
client and logged with its traceback. Either way the ``node/control`` process keeps running
and other clients are served.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, cast

import pytest
import trio

from steward_otp.control import server as control_server
from steward_otp.control.client import control_request, control_stream
from steward_otp.control.requests import Inspectable
from steward_otp.control.server import ControlServer
from steward_otp.node import Node
from tests.unit.handlers.loopback_nodes import LoopbackNet

HUGE = 10**400
"""An integer no float can hold."""
SURROGATE = "\ud800"
"""A lone surrogate: what the JSON text "\\ud800" decodes to."""
STATES = "queued, in_flight, failed, cancelled"


async def first_line(path: Path, request: Mapping[str, Any]) -> dict[str, Any]:
    """The first answer line of a request, streaming or not."""
    if request.get("op") != "replies":
        return await control_request(path, request)
    async for line in control_stream(path, request):
        return line
    raise AssertionError("the control socket closed without an answer")


def control_restarts(node: Node) -> int:
    entry = node.snapshot().find("node/control")
    assert entry is not None and entry.state == "running"
    return entry.restart_count


@pytest.mark.parametrize(
    ("request_", "error"),
    [
        (
            {"op": "audit", "since": HUGE},
            f'field "since": value {HUGE!r}; allowed: a wall time in seconds (a finite number)',
        ),
        (
            {"op": "replies", "ids": ["a"], "timeout": HUGE},
            f'field "timeout": value {HUGE!r}; allowed: seconds, 0 to 604800',
        ),
        (
            {"op": "replies", "ids": ["a"], "quiet": HUGE},
            f'field "quiet": value {HUGE!r}; allowed: seconds, 0 to 3600',
        ),
        (
            {"op": "replies", "ids": ["a"], "afterSeq": 2**63},
            f'field "afterSeq": value {2**63}; allowed: a seq from audit.end '
            f"(an integer from 0 to {2**63 - 1})",
        ),
        (
            {"op": "replies", "ids": ["a", SURROGATE]},
            "field \"ids[1]\": value '\\ud800' contains U+D800 at position 0, a lone "
            "surrogate: not valid Unicode text; allowed: a message id (a non-empty string "
            "of valid text)",
        ),
        *(
            (
                {"op": op, field: SURROGATE},
                f"field \"{field}\": value '\\ud800' contains U+D800 at position 0, a lone "
                "surrogate: not valid Unicode text; allowed: a non-empty string of valid text",
            )
            for op, field in [
                ("queue.cancel", "id"),
                ("queue.retry", "id"),
                ("queue.purge", "toNode"),
                ("queue.ls", "toNode"),
                ("audit", "id"),
                ("audit", "node"),
            ]
        ),
        (
            {"op": "queue.ls", "states": ["queued", "bogus"]},
            f"field \"states[1]\": value 'bogus' is not an outbox state; allowed: {STATES}",
        ),
    ],
)
async def test_a_bad_value_is_refused_naming_the_field_and_the_control_process_lives_on(
    tmp_path: Path, request_: dict[str, Any], error: str
) -> None:
    central = LoopbackNet(tmp_path).node("central")
    path = central.config.control_socket_path
    async with central:
        for _ in range(3):  # what used to stop the daemon: several in a row
            assert await first_line(path, request_) == {"ok": False, "error": error}
        assert (await control_request(path, {"op": "status"}))["ok"] is True
        assert control_restarts(central) == 0


async def test_purge_with_an_invalid_node_name_purges_nothing(tmp_path: Path) -> None:
    central = LoopbackNet(tmp_path).node("central")
    path = central.config.control_socket_path
    async with central:
        answer = await control_request(path, {"op": "queue.purge", "toNode": "a" + SURROGATE})
        assert answer["ok"] is False and answer["error"].startswith('field "toNode"')
        assert await control_request(path, {"op": "queue.purge"}) == {"ok": True, "purged": 0}


# ----------------------------------------------------------------- the backstop


class FailingStore:
    """A store whose ``cancel`` fails unexpectedly; the audit log is empty."""

    async def cancel(self, msg_id: str) -> bool:
        raise RuntimeError(f"the disk fell off while cancelling {msg_id}")

    async def audit_log(self, **_: object) -> list[object]:
        return []


class FailingNode:
    store = FailingStore()


async def broken_stream(
    node: Inspectable, request: Mapping[str, Any]
) -> AsyncIterator[dict[str, Any]]:
    async def events() -> AsyncIterator[dict[str, Any]]:
        yield {"event": "waiting", "pending": 1}
        raise RuntimeError("the follower broke")

    return events()


async def test_an_unexpected_failure_is_answered_to_its_client_and_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(control_server.STREAMS, "replies", broken_stream)
    path = tmp_path / "c.sock"
    server = ControlServer(path, cast(Inspectable, FailingNode()))
    caplog.set_level(logging.ERROR, logger="steward_otp.control.server")
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)

        # One connection: the failing request is answered, the next one too.
        stream = await trio.open_unix_socket(str(path))
        async with stream:
            await stream.send_all(b'{"op": "queue.cancel", "id": "x"}\n{"op": "audit.end"}\n')
            received = b""
            with trio.fail_after(10):
                while received.count(b"\n") < 2:
                    received += await stream.receive_some(65536)
        failed, after = (json.loads(line) for line in received.splitlines())
        assert failed == {
            "ok": False,
            "error": "the node could not answer op 'queue.cancel': RuntimeError: the disk "
            "fell off while cancelling x (see the node's log)",
        }
        assert after == {"ok": True, "seq": 0}

        # A stream that breaks: its failure is its last line.
        lines = [line async for line in control_stream(path, {"op": "replies", "ids": ["a"]})]
        assert lines == [
            {"ok": True, "event": "waiting", "pending": 1},
            {
                "ok": False,
                "error": "the node could not answer op 'replies': RuntimeError: the follower "
                "broke (see the node's log)",
            },
        ]

        # Another client is still served.
        assert await control_request(path, {"op": "audit.end"}) == {"ok": True, "seq": 0}
        nursery.cancel_scope.cancel()

    logged = [r for r in caplog.records if r.exc_info is not None]
    assert [str(r.exc_info[1]) for r in logged if r.exc_info] == [
        "the disk fell off while cancelling x",
        "the follower broke",
    ]
