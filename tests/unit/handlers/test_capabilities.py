"""Handlers see only the capabilities they may use.

Every handler gets the node's everyday capabilities as ``ctx.services``
(:class:`~steward_otp.handlers.base.NodeServices`); process control
(:class:`~steward_otp.handlers.base.SubscriberControl`) goes only to the ``REQOpProcess*``
handlers and control-socket requests (:class:`~steward_otp.handlers.base.QueueControl`)
only to the ``REQOpQueue*`` handlers, through the factories that build them.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from steward_otp.handlers.base import (
    HandlerContext,
    NodeServices,
    QueueControl,
    SubscriberControl,
    handler,
)
from steward_otp.loopback import LoopbackTransport
from steward_otp.message import Message
from steward_otp.node import Node
from tests.nodes import node_config
from tests.unit.handlers.loopback_nodes import QUIET, UNUSED_URL, LoopbackNet, message, wait_for


def members(protocol: type) -> set[str]:
    """The members a capability Protocol declares."""
    return {
        name
        for name in vars(protocol)
        if not name.startswith("_") and name not in {"__annotations__"}
    }


EVERYDAY = members(NodeServices)
CONTROL = members(SubscriberControl) | members(QueueControl)


def test_the_capabilities_are_split_by_purpose() -> None:
    assert members(SubscriberControl) == {"process_list", "start_subscriber", "stop_subscriber"}
    assert members(QueueControl) == {"control"}
    assert {
        "node_name",
        "home",
        "data_dir",
        "submit",
        "report",
        "test_event",
        "write_file",
        "write_many",
        "note_hello",
    } == EVERYDAY
    assert not EVERYDAY & CONTROL


def test_a_handler_context_offers_no_process_or_queue_control() -> None:
    fields = {f.name for f in attrs.fields(HandlerContext)}
    offered = fields | {name for name in vars(HandlerContext) if not name.startswith("_")}
    assert not offered & CONTROL


def test_the_services_a_node_gives_its_handlers_are_the_everyday_ones_only(
    tmp_path: Path,
) -> None:
    node = LoopbackNet(tmp_path).node("ship1")
    services = node.handler_services
    assert all(hasattr(services, name) for name in EVERYDAY)
    assert not [name for name in CONTROL if hasattr(services, name)]
    assert not hasattr(services, "processes")
    # The node itself still controls them, for the handlers it gives them to.
    assert all(hasattr(node.processes, name) for name in members(SubscriberControl))
    assert hasattr(node, "control")


async def test_an_ordinary_handler_cannot_reach_process_control(tmp_path: Path) -> None:
    """End to end: what a custom handler gets as ``ctx.services`` on a running node."""
    seen: list[object] = []

    @handler("REQLookAround", kind="ACK")
    async def look_around(ctx: HandlerContext, msg: Message) -> bytes | None:
        seen.append(ctx.services)
        return b"looked\n"

    net = LoopbackNet(tmp_path)
    central = net.node("central")
    config = node_config(tmp_path, "ship1", UNUSED_URL, **QUIET)
    transport = LoopbackTransport(net.broker, name="ship1")
    ship1 = Node(config, handlers=[look_around], transport=transport)
    central.table.register(look_around.method, replace=True)
    async with central, ship1:
        await central.submit([message("REQLookAround")])
        await wait_for(lambda: bool(seen), timeout=10)
    (services,) = seen
    assert services is ship1.handler_services
    assert not [name for name in CONTROL if hasattr(services, name)]
    assert not hasattr(services, "processes")
