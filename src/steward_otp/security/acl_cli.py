"""The ``acl`` command: central's ACL rules and groups (``<home>/etc/acl/central.json``).

Works on the files of the key authority's home folder, whether the node runs or not: a
running node picks up the change within a second, and its nodes get their new ACL at their
next request. The same edits as the REQAcl* methods, with the same checks and texts::

    steward-otp acl --home /srv/central add ship1 central "echo hello"
    steward-otp acl --home /srv/central show ship1
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Final, NoReturn

import typer

from steward_otp.cli.common import fail, home_option, sub_app
from steward_otp.security.acl import AclError
from steward_otp.security.acl_store import CentralAclStore, acl_dir
from steward_otp.security.central_acl import CentralAcl

__all__ = ["app", "main"]

EXIT_REFUSED: Final = 1

app = sub_app(
    "acl",
    "Central's ACL rules and groups (etc/acl/central.json), as the REQAcl* methods edit them.",
)

Home = Annotated[
    Path,
    home_option("The key authority's home folder (holds etc/acl/)."),
]


def _fail(text: str) -> NoReturn:
    fail("acl", text, EXIT_REFUSED)


def _store(home: Path) -> CentralAclStore:
    try:
        return CentralAclStore(acl_dir(home.absolute() / "etc"))
    except AclError as exc:
        _fail(str(exc))


def _edit(home: Path, change: Callable[[CentralAcl], CentralAcl]) -> bool:
    store = _store(home)
    before = store.state.version
    try:
        return store.update(change).version != before
    except AclError as exc:
        _fail(str(exc))


def _said(text: str, changed: bool) -> None:
    typer.echo(text + ("" if changed else " (nothing changed: no such entry)"))


@app.command("ls")
def list_acl(home: Home = Path(".")) -> None:
    """Print the rules, node groups and command groups, and the version."""
    typer.echo(_store(home).state.to_json(), nl=False)


@app.command()
def show(node: str, home: Home = Path(".")) -> None:
    """Print the ACL generated for NODE (what it receives), with its hash."""
    state = _store(home).state
    typer.echo(state.acl_for(node).to_json(state.version), nl=False)


@app.command()
def add(host: str, source: str, command: str, home: Home = Path(".")) -> None:
    """Allow SOURCE to run COMMAND on HOST (REQAclAddCommand)."""
    _edit(home, lambda s: s.add_command(host, source, command))
    typer.echo(f"acl added: host={host}, source={source}, command={command}")


@app.command()
def delete(host: str, source: str, command: str, home: Home = Path(".")) -> None:
    """Remove one command of SOURCE on HOST (REQAclDeleteCommand)."""
    changed = _edit(home, lambda s: s.delete_command(host, source, command))
    _said(f"acl deleted: host={host}, source={source}, command={command}", changed)


@app.command("delete-source")
def delete_source(host: str, source: str, home: Home = Path(".")) -> None:
    """Remove SOURCE with all its commands on HOST (REQAclDeleteSource)."""
    changed = _edit(home, lambda s: s.delete_source(host, source))
    _said(f"acl deleted: host={host}, source={source}", changed)


@app.command("group-nodes-add")
def group_nodes_add(group: str, node: str, home: Home = Path(".")) -> None:
    """Add NODE to the node group GROUP (grp_nodes_...)."""
    _edit(home, lambda s: s.group_nodes_add(group, node))
    typer.echo(f"added node to nodeGroup: nodeGroup={group}, node={node}")


@app.command("group-nodes-delete-node")
def group_nodes_delete_node(group: str, node: str, home: Home = Path(".")) -> None:
    """Remove NODE from the node group GROUP."""
    changed = _edit(home, lambda s: s.group_nodes_delete_node(group, node))
    _said(f"deleted node from nodeGroup: nodeGroup={group}, node={node}", changed)


@app.command("group-nodes-delete-group")
def group_nodes_delete_group(group: str, home: Home = Path(".")) -> None:
    """Delete the node group GROUP."""
    changed = _edit(home, lambda s: s.group_nodes_delete_group(group))
    _said(f"deleted nodeGroup: nodeGroup={group}", changed)


@app.command("group-commands-add")
def group_commands_add(group: str, command: str, home: Home = Path(".")) -> None:
    """Add COMMAND to the command group GROUP (grp_commands_...)."""
    _edit(home, lambda s: s.group_commands_add(group, command))
    typer.echo(f"added command to commandGroup: commandGroup={group}, command={command}")


@app.command("group-commands-delete-command")
def group_commands_delete_command(group: str, command: str, home: Home = Path(".")) -> None:
    """Remove COMMAND from the command group GROUP."""
    changed = _edit(home, lambda s: s.group_commands_delete_command(group, command))
    _said(f"deleted command from commandGroup: commandGroup={group}, command={command}", changed)


@app.command("group-commands-delete-group")
def group_commands_delete_group(group: str, home: Home = Path(".")) -> None:
    """Delete the command group GROUP."""
    changed = _edit(home, lambda s: s.group_commands_delete_group(group))
    _said(f"deleted commandGroup: commandGroup={group}", changed)


@app.command("import")
def import_acl(file: Path, home: Home = Path(".")) -> None:
    """Replace rules and groups with FILE (as `acl ls` prints them, or a Steward ACL map)."""
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"cannot read {file}: {exc}")
    try:
        imported = CentralAcl.from_json(text, source=str(file))
    except AclError as exc:
        _fail(str(exc))
    _edit(home, lambda s: s.replace(imported))
    typer.echo(f"imported the ACL from {file}")


def main() -> None:
    """Run the ``acl`` command."""
    app(prog_name="acl")


if __name__ == "__main__":
    main()
