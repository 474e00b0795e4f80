"""ACLs across a real nats-server: central (the key and ACL authority) allows ship1 to run
``echo allowed`` for central, nothing more; ship1 gets its ACL by asking central, then runs
the echo, refuses central's ``rm`` and refuses ship2, a node its ACL does not name, even
though every message is properly signed by a key ship1 allows."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from steward_otp.message import Message
from steward_otp.node import Node
from steward_otp.security.trust import TrustState
from tests.conftest import NatsServer
from tests.nodes import file_text, node_config, wait_for

pytestmark = pytest.mark.integration


def request(method: str, args: list[str], *, to: str, file_name: str = "out.txt") -> Message:
    return Message(
        to_node=to,
        method=method,
        method_args=tuple(args),
        directory="out",
        file_name=file_name,
        ack_timeout=3,
        retries=3,
        reply_ack_timeout=3,
        reply_retries=3,
        method_timeout=10,
        reply_method="REQToFileAppend",
    )


def trust(node: Node, *others: Node) -> None:
    for other in others:
        node.security.trust.update(adding(other.node_name, other.security.public_key))


def adding(node: str, key: bytes) -> Callable[[TrustState], TrustState]:
    """The trust change that allows ``key`` for ``node``."""
    return lambda s: s.add(node, key)


async def failure_reason(node: Node, msg_id: str) -> str:
    with trio.fail_after(20):
        while True:
            for row in await node.store.list_outbox(states=["failed"]):
                if row.msg_id == msg_id:
                    return row.reason or ""
            await trio.sleep(0.05)


async def test_a_ship_runs_what_its_acl_from_central_allows_and_nothing_else(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    checked = {"enable_signature_check": True}
    central = Node(
        node_config(
            tmp_path,
            "central",
            nats_server.url,
            **checked,
            is_central_auth=True,
            is_central_error_logger=True,
        )
    )
    ship1 = Node(
        node_config(
            tmp_path,
            "ship1",
            nats_server.url,
            **checked,
            enable_acl_check=True,
            enable_acl_updates=True,
            acl_update_interval=0.3,
            central_public_key=central.security.key.public_text,
        )
    )
    ship2 = Node(node_config(tmp_path, "ship2", nats_server.url, **checked))
    trust(central, ship1, ship2)
    trust(ship1, ship2)  # ship2's signature is good on ship1: only the ACL stands in its way
    trust(ship2, ship1)
    victim = tmp_path / "victim.txt"
    victim.write_text("still here\n")
    central_out = tmp_path / "central" / "data" / "out" / "ship1" / "out.txt"
    error_log = tmp_path / "central" / "data" / "errorLog" / "errorCentral" / "error.log"
    acl_reply = tmp_path / "central" / "data" / "out" / "central" / "acl.txt"

    async with central, ship1, ship2:
        await central.submit(
            [
                request(
                    "REQAclAddCommand",
                    ["ship1", "central", "echo allowed"],
                    to="central",
                    file_name="acl.txt",
                )
            ]
        )
        await wait_for(lambda: "acl added: host=ship1" in file_text(acl_reply))
        acl = ship1.security.acl.node_store
        await wait_for(lambda: acl.acl is not None and "central" in acl.acl.sources)
        assert (tmp_path / "ship1" / "etc" / "acl" / "node.json").exists()

        await central.submit([request("REQCliCommand", ["echo", "allowed"], to="ship1")])
        await wait_for(lambda: file_text(central_out) == "allowed\n")
        rm = await central.submit([request("REQCliCommand", ["rm", "-f", str(victim)], to="ship1")])
        from_ship2 = await ship2.submit([request("REQCliCommand", ["echo", "allowed"], to="ship1")])
        rm_reason = await failure_reason(central, rm[0])
        ship2_reason = await failure_reason(ship2, from_ship2[0])
        await wait_for(lambda: from_ship2[0] in file_text(error_log))
        log_text = file_text(error_log)

    assert victim.read_text() == "still here\n"
    assert "does not allow 'central' to run REQCliCommand 'rm -f " in rm_reason
    assert f"refused by ship1: acl check: message {rm[0]} from central: " in rm_reason
    assert "does not allow 'ship2' to run REQCliCommand 'echo allowed'" in ship2_reason
    assert f"error: ship1.REQCliCommand.EventACK: acl check: message {rm[0]}" in log_text
    assert f"acl check: message {from_ship2[0]} from ship2" in log_text
    assert file_text(central_out) == "allowed\n"  # the echo ran once; nothing else replied
