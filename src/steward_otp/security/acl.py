"""ACLs, pure: central's editable rules and groups, the ACL generated for one node, its hash,
and the decision whether a node runs a message.

Steward's model (spec 8.5): central keeps **rules** ``host -> source -> {command}``, plus
**node groups** (``grp_nodes_<name> -> {node}``) and **command groups**
(``grp_commands_<name> -> {command}``). A host or source is a node name, a node group, or
``*`` (every node). A command is a command line (a REQCliCommand's ``methodArgs`` joined by
single spaces), a command group, ``*`` (anything), or -- new in steward-otp -- the name of a
method (``REQTailFile``): that method with any arguments.

:class:`CentralAcl` is the editable content (immutable; each edit returns a new state with
``version`` one higher when something changed). :meth:`CentralAcl.acl_for` generates the
:class:`NodeAcl` of one host: ``source -> {command}`` with groups expanded (``*`` as a source
stays ``*``: any node whose signature the host accepts). :attr:`NodeAcl.hash` is what nodes
and central compare; an empty ACL hashes to 32 zero bytes, as in Steward.

:func:`decide` is the check a node runs for every message when ``enable_acl_check`` is on:

* messages signed by the node itself always run (they came from its own inputs: the socket,
  the read folder, its timers; whoever can use those has the node's own rights anyway);
* the methods in :data:`UNGATED_METHODS` always run: replies and output, liveness, key and
  ACL distribution, the copy protocol's sub-processes (its start, REQCopySrc and
  REQCopyDst, is checked) -- without them no reply or ACL update could arrive;
* REQCliCommand and REQCliCommandCont run when a rule of the source allows ``*``, the method
  name, or exactly the command line;
* every other method runs when a rule of the source allows ``*`` or the method name.

Deny by default: no rule, no run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, Final

import attrs

from steward_otp.config import is_valid_node_name

__all__ = [
    "ALL",
    "COMMAND_GROUP_PREFIX",
    "COMMAND_METHODS",
    "EMPTY_HASH",
    "NODE_GROUP_PREFIX",
    "UNGATED_METHODS",
    "AclError",
    "CentralAcl",
    "NodeAcl",
    "command_line",
    "decide",
]

ALL: Final = "*"
NODE_GROUP_PREFIX: Final = "grp_nodes_"
COMMAND_GROUP_PREFIX: Final = "grp_commands_"
EMPTY_HASH: Final = bytes(32)
"""The hash of an empty ACL (and of a node that has received none)."""

COMMAND_METHODS: Final = frozenset({"REQCliCommand", "REQCliCommandCont"})
"""Methods whose rules may name the command line."""

UNGATED_METHODS: Final = frozenset(
    {
        # replies and output
        "REQToFileAppend",
        "REQToFile",
        "REQToFileNACK",
        "REQToConsole",
        "REQTuiToConsole",
        "REQNone",
        "REQTest",
        # liveness and the error log
        "REQHello",
        "REQErrorLog",
        "REQPing",
        "REQPong",
        "REQPublicKey",
        # key and ACL distribution (the deliveries are checked to come from central)
        "REQKeysRequestUpdate",
        "REQKeysDeliverUpdate",
        "REQAclRequestUpdate",
        "REQAclDeliverUpdate",
        # the copy protocol after its checked start; relays (the destination checks)
        "REQSUBCopySrc",
        "REQSUBCopyDst",
        "REQRelay",
        "REQRelayInitial",
    }
)
"""Methods the ACL does not restrict (see the module docstring)."""


class AclError(ValueError):
    """An ACL edit or document that cannot be used; the text says why."""


def command_line(method_args: Iterable[str]) -> str:
    """The command a REQCliCommand runs, as ACL rules name it: its args joined by spaces."""
    return " ".join(method_args)


def _frozen_sets(mapping: Mapping[str, Iterable[str]]) -> Mapping[str, frozenset[str]]:
    return MappingProxyType({k: frozenset(v) for k, v in sorted(mapping.items()) if v})


def _frozen_rules(
    rules: Mapping[str, Mapping[str, Iterable[str]]],
) -> Mapping[str, Mapping[str, frozenset[str]]]:
    cleaned = {host: _frozen_sets(sources) for host, sources in sorted(rules.items())}
    return MappingProxyType({host: sources for host, sources in cleaned.items() if sources})


def check_host(value: str, what: str) -> None:
    """A host or source: a node name, a node group or ``*``; raises AclError naming ``what``."""
    if value == ALL:
        return
    if value.startswith(NODE_GROUP_PREFIX):
        if len(value) == len(NODE_GROUP_PREFIX):
            raise AclError(f"{what}: {value!r} names no group after {NODE_GROUP_PREFIX!r}")
        return
    if value.startswith(COMMAND_GROUP_PREFIX):
        raise AclError(
            f"{what}: {value!r} is a command group; a node, a node group "
            f"({NODE_GROUP_PREFIX}...) or '*' is needed here"
        )
    if not is_valid_node_name(value):
        raise AclError(
            f"{what}: {value!r} is not a node name, a node group ({NODE_GROUP_PREFIX}...) or '*'"
        )


def check_command(value: str, what: str) -> None:
    """A command: any non-empty text but a node group; raises AclError naming ``what``."""
    if not value.strip():
        raise AclError(
            f"{what}: the command is empty; give a command line, a method, "
            f"a command group ({COMMAND_GROUP_PREFIX}...) or '*'"
        )
    if value.startswith(NODE_GROUP_PREFIX):
        raise AclError(f"{what}: {value!r} is a node group; a command or command group is needed")
    if value.startswith(COMMAND_GROUP_PREFIX) and len(value) == len(COMMAND_GROUP_PREFIX):
        raise AclError(f"{what}: {value!r} names no group after {COMMAND_GROUP_PREFIX!r}")


def check_group(value: str, prefix: str, what: str) -> None:
    """A group name with ``prefix``; raises AclError naming ``what``."""
    if not value.startswith(prefix) or len(value) == len(prefix):
        raise AclError(f"{what}: {value!r} is not a group name: it must start with {prefix!r}")
    if any(c.isspace() for c in value):
        raise AclError(f"{what}: {value!r}: a group name has no spaces")


@attrs.frozen
class NodeAcl:
    """The ACL of one node: which source may run which commands (groups expanded)."""

    node: str
    sources: Mapping[str, frozenset[str]] = attrs.field(factory=dict, converter=_frozen_sets)

    @property
    def hash(self) -> bytes:
        """SHA-256 of the canonical JSON of this ACL; :data:`EMPTY_HASH` when it is empty."""
        if not self.sources:
            return EMPTY_HASH
        canonical = json.dumps(
            {"node": self.node, "acl": self.to_dict()},
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        return hashlib.sha256(canonical.encode()).digest()

    def to_dict(self) -> dict[str, list[str]]:
        """``{source: [commands, sorted]}``."""
        return {source: sorted(commands) for source, commands in self.sources.items()}

    def to_json(self, version: int = 0) -> str:
        """The document central delivers and the node stores."""
        document = {
            "node": self.node,
            "acl": self.to_dict(),
            "hash": self.hash.hex(),
            "version": version,
        }
        return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str) -> tuple[NodeAcl, int]:
        """Read a delivered or stored ACL and its version; raises AclError naming ``source``.

        The ``hash`` it carries must be the hash of its content.
        """
        try:
            document = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise AclError(f"{source}: not valid JSON: {exc}") from None
        if not isinstance(document, dict):
            raise AclError(f'{source}: expected an object with "node", "acl" and "hash"')
        node, acl, hash_text = document.get("node"), document.get("acl"), document.get("hash")
        version = document.get("version", 0)
        if not isinstance(node, str) or not is_valid_node_name(node):
            raise AclError(f'{source}: "node" must be a node name, not {node!r}')
        if not isinstance(acl, dict) or not all(
            isinstance(s, str) and isinstance(c, list) and all(isinstance(x, str) for x in c)
            for s, c in acl.items()
        ):
            raise AclError(f'{source}: "acl" must be an object {{source: [command, ...]}}')
        if isinstance(version, bool) or not isinstance(version, int):
            raise AclError(f'{source}: "version" must be a whole number')
        result = cls(node, acl)
        if hash_text != result.hash.hex():
            raise AclError(
                f'{source}: "hash" {hash_text!r} is not the hash of its ACL '
                f"({result.hash.hex()}): damaged or altered"
            )
        return result, version


@attrs.frozen
class CentralAcl:
    """Central's editable ACL: rules, node groups and command groups (immutable)."""

    rules: Mapping[str, Mapping[str, frozenset[str]]] = attrs.field(
        factory=dict, converter=_frozen_rules
    )
    node_groups: Mapping[str, frozenset[str]] = attrs.field(factory=dict, converter=_frozen_sets)
    command_groups: Mapping[str, frozenset[str]] = attrs.field(factory=dict, converter=_frozen_sets)
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
            raise AclError(f"node: {node!r} is not a node name")
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
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
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


def decide(
    acl: NodeAcl | None, *, node: str, source: str, method: str, method_args: Iterable[str]
) -> str | None:
    """Whether ``node`` runs ``method`` with ``method_args`` signed by ``source``: None to
    run it, or why not (see the module docstring for the rules)."""
    if source == node or method in UNGATED_METHODS:
        return None
    if acl is None:
        return (
            f"{node} has no ACL yet (none received from central): with enable_acl_check on, "
            "nothing but its own messages runs"
        )
    allowed = acl.sources.get(source, frozenset()) | acl.sources.get(ALL, frozenset())
    if ALL in allowed or method in allowed:
        return None
    if method in COMMAND_METHODS:
        command = command_line(method_args)
        if command in allowed:
            return None
        return (
            f"the ACL of {node} does not allow {source!r} to run {method} {command!r} "
            f"(ACL {acl.hash.hex()[:12]})"
        )
    return (
        f"the ACL of {node} does not allow {source!r} to run {method} (ACL {acl.hash.hex()[:12]})"
    )
