"""``schedule: [interval, total]`` on any method, across two real nodes.

A scheduled message runs once when it arrives, then every ``interval`` seconds while fewer
than ``total`` seconds have passed; each run has its own methodTimeout and its own replies,
and the message is marked done on the receiving node when the schedule ends.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from steward_otp.message import Message
from steward_otp.node import Node
from steward_otp.store import AuditRecord
from tests.conftest import NatsServer
from tests.integration.local_http import local_http_server
from tests.nodes import file_text, node_config, wait_for

pytestmark = pytest.mark.integration


def scheduled(method: str, args: list[str], schedule: list[int], **fields: object) -> Message:
    settings: dict[str, object] = {
        "to_node": "ship1",
        "method": method,
        "method_args": args,
        "schedule": schedule,
        "directory": "scheduled",
        "file_name": "out.txt",
        "ack_timeout": 5,
        "retries": 3,
        "method_timeout": 10,
        "reply_method": "REQToFileAppend",
    }
    settings.update(fields)
    return Message(**settings)  # type: ignore[arg-type]


async def inbound_outcome(node: Node, msg_id: str) -> AuditRecord | None:
    """The inbound audit record of ``msg_id`` on ``node``: there once it is marked done."""
    records = [r for r in await node.store.audit_log(msg_id=msg_id) if r.direction == "in"]
    return records[-1] if records else None


async def wait_until_done(node: Node, msg_id: str, timeout: float = 20.0) -> AuditRecord:
    """Poll ``node``'s audit log until ``msg_id`` is marked done there."""
    with trio.fail_after(timeout):
        while (record := await inbound_outcome(node, msg_id)) is None:
            await trio.sleep(0.05)
    return record


async def test_a_scheduled_command_runs_now_then_every_interval_until_total(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    central = Node(node_config(tmp_path, "central", nats_server.url))
    ship1 = Node(node_config(tmp_path, "ship1", nats_server.url))
    out = tmp_path / "central" / "data" / "scheduled" / "ship1" / "out.txt"
    async with central, ship1:
        [msg_id] = await central.submit(
            [scheduled("REQCliCommand", ["bash", "-c", "echo run"], [1, 3])]
        )
        record = await wait_until_done(ship1, msg_id)
        assert record.outcome == "ok"
        # Runs at 0, 1 and 2 s: three, and no more once the schedule is done.
        await wait_for(lambda: file_text(out) == "run\nrun\nrun\n")


async def test_any_method_can_be_scheduled_each_run_with_its_own_reply(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    central = Node(node_config(tmp_path, "central", nats_server.url))
    ship1 = Node(node_config(tmp_path, "ship1", nats_server.url))
    out = tmp_path / "central" / "data" / "scheduled" / "ship1" / "out.txt"
    routes = {"/metrics": (200, b"up 1\n")}
    async with local_http_server(routes) as server, central, ship1:
        [msg_id] = await central.submit([scheduled("REQHttpGet", [server.url("/metrics")], [1, 2])])
        record = await wait_until_done(ship1, msg_id)
        assert record.outcome == "ok"
        assert server.count("/metrics") == 2
        await wait_for(lambda: file_text(out) == "up 1\nup 1\n")


async def test_each_run_has_its_own_method_timeout(nats_server: NatsServer, tmp_path: Path) -> None:
    central = Node(node_config(tmp_path, "central", nats_server.url))
    ship1 = Node(node_config(tmp_path, "ship1", nats_server.url))
    error = tmp_path / "central" / "data" / "scheduled" / "ship1" / "out.txt.error"
    async with central, ship1:
        [msg_id] = await central.submit(
            [scheduled("REQCliCommand", ["sleep", "30"], [1, 2], method_timeout=1)]
        )
        record = await wait_until_done(ship1, msg_id)
        assert record.outcome == "error"
        assert record.reason == "2 of 2 scheduled runs failed; last: timeout"
        await wait_for(lambda: file_text(error).count("method timed out: [sleep 30]") == 2)


async def test_an_interrupted_schedule_runs_again_when_the_node_is_back(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    central = Node(node_config(tmp_path, "central", nats_server.url))
    ship1 = Node(node_config(tmp_path, "ship1", nats_server.url))
    marks = tmp_path / "runs.txt"
    command = scheduled(
        "REQCliCommand", ["bash", "-c", f"echo run >> {marks}"], [1, 3600], reply_method="REQNone"
    )
    async with central:
        async with ship1:
            [msg_id] = await central.submit([command])
            await wait_for(lambda: file_text(marks).count("run") >= 2)
            assert await inbound_outcome(ship1, msg_id) is None
        # The node stopped: so did the schedule. Back again, it starts over.
        stopped_at = file_text(marks).count("run")
        async with Node(node_config(tmp_path, "ship1", nats_server.url)):
            await wait_for(lambda: file_text(marks).count("run") >= stopped_at + 2)


async def test_a_bad_schedule_from_another_node_is_an_error_reply(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    central = Node(node_config(tmp_path, "central", nats_server.url))
    ship1 = Node(node_config(tmp_path, "ship1", nats_server.url))
    error = tmp_path / "central" / "data" / "scheduled" / "ship1" / "out.txt.error"
    async with central, ship1:
        # Validation on input refuses this; a message straight from the outbox skips it.
        await central.submit([scheduled("REQCliCommand", ["true"], [0, 5])])
        await wait_for(lambda: 'field "schedule[0]": value 0' in file_text(error))
