"""The pure ACL engine: central's rules and groups, the ACL generated per node, its hash, and
the decision. The first tests port Steward's ``central_auth_test.go`` (spec section 13)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from steward_otp.security.acl import EMPTY_HASH, UNGATED_METHODS, AclError, NodeAcl, decide
from steward_otp.security.acl_store import CentralAclStore, NodeAclStore
from steward_otp.security.central_acl import CentralAcl

SHIPS, OPERATORS, COMMANDSET = "grp_nodes_ships", "grp_nodes_operators", "grp_commands_commandset1"


def steward_groups() -> CentralAcl:
    """The set-up shared by Steward's group tests."""
    acl = (
        CentralAcl()
        .group_nodes_add(OPERATORS, "operator1")
        .group_nodes_add(OPERATORS, "operator2")
        .group_nodes_add(SHIPS, "ship100")
        .group_nodes_add(SHIPS, "ship101")
        .group_commands_add(COMMANDSET, "dmesg")
        .group_commands_add(COMMANDSET, "date")
        .add_command(SHIPS, "admin", "useradd -m kongen")
        .add_command("ship101", "admin", "HORSE")
    )
    return acl.add_command(SHIPS, OPERATORS, COMMANDSET)


# -- Steward's central_auth_test.go ------------------------------------------------------------


def test_acl_single_node() -> None:
    acl = (
        CentralAcl().add_command("ship101", "admin", "HORSE").add_command("ship101", "admin", "PIG")
    )

    assert acl.acl_for("ship101").to_dict() == {"admin": ["HORSE", "PIG"]}


def test_acl_with_groups() -> None:
    generated = steward_groups().acl_for("ship101").to_dict()

    assert generated == {
        "admin": ["HORSE", "useradd -m kongen"],
        "operator1": ["date", "dmesg"],
        "operator2": ["date", "dmesg"],
    }
    assert steward_groups().acl_for("ship100").to_dict() == {
        "admin": ["useradd -m kongen"],
        "operator1": ["date", "dmesg"],
        "operator2": ["date", "dmesg"],
    }


def test_acl_nodes_group_delete_node() -> None:
    acl = steward_groups().group_nodes_delete_node(SHIPS, "ship101")

    assert "useradd -m kongen" in acl.acl_for("ship100").sources["admin"]
    assert acl.acl_for("ship101").to_dict() == {"admin": ["HORSE"]}


def test_group_nodes_delete_group() -> None:
    acl = steward_groups().group_nodes_delete_group(OPERATORS)

    ship101 = acl.acl_for("ship101").to_dict()
    assert ship101 == {"admin": ["HORSE", "useradd -m kongen"]}
    assert OPERATORS in acl.rules[SHIPS]  # the rule stays, and expands to nobody


def test_group_command_delete_group() -> None:
    acl = steward_groups().group_commands_delete_group(COMMANDSET)

    assert acl.acl_for("ship101").to_dict() == {"admin": ["HORSE", "useradd -m kongen"]}


def test_acl_generated() -> None:
    acl = (
        CentralAcl()
        .add_command("ship101", "admin", "HORSE")
        .group_nodes_add("grp_nodes_ships", "ship101")
        .add_command("grp_nodes_ships", "admin", "HEN")
        .group_commands_add("grp_commands_test", "echo")
        .group_commands_add("grp_commands_test", "dmesg")
        .add_command("grp_nodes_ships", "admin", "grp_commands_test")
        .group_commands_delete_command("grp_commands_test", "echo")
    )

    assert acl.acl_for("ship101").to_dict() == {"admin": ["HEN", "HORSE", "dmesg"]}


