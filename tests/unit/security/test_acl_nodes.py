"""The ACL methods and the ACL check between real nodes on the in-memory broker.

``central`` is the key and ACL authority; ``ship1`` checks signatures and ACLs and asks
central for its ACL every 0.2 s. The operator's messages enter central itself (signed by
central), as from its socket.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from steward_otp.message import Message
from steward_otp.node import Node
from steward_otp.security.acl import NodeAcl
from steward_otp.security.signing import sign
from steward_otp.security.trust import TrustState
from steward_otp.tree_view import render_status
from tests.unit.handlers.loopback_nodes import (
    LoopbackNet,
    file_text,
    message,
    wait_for,
    wait_for_text,
)

CHECKED: dict[str, Any] = {"enable_signature_check": True}
ACL_CHECKED: dict[str, Any] = {**CHECKED, "enable_acl_check": True, "enable_acl_updates": True}


def trust(node: Node, *others: Node) -> None:
    for other in others:
        node.security.trust.update(adding(other.node_name, other.security.public_key))


def adding(node: str, key: bytes) -> Callable[[TrustState], TrustState]:
    """The trust change that allows ``key`` for ``node``."""
    return lambda s: s.add(node, key)


def authority(net: LoopbackNet, **overrides: Any) -> Node:
    return net.node(
        "central",
        **{**CHECKED, "is_central_auth": True, "is_central_error_logger": True, **overrides},
    )


def ship(net: LoopbackNet, name: str = "ship1", **overrides: Any) -> Node:
    return net.node(name, **{**ACL_CHECKED, "acl_update_interval": 0.2, **overrides})


def to_central(method: str, args: list[str], file_name: str = "acl.txt", **fields: Any) -> Message:
    return message(method, args, to_node="central", file_name=file_name, **fields)


def reply(net: LoopbackNet, file_name: str = "acl.txt") -> Path:
    """Where the reply of a message the operator sent to central lands."""
    return net.result("out", file_name, on="central", ran="central")


def more_lines_than(path: Path, lines: int) -> Callable[[], bool]:
    """Whether ``path`` has more than ``lines`` lines now."""
    return lambda: file_text(path).count("\n") > lines


async def failure_reason(node: Node, msg_id: str) -> str:
    with trio.fail_after(10):
        while True:
            for row in await node.store.list_outbox(states=["failed"]):
                if row.msg_id == msg_id:
                    return row.reason or ""
            await trio.sleep(0.02)


def has_acl(node: Node, **sources: list[str]) -> bool:
    acl = node.security.acl.node_store.acl
    return acl is not None and acl.to_dict() == sources


async def test_a_ship_runs_what_its_acl_allows_and_refuses_the_rest(net: LoopbackNet) -> None:
    central, ship1 = authority(net), ship(net)
    trust(ship1, central)
    trust(central, ship1)
    async with central, ship1:
        await central.submit([to_central("REQAclAddCommand", ["ship1", "central", "echo allowed"])])
        await wait_for_text(
            reply(net), "acl added: host=ship1, source=central, command=echo allowed\n"
        )
        await wait_for(lambda: has_acl(ship1, central=["echo allowed"]))

        await central.submit([message("REQCliCommand", ["echo", "allowed"])])
        await wait_for_text(net.result("out", "out.txt"), "allowed\n")
        ids = await central.submit([message("REQCliCommand", ["rm", "-f", "/tmp/x"])])
        reason = await failure_reason(central, ids[0])
        logged = (
            f"ship1.REQCliCommand.EventACK: acl check: message {ids[0]} from central: the ACL of "
            "ship1 does not allow 'central' to run REQCliCommand 'rm -f /tmp/x'"
        )
        await wait_for_text(net.error_log(), logged)
    assert (
        f"refused by ship1: acl check: message {ids[0]} from central: the ACL of ship1 " in reason
    )
    assert "does not allow 'central' to run REQCliCommand 'rm -f /tmp/x'" in reason
    assert file_text(net.result("out", "out.txt")) == "allowed\n"
    stored = json.loads((net.home("ship1") / "etc" / "acl" / "node.json").read_text())
    assert stored["acl"] == {"central": ["echo allowed"]}


async def test_a_ship_without_an_acl_runs_nothing_from_others(
    net: LoopbackNet, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="steward_otp.node")
    central = net.node("central", is_central_error_logger=True)
    ship1 = ship(net, enable_acl_updates=False)
    trust(ship1, central)
    async with central, ship1:
        ids = await central.submit([message("REQCliCommand", ["echo", "hi"])])
        reason = await failure_reason(central, ids[0])
    assert "ship1 has no ACL yet (none received from central)" in reason
    assert "ACL checking is on but this node has no ACL yet" in caplog.text
    assert "enable_acl_updates is off" in caplog.text


async def test_node_and_command_groups_reach_the_ships_that_are_members(net: LoopbackNet) -> None:
    central = authority(net)
    ship1, ship2 = ship(net, "ship1"), ship(net, "ship2")
    trust(central, ship1, ship2)
    trust(ship1, central)
    trust(ship2, central)
    edits = [
        ("REQAclGroupNodesAddNode", ["grp_nodes_ships", "ship1"]),
        ("REQAclGroupNodesAddNode", ["grp_nodes_operators", "central"]),
        ("REQAclGroupCommandsAddCommand", ["grp_commands_look", "echo look"]),
        ("REQAclGroupCommandsAddCommand", ["grp_commands_look", "date"]),
        ("REQAclAddCommand", ["grp_nodes_ships", "grp_nodes_operators", "grp_commands_look"]),
    ]
    async with central, ship1, ship2:
        for method, args in edits:
            await central.submit([to_central(method, args)])
        await wait_for(lambda: has_acl(ship1, central=["date", "echo look"]))
        await central.submit([message("REQCliCommand", ["echo", "look"])])
        await wait_for_text(net.result("out", "out.txt"), "look\n")
        refused = await central.submit(
            [message("REQCliCommand", ["echo", "look"], to_node="ship2")]
        )
        reason = await failure_reason(central, refused[0])
        assert "ship2 has no ACL yet" in reason  # not a member: central has nothing for it

        await central.submit(
            [to_central("REQAclGroupNodesDeleteNode", ["grp_nodes_ships", "ship1"])]
        )
        await wait_for(lambda: has_acl(ship1))
    text = file_text(reply(net))
    assert "added node to nodeGroup: nodeGroup=grp_nodes_ships, node=ship1\n" in text
    assert "added command to commandGroup: commandGroup=grp_commands_look, command=date\n" in text
    assert "deleted node from nodeGroup: nodeGroup=grp_nodes_ships, node=ship1\n" in text
    assert ship1.security.acl.node_store.hash == bytes(32)  # emptied: Steward's all-zero hash


@pytest.mark.parametrize(
    ("method", "args", "error"),
    [
        (
            "REQAclAddCommand",
            ["ship1", "central"],
            "field \"methodArgs\": expected [host, source, command], got ['ship1', 'central']: "
            "command is missing",
        ),
        (
            "REQAclAddCommand",
            ["ship1", "central", "echo", "hi"],
            '1 more than needed (a command with spaces is one argument: "echo hello")',
        ),
        (
            "REQAclAddCommand",
            ["ship 1", "central", "ls"],
            "field \"methodArgs[0]\" (host): 'ship 1' is not a node name",
        ),
        (
            "REQAclDeleteSource",
            ["ship1", "grp_commands_x"],
            "field \"methodArgs[1]\" (source): 'grp_commands_x' is a command group",
        ),
        (
            "REQAclGroupNodesAddNode",
            ["ships", "ship1"],
            "field \"methodArgs[0]\" (nodeGroup): 'ships' is not a group name: it must start "
            "with 'grp_nodes_'",
        ),
        (
            "REQAclGroupNodesDeleteNode",
            ["grp_nodes_a", "grp_nodes_b"],
            "field \"methodArgs[1]\" (node): 'grp_nodes_b': a group holds node names",
        ),
        (
            "REQAclGroupCommandsDeleteCommand",
            ["grp_commands_a"],
            "command is missing",  # Steward crashed here
        ),
        ("REQAclGroupCommandsDeleteGroup", [], "commandGroup is missing"),
        ("REQAclGroupNodesDeleteGroup", ["grp_commands_x"], "must start with 'grp_nodes_'"),
        ("REQAclExport", ["x"], 'field "methodArgs": takes no arguments'),
        ("REQAclImport", [], 'field "methodArgs": expected [aclJSON]'),
        ("REQAclImport", ["{not json"], 'field "methodArgs[0]": not valid JSON'),
    ],
)
async def test_bad_arguments_are_answered_with_an_error_naming_them(
    net: LoopbackNet, method: str, args: list[str], error: str
) -> None:
    central = authority(net)
    async with central:
        await central.submit([to_central(method, args)])
        text = await wait_for_text(reply(net, "acl.txt.error"), f"error: {method}: ")
    assert error in text
    assert central.security.acl.authority().state.version == 0


async def test_acl_methods_are_refused_on_a_node_that_is_not_the_authority(
    net: LoopbackNet,
) -> None:
    central, ship1 = net.node("central"), net.node("ship1")
    async with central, ship1:
        await central.submit([message("REQAclAddCommand", ["ship1", "central", "ls"])])
        text = await wait_for_text(net.result("out", "out.txt.error"), "not the ACL authority")
    assert text.startswith(
        "error: REQAclAddCommand: ship1 is not the ACL authority (is_central_auth = false); "
        "send it to the central node (central)"
    )


async def test_export_import_and_deletes_reply_as_steward(net: LoopbackNet) -> None:
    central = authority(net)
    async with central:
        for method, args in [
            ("REQAclAddCommand", ["ship1", "central", "ls"]),
            ("REQAclAddCommand", ["ship1", "central", "date"]),
            ("REQAclGroupNodesAddNode", ["grp_nodes_x", "ship2"]),
            ("REQAclDeleteCommand", ["ship1", "central", "date"]),
            ("REQAclDeleteCommand", ["ship1", "central", "date"]),
        ]:
            lines = file_text(reply(net)).count("\n")
            await central.submit([to_central(method, args)])
            await wait_for(more_lines_than(reply(net), lines))  # in order
        await central.submit([to_central("REQAclExport", [], file_name="export.json")])
        exported = await wait_for_text(reply(net, "export.json"), "}\n")
        await central.submit([to_central("REQAclDeleteSource", ["ship1", "central"])])
        await wait_for_text(reply(net), "acl deleted: host=ship1, source=central\n")
        await central.submit([to_central("REQAclImport", [exported])])
        await wait_for_text(reply(net), "Imported acl's sent from: central\n")
    document = json.loads(exported)
    assert document["rules"] == {"ship1": {"central": ["ls"]}}
    assert document["node_groups"] == {"grp_nodes_x": ["ship2"]}
    assert central.security.acl.authority().state.to_dict()["rules"] == document["rules"]
    assert file_text(reply(net)) == (
        "acl added: host=ship1, source=central, command=ls\n"
        "acl added: host=ship1, source=central, command=date\n"
        "added node to nodeGroup: nodeGroup=grp_nodes_x, node=ship2\n"
        "acl deleted: host=ship1, source=central, command=date\n"
        "acl deleted: host=ship1, source=central, command=date (nothing changed: no such entry)\n"
        "acl deleted: host=ship1, source=central\n"
        "Imported acl's sent from: central\n"
    )


async def test_central_keeps_rules_and_groups_across_a_restart(net: LoopbackNet) -> None:
    central = authority(net)
    async with central:
        await central.submit([to_central("REQAclGroupNodesAddNode", ["grp_nodes_x", "ship1"])])
        await central.submit([to_central("REQAclAddCommand", ["grp_nodes_x", "central", "ls"])])
        await wait_for(lambda: bool(central.security.acl.authority().state.rules))
    again = authority(net)
    assert again.security.acl.authority().state.acl_for("ship1").to_dict() == {"central": ["ls"]}


async def test_an_acl_delivered_by_another_node_than_central_is_refused(
    net: LoopbackNet,
) -> None:
    central = net.node("central", is_central_error_logger=True)
    mallory, ship1 = net.node("mallory"), ship(net, enable_acl_updates=False)
    trust(ship1, central, mallory)
    trust(central, ship1)  # the central error log writes lines of nodes it knows
    forged = NodeAcl("ship1", {"mallory": ["*"]}).to_json(1).encode()
    async with central, mallory, ship1:
        await mallory.submit([message("REQAclDeliverUpdate", data=forged, reply_method="REQNone")])
        errors = await wait_for_text(net.error_log(), "an ACL from 'mallory' is refused")
    assert "only the central node (central) delivers ACLs" in errors
    assert ship1.security.acl.node_store.acl is None


async def test_status_shows_the_acl_posture(net: LoopbackNet) -> None:
    central, ship1 = authority(net), ship(net)
    trust(ship1, central)
    trust(central, ship1)
    async with central, ship1:
        await central.submit([to_central("REQAclAddCommand", ["ship1", "central", "uptime"])])
        await wait_for(lambda: has_acl(ship1, central=["uptime"]))
        posture = ship1.posture()["security"]
    assert posture["acl_check"] is True and posture["acl_updates"] is True
    assert posture["acl_sources"] == ["central"]
    assert posture["acl_version"] == 1
    assert posture["acl_hash"] == NodeAcl("ship1", {"central": ["uptime"]}).hash.hex()
    assert central.posture()["security"]["acl_authority"] is True


def test_status_text_has_an_acl_line() -> None:
    security = {
        "signature_check": True,
        "acl_check": True,
        "acl_hash": "ab" * 32,
        "acl_sources": ["central", "ops1"],
        "acl_authority": False,
    }

    text = render_status({"security": security})

    assert "acl:         check on; ACL abababababab, sources 2" in text


async def test_a_node_that_does_not_check_signatures_still_takes_acls_only_from_central(
    net: LoopbackNet,
) -> None:
    central = net.node("central", is_central_error_logger=True)
    mallory = net.node("mallory")
    ship1 = net.node("ship1", enable_acl_updates=False)  # no signature check
    trust(ship1, central)
    trust(central, ship1)
    forged = NodeAcl("ship1", {"mallory": ["*"]}).to_json(1).encode()
    as_central = sign(
        message("REQAclDeliverUpdate", data=forged, reply_method="REQNone", from_node="central"),
        mallory.security.key.private,
        signer="central",
        now=time.time(),
    )
    async with central, mallory, ship1:
        await mallory.submit([as_central])
        errors = await wait_for_text(net.error_log(), "an ACL from 'central' is refused")
    assert "bad signature" in errors
    assert ship1.security.acl.node_store.acl is None


async def test_asking_a_central_that_is_not_the_acl_authority_is_reported(
    net: LoopbackNet,
) -> None:
    central = net.node("central", is_central_error_logger=True)
    ship1 = net.node("ship1", enable_acl_updates=True, acl_update_interval=0.2)
    trust(ship1, central)
    trust(central, ship1)
    async with central, ship1:
        errors = await wait_for_text(net.error_log(), "ACL update from central failed")
    assert "central is not the ACL authority (is_central_auth = false)" in errors
    assert ship1.security.acl.node_store.acl is None


async def test_method_rules_let_an_operator_node_edit_the_acl_on_a_checking_central(
    net: LoopbackNet,
) -> None:
    central = authority(net, enable_acl_check=True)
    ops1 = net.node("ops1")
    trust(central, ops1)
    trust(ops1, central)
    edit = message("REQAclAddCommand", ["ship1", "ops1", "uptime"], to_node="central")
    async with central, ops1:
        refused = await ops1.submit([edit])
        reason = await failure_reason(ops1, refused[0])
        # central's own operator (its socket, signed by central) may always edit:
        await central.submit(
            [to_central("REQAclAddCommand", ["central", "ops1", "REQAclAddCommand"])]
        )
        await wait_for_text(reply(net), "acl added: host=central, source=ops1")
        await ops1.submit([edit])
        await wait_for(
            lambda: "ops1" in central.security.acl.authority().state.rules.get("ship1", {})
        )
    assert "does not allow 'ops1' to run REQAclAddCommand" in reason


async def test_central_pushes_a_changed_acl_to_the_nodes_it_concerns(net: LoopbackNet) -> None:
    central = authority(net)
    # No requests from the ships: what they get, they get by push.
    ship1 = ship(net, "ship1", enable_acl_updates=False)
    ship2 = ship(net, "ship2", enable_acl_updates=False)
    trust(central, ship1, ship2)
    trust(ship1, central)
    trust(ship2, central)
    async with central, ship1, ship2:
        await central.submit([to_central("REQAclAddCommand", ["ship1", "central", "uptime"])])
        await wait_for(lambda: has_acl(ship1, central=["uptime"]))
        assert ship2.security.acl.node_store.acl is None  # not concerned: nothing pushed

        # A "*" rule reaches every node central knows (here: by their allowed keys).
        await central.submit([to_central("REQAclAddCommand", ["*", "central", "date"])])
        await wait_for(lambda: has_acl(ship2, central=["date"]))
        await wait_for(lambda: has_acl(ship1, central=["date", "uptime"]))
