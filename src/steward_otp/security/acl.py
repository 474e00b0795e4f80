"""ACLs, pure: the names rules use, the ACL generated for one node, its hash, and the
decision whether a node runs a message.

Steward's model (spec 8.5): central keeps **rules** ``host -> source -> {command}``, plus
**node groups** (``grp_nodes_<name> -> {node}``) and **command groups**
(``grp_commands_<name> -> {command}``) -- the editable content,
:class:`~steward_otp.security.central_acl.CentralAcl`. A host or source is a node name, a
node group, or ``*`` (every node): :func:`check_host`. A command is a command line (a
REQCliCommand's ``methodArgs`` joined by single spaces), a command group, ``*`` (anything),
or -- new in steward-otp -- the name of a method (``REQTailFile``): that method with any
arguments (:func:`check_command`).

:class:`NodeAcl` is the ACL central generates for one host: ``source -> {command}`` with
groups expanded (``*`` as a source stays ``*``: any node whose signature the host accepts).
:attr:`NodeAcl.hash` is what nodes and central compare; an empty ACL hashes to 32 zero
bytes, as in Steward.

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
from typing import Final

import attrs

from steward_otp.config import is_valid_node_name
from steward_otp.limits import text_problem

__all__ = [
    "ALL",
    "COMMAND_GROUP_PREFIX",
    "COMMAND_METHODS",
    "EMPTY_HASH",
    "NODE_GROUP_PREFIX",
    "UNGATED_METHODS",
    "AclError",
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


def frozen_sets(mapping: Mapping[str, Iterable[str]]) -> Mapping[str, frozenset[str]]:
    """``mapping`` read-only, sorted, each value a frozenset, empty values left out."""
    return MappingProxyType({k: frozenset(v) for k, v in sorted(mapping.items()) if v})


def _check_text(value: str, what: str) -> None:
    """Valid Unicode text (no lone surrogate, which has no UTF-8 form for the ACL file)."""
    problem = text_problem(value)
    if problem is not None:
        raise AclError(f"{what}: {value!r} {problem}")


def check_host(value: str, what: str) -> None:
    """A host or source: a node name, a node group or ``*``; raises AclError naming ``what``."""
    _check_text(value, what)
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
    _check_text(value, what)
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
    _check_text(value, what)
    if not value.startswith(prefix) or len(value) == len(prefix):
        raise AclError(f"{what}: {value!r} is not a group name: it must start with {prefix!r}")
    if any(c.isspace() for c in value):
        raise AclError(f"{what}: {value!r}: a group name has no spaces")


@attrs.frozen
class NodeAcl:
    """The ACL of one node: which source may run which commands (groups expanded)."""

    node: str
    sources: Mapping[str, frozenset[str]] = attrs.field(factory=dict, converter=frozen_sets)

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
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
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