def test_acl_schema_main_acl_map() -> None:
    acl = CentralAcl().add_command("ship0", "admin", "systemctl")
    acl = acl.add_command("ship1", "admin", "tcpdump")
    acl = acl.group_nodes_add("grp_nodes_ships", "ship1").group_nodes_add(
        "grp_nodes_ships", "ship2"
    )
    acl = acl.add_command("grp_nodes_ships", "admin", "dmesg")
    assert acl.rules["grp_nodes_ships"]["admin"] == {"dmesg"}  # stored unexpanded
    acl = acl.add_command("ship2", "admin", "echo")

    acl = acl.delete_command("grp_nodes_ships", "admin", "dmesg")
    assert "grp_nodes_ships" not in acl.rules
    assert acl.to_dict()["rules"] == {
        "ship0": {"admin": ["systemctl"]},
        "ship1": {"admin": ["tcpdump"]},
        "ship2": {"admin": ["echo"]},
    }
    acl = acl.delete_command("ship0", "admin", "systemctl")
    assert acl.to_dict()["rules"] == {"ship1": {"admin": ["tcpdump"]}, "ship2": {"admin": ["echo"]}}
    acl = acl.delete_source("ship1", "admin")
    assert acl.to_dict()["rules"] == {"ship2": {"admin": ["echo"]}}


def adding_command(host: str, source: str, command: str) -> Callable[[CentralAcl], CentralAcl]:
    """The ACL change that allows ``source`` to run ``command`` on ``host``."""
    return lambda s: s.add_command(host, source, command)


def test_acl_concurrent_edits_of_the_store_lose_nothing(tmp_path: Path) -> None:
    """Steward's TestACLConcurrent: many concurrent edit rounds and readers; here through
    the store (its file lock), and every write of every thread must survive."""
    store = CentralAclStore(tmp_path)
    errors: list[BaseException] = []

    def edit(index: int) -> None:
        try:
            for round_ in range(10):
                store.update(lambda s: s.add_command("ship1", "operator2", "rm -rf"))
                store.update(adding_command("ship1", "op1", f"ls {index} {round_}"))
                store.update(lambda s: s.add_command("ship3", "operator3", "vi /etc/hostname"))
                store.update(lambda s: s.delete_command("ship3", "operator2", "ls -lt"))
                store.update(lambda s: s.delete_source("ship3", "operator3"))
                CentralAclStore(tmp_path).state.acl_for("ship1")  # a concurrent reader
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=edit, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    final = CentralAclStore(tmp_path).state
    assert final.rules["ship1"]["op1"] == {f"ls {i} {r}" for i in range(8) for r in range(10)}
    assert "ship3" not in final.rules


def test_import_acls() -> None:
    steward_export = (
        '{"grp_nodes_ships":{"admin":{"useradd -m kongen":{}},"grp_nodes_operators":'
        '{"grp_commands_commandset1":{}}},"ship101":{"admin":{"HORSE":{}}}}'
    )

    imported = CentralAcl.from_json(steward_export, source="import")

    assert imported.to_dict()["rules"] == {
        "grp_nodes_ships": {
            "admin": ["useradd -m kongen"],
            "grp_nodes_operators": ["grp_commands_commandset1"],
        },
        "ship101": {"admin": ["HORSE"]},
    }
    replaced = steward_groups().replace(imported)
    assert replaced.rules == imported.rules
    assert replaced.node_groups == {}  # the whole ACL is replaced


# -- beyond Steward ------------------------------------------------------------------------


def test_groups_are_exported_and_imported_with_the_rules() -> None:
    original = steward_groups()

    again = CentralAcl.from_json(original.to_json(), source="export")

    assert again == original
    assert json.loads(original.to_json())["node_groups"][SHIPS] == ["ship100", "ship101"]


def test_a_host_of_star_applies_to_every_node_and_a_source_of_star_to_every_signer() -> None:
    acl = CentralAcl().add_command("*", "central", "uptime").add_command("ship1", "*", "date")

    assert acl.acl_for("anyship").to_dict() == {"central": ["uptime"]}
    ship1 = acl.acl_for("ship1")
    assert ship1.to_dict() == {"*": ["date"], "central": ["uptime"]}
    assert (
        decide(ship1, node="ship1", source="ship9", method="REQCliCommand", method_args=["date"])
        is None
    )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda a: a.add_command("grp_commands_x", "central", "ls"),
            "host: 'grp_commands_x' is a command group",
        ),
        (
            lambda a: a.add_command("ship1", "bad name", "ls"),
            "source: 'bad name' is not a node name",
        ),
        (lambda a: a.add_command("ship1", "central", " "), "command: the command is empty"),
        (
            lambda a: a.add_command("ship1", "central", "grp_nodes_x"),
            "command: 'grp_nodes_x' is a node group",
        ),
        (
            lambda a: a.group_nodes_add("ships", "ship1"),
            "nodeGroup: 'ships' is not a group name: it must start with 'grp_nodes_'",
        ),
        (
            lambda a: a.group_commands_add("grp_nodes_x", "ls"),
            "commandGroup: 'grp_nodes_x' is not a group name",
        ),
        (
            lambda a: a.group_commands_add("grp_commands_x", "grp_commands_y"),
            "cannot hold another group",
        ),
    ],
)
def test_wrong_names_are_refused_naming_the_argument(edit: object, message: str) -> None:
    with pytest.raises(AclError, match=re.escape(message)):
        edit(CentralAcl())  # type: ignore[operator]


