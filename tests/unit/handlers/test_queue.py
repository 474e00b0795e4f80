"""Queue control as request methods: REQOpQueueList / Cancel / Retry / Purge."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import pytest

from steward_otp.control import server as control_server
from steward_otp.control.requests import Inspectable
from steward_otp.handlers.base import HandlerError
from steward_otp.handlers.queue import queue_handlers
from steward_otp.message import Message
from steward_otp.node import Node
from tests.unit.handlers.fakes import FakeServices, context, request
from tests.unit.handlers.loopback_nodes import (
    LoopbackNet,
    file_text,
    message,
    subscriber_restarts,
    wait_for,
    wait_for_text,
)

HELD = [
    {"id": "central:a", "toNode": "ghost", "method": "REQToFileAppend", "state": "queued"},
    {"id": "central:b", "toNode": "ghost", "method": "REQPing", "state": "failed"},
]


def control_node(request: Mapping[str, Any]) -> dict[str, Any]:
    """Answers as a node's control socket would, for a node holding ``HELD``."""
    op = request["op"]
    if op == "queue.ls":
        return {"ok": True, "messages": HELD}
    if op in ("queue.cancel", "queue.retry"):
        return {"ok": True, "done": request["id"] == "central:a"}
    if op == "queue.purge":
        return {"ok": True, "purged": 7}
    return {"ok": False, "error": f"unknown op {op!r}"}


def services_for(tmp_path: Path) -> FakeServices:
    return FakeServices(tmp_path, node_name="central", control_answer=control_node)


# ----------------------------------------------------------------- the handlers, directly


async def test_queue_list_replies_with_one_json_line_per_held_message(tmp_path: Path) -> None:
    services = services_for(tmp_path)
    queue_list, _, _, _ = queue_handlers(services)
    everything = request("REQOpQueueList")
    narrowed = request("REQOpQueueList", "ghost", "queued", "failed")
    star = request("REQOpQueueList", "*")
    answer = await queue_list(context(services, everything), everything)
    await queue_list(context(services, narrowed), narrowed)
    await queue_list(context(services, star), star)
    assert answer is not None
    assert [json.loads(line) for line in answer.decode().splitlines()] == HELD
    assert services.control_requests == [
        {"op": "queue.ls"},
        {"op": "queue.ls", "toNode": "ghost", "states": ["queued", "failed"]},
        {"op": "queue.ls"},
    ]


async def test_cancel_and_retry_say_per_id_what_happened(tmp_path: Path) -> None:
    services = services_for(tmp_path)
    _, queue_cancel, queue_retry, _ = queue_handlers(services)
    cancel = request("REQOpQueueCancel", "central:a", "central:zzz")
    retry = request("REQOpQueueRetry", "central:a", "central:zzz")
    assert await queue_cancel(context(services, cancel), cancel) == (
        b"cancelled: central:a\nnot active: central:zzz\n"
    )
    assert await queue_retry(context(services, retry), retry) == (
        b"queued again: central:a\nnot failed or cancelled: central:zzz\n"
    )
    assert [r["op"] for r in services.control_requests] == ["queue.cancel"] * 2 + [
        "queue.retry"
    ] * 2


async def test_purge_by_node_and_age(tmp_path: Path) -> None:
    services = services_for(tmp_path)
    _, _, _, queue_purge = queue_handlers(services)
    msg = request("REQOpQueuePurge", "ghost", "1.5")
    everything = request("REQOpQueuePurge", "*")
    assert await queue_purge(context(services, msg), msg) == b"purged 7\n"
    assert await queue_purge(context(services, everything), everything) == b"purged 7\n"
    assert services.control_requests == [
        {"op": "queue.purge", "toNode": "ghost", "olderThan": 1.5},
        {"op": "queue.purge"},
    ]


