"""Operator methods on a node's processes: REQOpProcessList / Start / Stop."""

from __future__ import annotations

from pathlib import Path

import pytest

from steward_otp.handlers.base import HandlerError
from steward_otp.handlers.process import process_handlers
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

# ----------------------------------------------------------------- the handlers, directly


async def test_process_list_replies_with_the_tree(tmp_path: Path) -> None:
    services = FakeServices(tmp_path)
    process_list, _, _ = process_handlers(services)
    msg = request("REQOpProcessList")
    assert await process_list(context(services, msg), msg) == services.tree.encode()


async def test_process_start_starts_a_subscriber_and_reports_it(tmp_path: Path) -> None:
    services = FakeServices(tmp_path)
    _, process_start, _ = process_handlers(services)
    msg = request("REQOpProcessStart", "REQHello")
    status = await process_start(context(services, msg), msg)
    assert status == b"info: OpProcessStart: started REQHello\n"
    assert services.started == ["REQHello"]
    assert services.reported("info") == ["info: OpProcessStart: started REQHello"]


@pytest.mark.parametrize(
    ("args", "stopped"),
    [
        (("REQPing",), ("REQPing", "")),
        (("REQPing", "ship1", "subscriber"), ("REQPing", "ship1")),
        (("REQPing", "ship1", ""), ("REQPing", "ship1")),
    ],
)
async def test_process_stop_stops_the_named_subscriber(
    tmp_path: Path, args: tuple[str, ...], stopped: tuple[str, str]
) -> None:
    services = FakeServices(tmp_path)
    _, _, process_stop = process_handlers(services)
    msg = request("REQOpProcessStop", *args)
    status = await process_stop(context(services, msg), msg)
    assert status is not None and status.startswith(b"info: OpProcessStop: process stopped")
    assert services.stopped == [stopped]
    assert services.reported("info") == [status.decode().rstrip("\n")]


@pytest.mark.parametrize(
    ("method", "args", "complaint"),
    [
        (
            "REQOpProcessStart",
            (),
            'field "methodArgs": value [] names no method; '
            'allowed: ["method"], e.g. ["REQHttpGet"]',
        ),
        (
            "REQOpProcessStop",
            ("",),
            "field \"methodArgs\": value [''] names no method; "
            'allowed: ["method"] or ["method", "node", "subscriber"]',
        ),
        (
            "REQOpProcessStop",
            ("REQPing", "ship1", "publisher"),
            "field \"methodArgs[2]\": value 'publisher' cannot be stopped: "
            "publishers start on demand and stop when idle; allowed: subscriber",
        ),
    ],
)
async def test_bad_arguments_are_handler_errors_and_nothing_changes(
    tmp_path: Path, method: str, args: tuple[str, ...], complaint: str
) -> None:
    services = FakeServices(tmp_path)
    handler = {h.name: h for h in process_handlers(services)}[method]
    msg = request(method, *args)
    with pytest.raises(HandlerError) as raised:
        await handler(context(services, msg), msg)
    assert str(raised.value) == complaint
    assert services.started == []
    assert services.stopped == []
    assert services.reports == []


async def test_what_the_node_refuses_comes_back_as_the_handler_error(tmp_path: Path) -> None:
    services = FakeServices(tmp_path)
    _, process_start, _ = process_handlers(services)
    msg = request("REQOpProcessStart", "REQPing")  # runs already
    with pytest.raises(HandlerError, match="a subscriber for REQPing runs already"):
        await process_start(context(services, msg), msg)
    assert services.reports == []


# ----------------------------------------------------------------- two nodes, end to end


def operation(method: str, *args: str) -> Message:
    return message(method, args, directory="ops", file_name="ops.log")


async def test_process_operations_are_answered_on_the_requesting_node(
    net: LoopbackNet, pair: tuple[Node, Node]
) -> None:
    central, ship1 = pair
    out = net.result("ops", "ops.log")
    pong = net.result("ping", "ping.log")
    async with central, ship1:
        await central.submit([operation("REQOpProcessList")])
        tree = await wait_for_text(out, "REQOpProcessStop")
        assert tree.splitlines()[0].split() == [
            "PROCESS",
            "KIND",
            "STATE",
            "RESTARTS",
            "UPTIME",
            "INFO",
        ]
        assert "subject=ship1.REQPing.EventACK" in tree

        await central.submit([operation("REQOpProcessStop", "REQPing", "ship1", "subscriber")])
        await wait_for_text(out, "info: OpProcessStop: process stopped")
        assert ship1.snapshot().find("node/inbound/REQPing") is None

        await central.submit([operation("REQOpProcessStart", "REQPing")])
        await wait_for_text(out, "subject: ship1.REQPing.EventACK: node: ship1")
        assert subscriber_restarts(ship1, "REQPing") == 0

        await central.submit(
            [message("REQPing", reply_method="REQPong", directory="ping", file_name="ping.log")]
        )
        await wait_for_text(pong, "pong received from ship1")


async def test_refused_operations_are_error_replies_and_the_node_stays_controllable(
    net: LoopbackNet, pair: tuple[Node, Node]
) -> None:
    central, ship1 = pair
    error = net.result("ops", "ops.log.error")
    out = net.result("ops", "ops.log")
    async with central, ship1:
        await central.submit(
            [
                operation("REQOpProcessStop", "REQPing", "ship1", "publisher"),
                operation("REQOpProcessStop", "REQOpProcessStop"),
                operation("REQOpProcessStart", "REQNoSuchMethod"),
                operation("REQOpProcessStart", "REQPing"),
            ]
        )
        await wait_for_text(error, "value 'publisher' cannot be stopped")
        await wait_for_text(error, "the REQOpProcess* subscribers keep the node controllable")
        await wait_for_text(error, "value 'REQNoSuchMethod' is not a method this node")
        await wait_for_text(error, "a subscriber for REQPing runs already on ship1")

        await central.submit([operation("REQOpProcessList")])
        await wait_for_text(out, "REQOpProcessStop")
        assert subscriber_restarts(ship1, "REQOpProcessStop") == 0
        assert subscriber_restarts(ship1, "REQOpProcessStart") == 0
        assert subscriber_restarts(ship1, "REQPing") == 0
    assert "process stopped" not in file_text(out)


async def test_the_central_error_log_can_be_stopped_and_started_again(
    net: LoopbackNet, pair: tuple[Node, Node]
) -> None:
    central, ship1 = pair
    out = net.data("central") / "ops" / "central" / "ops.log"
    subject = "errorCentral.REQErrorLog.EventACK"

    def to_central(method: str, *args: str) -> Message:
        return message(method, args, to_node="central", directory="ops", file_name="ops.log")

    async with central, ship1:
        assert net.broker.interest(subject) == 1
        await central.submit([to_central("REQOpProcessStop", "REQErrorLog", "errorCentral")])
        await wait_for_text(out, f"method: {subject} on: central")
        assert net.broker.interest(subject) == 0

        await central.submit([to_central("REQOpProcessStart", "REQErrorLog")])
        await wait_for_text(out, "info: OpProcessStart: started")
        assert net.broker.interest(subject) == 1, file_text(out)
