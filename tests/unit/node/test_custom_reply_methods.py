"""A reply method only the asking node serves: the replying node routes the reply to it.

An embedding application may add its own reply method on the node that sends requests
(say a collector on central) and ask stock nodes to answer into it. The replying node does
not know the method; it publishes the reply as ``EventACK`` to the node that named it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from steward_otp.handlers import HandlerContext, handler
from steward_otp.message import Message, subject_for
from steward_otp.methods import BUILTIN_METHODS, EventKind, UnknownMethodError
from tests.unit.handlers.loopback_nodes import LoopbackNet, file_text, message, wait_for


@handler("REQCollect", reply_capable=True, quick=True, description="keeps what replies carry")
async def collect(ctx: HandlerContext, msg: Message) -> bytes | None:
    with Path(msg.method_args[0]).open("ab") as f:
        f.write(msg.from_node.encode() + b": " + msg.data)
    return None


@handler("REQCollectNack", kind="NACK", reply_capable=True, quick=True)
async def collect_nack(ctx: HandlerContext, msg: Message) -> bytes | None:
    return await collect.func(ctx, msg)


def asking(
    collected: Path, args: list[str], reply_method: str = "REQCollect", **fields: Any
) -> Message:
    """A REQCliCommand to ship1 whose reply goes into ``reply_method``, writing ``collected``."""
    return message(
        "REQCliCommand",
        args,
        reply_method=reply_method,
        reply_method_args=(str(collected),),
        **fields,
    )


async def test_a_reply_into_a_method_only_the_asking_node_serves_reaches_it(
    tmp_path: Path,
) -> None:
    net = LoopbackNet(tmp_path)
    central = net.node("central", handlers=[collect], is_central_error_logger=True)
    ship1 = net.node("ship1")  # built-in methods only: it does not know REQCollect
    collected = tmp_path / "collected.txt"
    async with central, ship1:
        await central.submit([asking(collected, ["echo", "hello"])])
        await wait_for(lambda: file_text(collected) == "ship1: hello\n")
        publisher = ship1.snapshot().find("node/outbound/publishers/central.REQCollect")
        assert publisher is not None
    assert "REQCollect" not in file_text(net.error_log())


async def test_an_error_reply_goes_the_same_way(tmp_path: Path) -> None:
    net = LoopbackNet(tmp_path)
    central = net.node("central", handlers=[collect], is_central_error_logger=True)
    ship1 = net.node("ship1")
    collected = tmp_path / "collected.txt"
    async with central, ship1:
        await central.submit([asking(collected, ["false"])])
        await wait_for(lambda: "exit status 1" in file_text(collected))
    assert file_text(collected).startswith("ship1: ")


async def test_a_nack_reply_method_unknown_to_the_replying_node_is_not_reached(
    tmp_path: Path,
) -> None:
    """The replying node cannot know the kind: the reply goes as EventACK, finds nobody, and
    fails after its retries with the usual error (documented: use kind ACK)."""
    net = LoopbackNet(tmp_path)
    central = net.node("central", handlers=[collect_nack], is_central_error_logger=True)
    ship1 = net.node("ship1")
    collected = tmp_path / "collected.txt"
    async with central, ship1:
        request = asking(
            collected, ["echo", "hello"], "REQCollectNack", reply_ack_timeout=1, reply_retries=0
        )
        await central.submit([request])
        await wait_for(lambda: "REQCollectNack" in file_text(net.error_log()), timeout=20)
    assert not collected.exists()


def test_only_replies_may_name_a_method_the_table_does_not_know() -> None:
    reply = Message(to_node="central", method="REQCollect", is_reply=True)
    assert subject_for(reply) == "central.REQCollect.EventACK"
    spec = BUILTIN_METHODS.routing_spec("REQCollect", reply=True)
    assert spec.kind is EventKind.EventACK and spec.reply_capable
    assert BUILTIN_METHODS.routing_spec("REQPing", reply=True) is BUILTIN_METHODS.require("REQPing")
    with pytest.raises(UnknownMethodError, match="REQCollect"):
        subject_for(Message(to_node="central", method="REQCollect"))


@pytest.mark.parametrize("name", ["REQTuiToConsole", "bad.name", "a b", "*", ""])
def test_a_reply_method_that_is_retired_or_no_subject_token_is_refused(name: str) -> None:
    with pytest.raises(UnknownMethodError):
        BUILTIN_METHODS.routing_spec(name, reply=True)