@pytest.mark.parametrize(
    ("method", "args", "complaint"),
    [
        ("REQOpQueueCancel", (), 'field "methodArgs": value [] names no message'),
        ("REQOpQueueRetry", (), 'field "methodArgs": value [] names no message'),
        (
            "REQOpQueueList",
            ("central", "bogusstate"),
            "field \"methodArgs[1]\": value 'bogusstate' is not an outbox state; "
            "allowed: queued, in_flight, failed, cancelled",
        ),
        (
            "REQOpQueueList",
            ("*", "failed", "bogus"),
            "field \"methodArgs[2]\": value 'bogus' is not an outbox state; "
            "allowed: queued, in_flight, failed, cancelled",
        ),
        (
            "REQOpQueuePurge",
            ("ghost", "soon"),
            "field \"methodArgs[1]\": value 'soon' is not a number; "
            'allowed: an age in seconds, a finite number >= 0, e.g. "3600"',
        ),
        *(
            (
                "REQOpQueuePurge",
                ("ghost", age),
                f'field "methodArgs[1]": value {age!r} is not an age; '
                'allowed: an age in seconds, a finite number >= 0, e.g. "3600"',
            )
            for age in ("-5", "-0.5", "nan", "inf", "-inf", "1e400")
        ),
    ],
)
async def test_bad_arguments_are_handler_errors(
    tmp_path: Path, method: str, args: tuple[str, ...], complaint: str
) -> None:
    services = services_for(tmp_path)
    handlers = {h.name: h for h in queue_handlers(services)}
    msg = request(method, *args)
    with pytest.raises(HandlerError) as raised:
        await handlers[method](context(services, msg), msg)
    assert str(raised.value).startswith(complaint)
    assert services.control_requests == []


async def test_a_refused_control_request_is_a_handler_error_with_its_reason(
    tmp_path: Path,
) -> None:
    services = FakeServices(
        tmp_path,
        control_answer=lambda _: {"ok": False, "error": 'field "states": bad'},
    )
    queue_list, _, _, _ = queue_handlers(services)
    msg = request("REQOpQueueList", "ghost", "queued")
    with pytest.raises(HandlerError) as raised:
        await queue_list(context(services, msg), msg)
    assert str(raised.value) == 'field "states": bad'


# ----------------------------------------------------------------- two nodes, end to end


def held_for_ghost(text: str) -> Message:
    """A message central keeps trying to deliver to a node that is not there."""
    return Message(
        to_node="ghost",
        method="REQToFileAppend",
        directory="out",
        file_name="out.log",
        data=text.encode(),
        ack_timeout=1,
        retries=1000,
        reply_method="REQNone",
    )


def queue_op(method: str, *args: str, file_name: str) -> Message:
    """``method`` sent by ship1 to central; the answer lands in ship1's data/q/central/."""
    return message(method, args, to_node="central", directory="q", file_name=file_name)


async def test_queue_operations_are_answered_on_the_requesting_node(
    net: LoopbackNet, pair: tuple[Node, Node]
) -> None:
    central, ship1 = pair
    answers = net.data("ship1") / "q" / "central"
    async with central, ship1:
        ids = await central.submit([held_for_ghost(f"{i}\n") for i in range(3)])

        await ship1.submit([queue_op("REQOpQueueList", "ghost", file_name="ls.txt")])
        await wait_for(lambda: len(file_text(answers / "ls.txt").splitlines()) == 3, timeout=10)
        listed = [json.loads(line) for line in file_text(answers / "ls.txt").splitlines()]
        assert sorted(m["id"] for m in listed) == sorted(ids)
        assert {(m["toNode"], m["method"]) for m in listed} == {("ghost", "REQToFileAppend")}

        await ship1.submit([queue_op("REQOpQueueCancel", ids[0], file_name="cancel.txt")])
        await wait_for_text(answers / "cancel.txt", f"cancelled: {ids[0]}\n")

        await ship1.submit([queue_op("REQOpQueueRetry", ids[0], file_name="retry.txt")])
        await wait_for_text(answers / "retry.txt", f"queued again: {ids[0]}\n")

        await ship1.submit([queue_op("REQOpQueuePurge", "ghost", file_name="purge.txt")])
        await wait_for_text(answers / "purge.txt", "purged 3\n")
        assert await central.store.list_outbox(to_node="ghost") == []