def test_an_edit_that_changes_nothing_keeps_the_version() -> None:
    acl = CentralAcl().add_command("ship1", "central", "ls")
    assert acl.version == 1
    assert acl.add_command("ship1", "central", "ls") is acl
    assert acl.delete_command("ship1", "central", "missing") is acl
    assert acl.delete_source("ship2", "central").version == 1
    assert acl.delete_command("ship1", "central", "ls").version == 2


def test_an_empty_acl_hashes_to_zeros_as_in_steward() -> None:
    assert NodeAcl("ship1").hash == EMPTY_HASH
    assert CentralAcl().acl_for("ship1").hash == EMPTY_HASH
    assert NodeAcl("ship1", {"central": ["ls"]}).hash != EMPTY_HASH


def test_a_delivered_acl_with_a_wrong_hash_is_refused() -> None:
    document = json.loads(NodeAcl("ship1", {"central": ["ls"]}).to_json(3))
    document["acl"]["central"].append("rm -rf /")

    with pytest.raises(AclError, match=r'"hash" .* is not the hash of its ACL'):
        NodeAcl.from_json(json.dumps(document), source="delivery")


def test_the_node_store_keeps_the_acl_across_restarts(tmp_path: Path) -> None:
    store = NodeAclStore(tmp_path)
    assert store.acl is None and store.hash == EMPTY_HASH

    store.save(NodeAcl("ship1", {"central": ["echo hi"]}), 4)

    again = NodeAclStore(tmp_path)
    assert again.acl == NodeAcl("ship1", {"central": ["echo hi"]}) and again.version == 4
    assert (tmp_path / "node.json").stat().st_mode & 0o777 == 0o600


def test_the_central_store_keeps_rules_and_groups_across_restarts(tmp_path: Path) -> None:
    CentralAclStore(tmp_path).update(lambda s: steward_groups())

    assert CentralAclStore(tmp_path).state == steward_groups()


# -- the decision --------------------------------------------------------------------------

ACL = NodeAcl("ship1", {"central": ["echo hello", "REQTailFile"], "admin": ["*"]})


@pytest.mark.parametrize(
    ("source", "method", "args", "allowed"),
    [
        ("central", "REQCliCommand", ["echo", "hello"], True),
        ("central", "REQCliCommandCont", ["echo", "hello"], True),
        ("central", "REQCliCommand", ["rm", "-rf", "/"], False),
        ("central", "REQCliCommand", ["echo", "hello", "world"], False),  # exactly the line
        ("central", "REQTailFile", ["/var/log/syslog"], True),  # a method rule: any args
        ("central", "REQHttpGet", ["http://x"], False),
        ("central", "REQOpProcessStop", ["REQHello"], False),
        ("admin", "REQCliCommand", ["anything", "at", "all"], True),
        ("admin", "REQKeysDelete", ["ship2"], True),
        ("ship9", "REQCliCommand", ["echo", "hello"], False),  # not in the ACL
        ("ship9", "REQToFileAppend", [], True),  # replies are not restricted
        ("ship9", "REQAclDeliverUpdate", [], True),
        ("ship1", "REQCliCommand", ["rm", "-rf", "/"], True),  # its own messages
    ],
)
def test_decide(source: str, method: str, args: list[str], allowed: bool) -> None:
    refusal = decide(ACL, node="ship1", source=source, method=method, method_args=args)
    assert (refusal is None) is allowed, refusal


