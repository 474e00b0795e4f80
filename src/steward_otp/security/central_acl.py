"""Central's editable ACL, pure: rules, node groups and command groups, as one immutable value.

:class:`CentralAcl` holds the rules ``host -> source -> {command}`` and the groups that
central edits (REQAclAddCommand and its siblings, ``steward-otp acl``). Every edit checks
the names it is given (:func:`~steward_otp.security.acl.check_host` and the others, raising
:class:`~steward_otp.security.acl.AclError`) and returns a new value whose ``version`` is one
higher when something changed, the same value otherwise. :meth:`CentralAcl.acl_for`
generates the :class:`~steward_otp.security.acl.NodeAcl` of one host, groups expanded.
The document form (:meth:`CentralAcl.to_json`, :meth:`CentralAcl.from_json`) is the central
ACL file and REQAclExport's answer; reading also takes Steward's ACL map.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

import attrs

from steward_otp.config import is_valid_node_name
from steward_otp.limits import text_problem
from steward_otp.security.acl import (
    ALL,
    COMMAND_GROUP_PREFIX,
    NODE_GROUP_PREFIX,
    AclError,
    NodeAcl,
    check_command,
    check_group,
    check_host,
    frozen_sets,
)

__all__ = ["CentralAcl"]


def _frozen_rules(
    rules: Mapping[str, Mapping[str, Iterable[str]]],
) -> Mapping[str, Mapping[str, frozenset[str]]]:
    cleaned = {host: frozen_sets(sources) for host, sources in sorted(rules.items())}
    return MappingProxyType({host: sources for host, sources in cleaned.items() if sources})


@attrs.frozen
class CentralAcl:
    """Central's editable ACL: rules, node groups and command groups (immutable)."""

    rules: Mapping[str, Mapping[str, frozenset[str]]] = attrs.field(
        factory=dict, converter=_frozen_rules
    )
    node_groups: Mapping[str, frozenset[str]] = attrs.field(factory=dict, converter=frozen_sets)
    command_groups: Mapping[str, frozenset[str]] = attrs.field(factory=dict, converter=frozen_sets)
    version: int = 0

    # ------------------------------------------------------------------ edits

    def _next(self, **changes: Any) -> CentralAcl:
        new = attrs.evolve(self, **changes)
        if (new.rules, new.node_groups, new.command_groups) == (
            self.rules,
            self.node_groups,
            self.command_groups,
        ):
            return self
        return attrs.evolve(new, version=self.version + 1)

    def _rules_dict(self) -> dict[str, dict[str, set[str]]]:
        return {h: {s: set(c) for s, c in src.items()} for h, src in self.rules.items()}

    def add_command(self, host: str, source: str, command: str) -> CentralAcl:
        """Allow ``source`` to run ``command`` on ``host`` (levels created as needed)."""
        check_host(host, "host")
        check_host(source, "source")
        check_command(command, "command")
        rules = self._rules_dict()
        rules.setdefault(host, {}).setdefault(source, set()).add(command)
        return self._next(rules=rules)

    def delete_command(self, host: str, source: str, command: str) -> CentralAcl:
        """Remove one command of ``source`` on ``host`` (missing: unchanged)."""
        rules = self._rules_dict()
        rules.get(host, {}).get(source, set()).discard(command)
        return self._next(rules=rules)

    def delete_source(self, host: str, source: str) -> CentralAcl:
        """Remove ``source`` with all its commands on ``host`` (missing: unchanged)."""
        rules = self._rules_dict()
        rules.get(host, {}).pop(source, None)
        return self._next(rules=rules)

    def group_nodes_add(self, group: str, node: str) -> CentralAcl:
        """Add ``node`` to the node group ``group`` (created as needed)."""
        check_group(group, NODE_GROUP_PREFIX, "nodeGroup")
        if not is_valid_node_name(node):
            problem = text_problem(node)
            raise AclError(f"node: {node!r} {problem or 'is not a node name'}")
        groups = {g: set(m) for g, m in self.node_groups.items()}
        groups.setdefault(group, set()).add(node)
        return self._next(node_groups=groups)

    def group_nodes_delete_node(self, group: str, node: str) -> CentralAcl:
        """Remove ``node`` from ``group`` (missing: unchanged; an emptied group is gone)."""
        groups = {g: set(m) for g, m in self.node_groups.items()}
        groups.get(group, set()).discard(node)
        return self._next(node_groups=groups)

    def group_nodes_delete_group(self, group: str) -> CentralAcl:
        """Remove the node group ``group`` (rules naming it stay, and expand to nothing)."""
        return self._next(node_groups={g: m for g, m in self.node_groups.items() if g != group})

    def group_commands_add(self, group: str, command: str) -> CentralAcl:
        """Add ``command`` to the command group ``group`` (created as needed)."""
        check_group(group, COMMAND_GROUP_PREFIX, "commandGroup")
        check_command(command, "command")
        if command.startswith(COMMAND_GROUP_PREFIX):
            raise AclError(f"command: {command!r}: a command group cannot hold another group")
        groups = {g: set(m) for g, m in self.command_groups.items()}
        groups.setdefault(group, set()).add(command)
        return self._next(command_groups=groups)

    def group_commands_delete_command(self, group: str, command: str) -> CentralAcl:
        """Remove ``command`` from ``group`` (missing: unchanged)."""
        groups = {g: set(m) for g, m in self.command_groups.items()}
        groups.get(group, set()).discard(command)
        return self._next(command_groups=groups)

    def group_commands_delete_group(self, group: str) -> CentralAcl:
        """Remove the command group ``group``."""
        return self._next(
            command_groups={g: m for g, m in self.command_groups.items() if g != group}
        )

    def replace(self, imported: CentralAcl) -> CentralAcl:
        """The content of ``imported`` (rules and groups), as the next version."""
        return self._next(
            rules=imported.rules,
            node_groups=imported.node_groups,
            command_groups=imported.command_groups,
        )

    # ------------------------------------------------------------------ generation

    def named_hosts(self) -> frozenset[str]:
        """Every node a rule names, directly or through a node group (not ``*``)."""
        hosts: set[str] = set()
        for host in self.rules:
            if host != ALL:
                hosts |= self._hosts_of(host)
        return frozenset(hosts)

    def _hosts_of(self, name: str) -> frozenset[str]:
        if name.startswith(NODE_GROUP_PREFIX):
            return self.node_groups.get(name, frozenset())
        return frozenset({name})

    def _commands_of(self, command: str) -> frozenset[str]:
        if command.startswith(COMMAND_GROUP_PREFIX):
            return self.command_groups.get(command, frozenset())
        return frozenset({command})

    def acl_for(self, node: str) -> NodeAcl:
        """The ACL of ``node``: every rule whose host is ``node``, ``*`` or a group holding
        it, with source groups and command groups expanded."""
        merged: dict[str, set[str]] = {}
        for host, sources in self.rules.items():
            if host != ALL and node not in self._hosts_of(host):
                continue
            for source, commands in sources.items():
                expanded = {c for command in commands for c in self._commands_of(command)}
                if not expanded:
                    continue
                for one in self._hosts_of(source) if source != ALL else {ALL}:
                    merged.setdefault(one, set()).update(expanded)
        return NodeAcl(node, merged)

    # ------------------------------------------------------------------ documents

    def to_dict(self) -> dict[str, Any]:
        """The export document: rules, groups and version (sets as sorted lists)."""
        return {
            "rules": {
                host: {source: sorted(cmds) for source, cmds in sources.items()}
                for host, sources in self.rules.items()
            },
            "node_groups": {g: sorted(m) for g, m in self.node_groups.items()},
            "command_groups": {g: sorted(m) for g, m in self.command_groups.items()},
            "version": self.version,
        }

    def to_json(self) -> str:
        """The text of the central ACL file and of REQAclExport."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str) -> CentralAcl:
        """Read an exported document, or Steward's ACL map (``{host: {source: {cmd: {}}}}``,
        groups then empty). Every name is checked; raises AclError naming ``source``."""
        try:
            if isinstance(text, bytes):
                text = text.decode("utf-8")
            document = json.loads(text) if text.strip() else {}
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise AclError(f"{source}: not valid JSON: {exc}") from None
        if not isinstance(document, dict):
            raise AclError(f"{source}: expected a JSON object")
        ours = {"rules", "node_groups", "command_groups", "version"}
        if document and set(document) <= ours:
            rules_doc = document.get("rules", {})
            node_doc = document.get("node_groups", {})
            command_doc = document.get("command_groups", {})
            version = document.get("version", 0)
        else:  # Steward's ACLMap
            rules_doc, node_doc, command_doc, version = document, {}, {}, 0
        if isinstance(version, bool) or not isinstance(version, int):
            raise AclError(f'{source}: "version" must be a whole number')
        state = cls(version=version)
        try:
            if not isinstance(rules_doc, dict):
                raise AclError('"rules" must be an object {host: {source: [command, ...]}}')
            for host, sources in rules_doc.items():
                if not isinstance(sources, dict):
                    raise AclError(f"host {host!r}: expected an object {{source: commands}}")
                for src, commands in sources.items():
                    for command in _names(commands, f"host {host!r}, source {src!r}"):
                        state = state.add_command(host, src, command)
            for group, members in _groups(node_doc, "node_groups"):
                for node in members:
                    state = state.group_nodes_add(group, node)
            for group, members in _groups(command_doc, "command_groups"):
                for command in members:
                    state = state.group_commands_add(group, command)
        except AclError as exc:
            raise AclError(f"{source}: {exc}") from None
        return attrs.evolve(state, version=version)


def _names(value: object, where: str) -> list[str]:
    """A list of strings, or Steward's set as an object ``{name: {}}``."""
    if isinstance(value, dict):
        value = list(value)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise AclError(f"{where}: expected a list of strings")
    return value


def _groups(value: object, what: str) -> list[tuple[str, list[str]]]:
    if not isinstance(value, dict):
        raise AclError(f'"{what}" must be an object {{group: [member, ...]}}')
    return [(group, _names(members, f"{what} {group!r}")) for group, members in value.items()]
