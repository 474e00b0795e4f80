"""Operator control of queued messages, remotely through request methods."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from steward_otp.delivery.sender import DEFAULT_WINDOW
from steward_otp.message import Message
from steward_otp.node import Node
from tests.conftest import NatsServer
from tests.integration.test_delivery import append_message
from tests.nodes import file_text, node_config, wait_for

pytestmark = pytest.mark.integration


async def ask(admin: Node, method: str, *args: str) -> str:
    """Send ``method`` to central from ``admin`` and return the reply's text."""
    await admin.submit(
        [
            Message(
                to_node="central",
                method=method,
                method_args=args,
                ack_timeout=5,
                retries=3,
                reply_method="REQTest",
                reply_ack_timeout=5,
                reply_retries=3,
            )
        ]
    )
    with trio.fail_after(20):
        reply = await admin.test_events.receive()
    return reply.data.decode()


async def test_cancel_and_purge_remotely_then_the_node_gets_exactly_what_was_left(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    central = Node(node_config(tmp_path, "central", nats_server.url))
    admin = Node(node_config(tmp_path, "admin", nats_server.url))
    out = tmp_path / "ship1" / "data" / "out" / "ship1" / "out.log"
    async with central, admin:
        old = await central.submit(
            [append_message("ship1", f"old{i}\n", retries=1000) for i in range(40)]
        )
        # The scenario: the first 40 are older than 3 s when the purge comes, the last 10
        # younger (the listing, cancel and purge between have 3 s, even on a loaded machine).
        await trio.sleep(4.0)
        await central.submit(
            [append_message("ship1", f"new{i}\n", retries=1000) for i in range(10)]
        )

        listed = [json.loads(line) for line in (await ask(admin, "REQOpQueueList")).splitlines()]
        assert len(listed) == 50 and {m["toNode"] for m in listed} == {"ship1"}

        answer = await ask(admin, "REQOpQueueCancel", *old[:10])
        assert answer.count("cancelled:") == 10

        answer = await ask(admin, "REQOpQueuePurge", "ship1", "3")
        assert answer == "purged 40\n"  # the 30 old queued ones and the 10 cancelled

        async with Node(node_config(tmp_path, "ship1", nats_server.url)):
            await wait_for(lambda: len(file_text(out).splitlines()) >= 10)
            await wait_for(lambda: not central.outbox.stats.delivered < 10)
    assert sorted(file_text(out).splitlines()) == sorted(f"new{i}" for i in range(10))


async def test_messages_cancelled_before_their_first_send_never_go_out(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """ship1 is away: central's Publisher sends a window of 512 into the void and holds the
    rest unsent. Messages cancelled in either group never run when ship1 comes up; the
    others run once each."""
    central = Node(node_config(tmp_path, "central", nats_server.url))
    out = tmp_path / "ship1" / "data" / "out" / "ship1" / "out.log"
    count = DEFAULT_WINDOW + 8
    async with central:
        ids = await central.submit(
            [append_message("ship1", f"{i}\n", retries=1000) for i in range(count)]
        )
        path = "node/outbound/publishers/ship1.REQToFileAppend"

        def held() -> tuple[int, int]:
            entry = central.snapshot().find(path)
            return (-1, -1) if entry is None else (entry.info["in_flight"], entry.info["queued"])

        await wait_for(lambda: held() == (DEFAULT_WINDOW, 8))
        cancelled = [0, 1, count - 3, count - 2]  # two sent into the void, two never sent
        for index in cancelled:
            assert await central.store.cancel(ids[index])
        async with Node(node_config(tmp_path, "ship1", nats_server.url)):
            await wait_for(lambda: len(file_text(out).splitlines()) >= count - 4, timeout=30)
            await wait_for(lambda: held() == (0, 0))
            await trio.sleep(1.5)  # nothing in the air runs anything later
    ran = [int(line) for line in file_text(out).splitlines()]
    assert sorted(ran) == [i for i in range(count) if i not in cancelled]


async def test_retry_requeues_a_failed_message(nats_server: NatsServer, tmp_path: Path) -> None:
    central = Node(node_config(tmp_path, "central", nats_server.url))
    admin = Node(node_config(tmp_path, "admin", nats_server.url))
    out = tmp_path / "ship1" / "data" / "out" / "ship1" / "out.log"
    async with central, admin:
        [msg_id] = await central.submit([append_message("ship1", "again\n", retries=0)])
        await wait_for(lambda: central.outbox.stats.failed == 1)
        async with Node(node_config(tmp_path, "ship1", nats_server.url)):
            assert await ask(admin, "REQOpQueueRetry", msg_id) == f"queued again: {msg_id}\n"
            await wait_for(lambda: file_text(out) == "again\n")


async def test_bad_arguments_get_a_clear_error_reply(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    central = Node(node_config(tmp_path, "central", nats_server.url))
    error = tmp_path / "central" / "data" / "q" / "central" / "q.log.error"
    async with central:
        await central.submit(
            [
                Message(
                    to_node="central",
                    method="REQOpQueuePurge",
                    method_args=["ship1", "soon"],
                    ack_timeout=5,
                    directory="q",
                    file_name="q.log",
                )
            ]
        )
        await wait_for(lambda: "methodArgs[1]" in file_text(error))
        assert "'soon' is not a number" in file_text(error)