def test_a_refusal_says_who_what_and_where() -> None:
    refusal = decide(
        ACL, node="ship1", source="central", method="REQCliCommand", method_args=["rm", "x"]
    )

    assert refusal == (
        f"the ACL of ship1 does not allow 'central' to run REQCliCommand 'rm x' "
        f"(ACL {ACL.hash.hex()[:12]})"
    )


def test_without_an_acl_nothing_but_the_nodes_own_messages_runs() -> None:
    assert (
        decide(None, node="ship1", source="ship1", method="REQCliCommand", method_args=["ls"])
        is None
    )
    refusal = decide(
        None, node="ship1", source="central", method="REQCliCommand", method_args=["ls"]
    )
    assert refusal is not None and "ship1 has no ACL yet" in refusal


# -- properties ----------------------------------------------------------------------------

names = st.sampled_from(["central", "ship1", "ship2", "admin", "*", "grp_nodes_a", "grp_nodes_b"])
members = st.sampled_from(["central", "ship1", "ship2", "admin"])
commands = st.sampled_from(["ls", "echo hi", "rm -rf /", "*", "REQTailFile", "grp_commands_c"])
plain = st.sampled_from(["ls", "echo hi", "rm -rf /", "REQTailFile"])
edits = st.one_of(
    st.tuples(st.just("add"), names, names, commands),
    st.tuples(st.just("delete"), names, names, commands),
    st.tuples(st.just("source"), names, names),
    st.tuples(st.just("node"), st.sampled_from(["grp_nodes_a", "grp_nodes_b"]), members),
    st.tuples(st.just("unnode"), st.sampled_from(["grp_nodes_a", "grp_nodes_b"]), members),
    st.tuples(st.just("command"), st.just("grp_commands_c"), plain),
    st.tuples(st.just("uncommand"), st.just("grp_commands_c"), plain),
)


def apply(acl: CentralAcl, edit: tuple[str, ...]) -> CentralAcl:
    kind, *args = edit
    operations: dict[str, Callable[..., CentralAcl]] = {
        "add": acl.add_command,
        "delete": acl.delete_command,
        "source": acl.delete_source,
        "node": acl.group_nodes_add,
        "unnode": acl.group_nodes_delete_node,
        "command": acl.group_commands_add,
        "uncommand": acl.group_commands_delete_command,
    }
    return operations[kind](*args)


@given(st.lists(edits, max_size=25))
def test_export_then_import_gives_the_same_acl(history: list[tuple[str, ...]]) -> None:
    acl = CentralAcl()
    for edit in history:
        acl = apply(acl, edit)

    assert CentralAcl.from_json(acl.to_json(), source="export") == acl


@given(st.lists(edits, max_size=25), members)
def test_the_generated_acl_travels_intact_and_its_hash_is_its_content(
    history: list[tuple[str, ...]], node: str
) -> None:
    acl = CentralAcl()
    for edit in history:
        acl = apply(acl, edit)
    generated = acl.acl_for(node)

    received, version = NodeAcl.from_json(generated.to_json(acl.version), source="delivery")

    assert (received, version) == (generated, acl.version)
    assert (generated.hash == EMPTY_HASH) == (not generated.sources)
    rebuilt = NodeAcl(node, {s: reversed(sorted(c)) for s, c in generated.sources.items()})
    assert rebuilt.hash == generated.hash  # order does not matter


@given(st.lists(edits, max_size=25), members, members, plain)
def test_a_command_runs_only_when_a_rule_names_it_its_method_or_star(
    history: list[tuple[str, ...]], node: str, source: str, command: str
) -> None:
    acl = CentralAcl()
    for edit in history:
        acl = apply(acl, edit)
    generated = acl.acl_for(node)
    args = command.split(" ")

    refusal = decide(generated, node=node, source=source, method="REQCliCommand", method_args=args)

    allowed = generated.sources.get(source, frozenset()) | generated.sources.get("*", frozenset())
    expected = source == node or bool({"*", "REQCliCommand", command} & allowed)
    assert (refusal is None) is expected


@given(st.sampled_from(sorted(UNGATED_METHODS)), members)
def test_ungated_methods_always_run(method: str, source: str) -> None:
    assert (
        decide(NodeAcl("ship1"), node="ship1", source=source, method=method, method_args=[]) is None
    )
