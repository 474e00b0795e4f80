"""The ``acl`` command on central's home, and a running central picking up its changes."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from steward_otp.security.acl_cli import app
from steward_otp.security.acl_store import CentralAclStore
from steward_otp.security.central_acl import CentralAcl
from tests.unit.handlers.loopback_nodes import LoopbackNet, message, wait_for

runner = CliRunner()


def acl(home: Path, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, [*args, "--home", str(home)])
    return result.exit_code, result.stdout, result.stderr


def test_edits_answer_as_the_methods_do_and_persist(tmp_path: Path) -> None:
    assert acl(tmp_path, "add", "grp_nodes_ships", "central", "grp_commands_look")[1] == (
        "acl added: host=grp_nodes_ships, source=central, command=grp_commands_look\n"
    )
    assert acl(tmp_path, "group-nodes-add", "grp_nodes_ships", "ship1")[0] == 0
    assert acl(tmp_path, "group-commands-add", "grp_commands_look", "uptime")[0] == 0
    assert acl(tmp_path, "delete-source", "ship9", "central")[1] == (
        "acl deleted: host=ship9, source=central (nothing changed: no such entry)\n"
    )

    code, out, _ = acl(tmp_path, "show", "ship1")
    assert code == 0
    assert json.loads(out)["acl"] == {"central": ["uptime"]}
    listed = json.loads(acl(tmp_path, "ls")[1])
    assert listed["node_groups"] == {"grp_nodes_ships": ["ship1"]}
    assert listed["version"] == 3
    assert CentralAclStore(tmp_path / "etc" / "acl").state.version == 3


def test_a_wrong_name_is_refused_in_one_line_with_status_1(tmp_path: Path) -> None:
    assert acl(tmp_path, "group-nodes-add", "ships", "ship1") == (
        1,
        "",
        "acl: error: nodeGroup: 'ships' is not a group name: it must start with 'grp_nodes_'\n",
    )


def test_import_takes_an_export_or_a_steward_map(tmp_path: Path) -> None:
    exported = tmp_path / "export.json"
    exported.write_text(CentralAcl().add_command("ship1", "central", "ls").to_json())
    steward = tmp_path / "steward.json"
    steward.write_text('{"ship2": {"admin": {"HORSE": {}}}}')
    home = tmp_path / "central"

    assert acl(home, "import", str(exported))[0] == 0
    assert json.loads(acl(home, "ls")[1])["rules"] == {"ship1": {"central": ["ls"]}}
    assert acl(home, "import", str(steward))[0] == 0
    assert json.loads(acl(home, "ls")[1])["rules"] == {"ship2": {"admin": ["HORSE"]}}


async def test_a_running_central_serves_what_the_command_changed(net: LoopbackNet) -> None:
    central = net.node("central", is_central_auth=True)
    async with central:
        assert acl(net.home("central"), "add", "ship1", "central", "uptime")[0] == 0
        authority = central.security.acl
        await wait_for(lambda: bool(authority.authority().state.acl_for("ship1").sources))
        await central.submit([message("REQAclExport", to_node="central", file_name="x.json")])
        exported = net.result("out", "x.json", on="central", ran="central")
        await wait_for(lambda: exported.exists() and "uptime" in exported.read_text())