async def test_a_purge_with_a_bad_age_is_an_error_reply_and_the_queue_still_answers(
    net: LoopbackNet, pair: tuple[Node, Node]
) -> None:
    central, ship1 = pair
    answers = net.data("ship1") / "q" / "central"
    async with central, ship1:
        [held] = await central.submit([held_for_ghost("x\n")])
        await ship1.submit([queue_op("REQOpQueuePurge", "ghost", "soon", file_name="purge.txt")])
        error = await wait_for_text(answers / "purge.txt.error", "is not a number")
        assert error == (
            "error: REQOpQueuePurge: field \"methodArgs[1]\": value 'soon' is not a number; "
            'allowed: an age in seconds, a finite number >= 0, e.g. "3600"\n'
        )
        assert [r.msg_id for r in await central.store.list_outbox(to_node="ghost")] == [held]

        await ship1.submit([queue_op("REQOpQueuePurge", "ghost", "0", file_name="purge.txt")])
        await wait_for_text(answers / "purge.txt", "purged 1\n")
        assert subscriber_restarts(central, "REQOpQueuePurge") == 0


@pytest.mark.parametrize("age", ["-5", "nan", "inf"])
async def test_a_purge_with_an_age_that_is_no_age_is_a_clear_error_reply(
    net: LoopbackNet, pair: tuple[Node, Node], age: str
) -> None:
    central, ship1 = pair
    error = net.data("ship1") / "q" / "central" / "purge.txt.error"
    async with central, ship1:
        await central.submit([held_for_ghost("x\n")])
        await ship1.submit([queue_op("REQOpQueuePurge", "ghost", age, file_name="purge.txt")])
        text = await wait_for_text(error, "REQOpQueuePurge")
        assert text == (
            f'error: REQOpQueuePurge: field "methodArgs[1]": value {age!r} is not an age; '
            'allowed: an age in seconds, a finite number >= 0, e.g. "3600"\n'
        )
        assert len(await central.store.list_outbox(to_node="ghost")) == 1  # nothing purged
        assert subscriber_restarts(central, "REQOpQueuePurge") == 0


# ----------------------------------------------------------------- the control answer


@pytest.mark.parametrize("older", [-5, -0.5, math.nan, math.inf, -math.inf, 10**400, True, "60"])
async def test_a_purge_request_with_an_age_that_is_no_age_is_refused_and_purges_nothing(
    net: LoopbackNet, older: object
) -> None:
    """What ``steward-otp queue purge --older-than`` and REQOpQueuePurge send."""
    central = net.node("central")
    async with central:
        await central.submit([held_for_ghost("x\n")])
        answer = await central.control({"op": "queue.purge", "olderThan": older})
        assert answer == {
            "ok": False,
            "error": f'field "olderThan": value {older!r}; allowed: seconds (a finite number >= 0)',
        }
        assert len(await central.store.list_outbox(to_node="ghost")) == 1
        assert await central.control({"op": "queue.purge", "olderThan": 0}) == {
            "ok": True,
            "purged": 1,
        }


async def test_a_value_the_store_refuses_is_an_error_answer_not_an_exception() -> None:
    """``control_server.answer`` never raises for a bad request, whatever layer refuses it."""

    class RefusingStore:
        async def purge(self, **filters: object) -> int:
            raise ValueError(f"older_than_seconds must be a finite number >= 0, got {filters}")

    class Node:
        store = RefusingStore()

    answer = await control_server.answer(cast(Inspectable, Node()), {"op": "queue.purge"})
    assert answer["ok"] is False
    assert answer["error"].startswith("older_than_seconds must be a finite number >= 0")
