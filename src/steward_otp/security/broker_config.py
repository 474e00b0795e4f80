"""A nats-server configuration in which every node may do only what the protocol needs.

``steward-otp broker-config`` (see :func:`write_broker_config`) writes, for a list of node
names, one nats-server configuration file and one nkey seed per node. Each node is a user
of the broker, authenticated by its nkey, with these permissions:

* **subscribe** only to its own request subjects (``<node>.<method>.EventACK`` /
  ``EventNACK``, and the copy protocol's ``<node>.REQSUBCopySrc.<id>.EventACK`` /
  ``REQSUBCopyDst``), to its own reply inbox (``_SOTP.INBOX.<node token>.>``, the prefix
  the bridge uses for ACKs and replies), and -- on the central error logger -- to
  ``errorCentral.REQErrorLog.EventACK``; with JetStream, to its own delivery subject
  ``_SOTP.JS.<node>``. A node cannot read another node's messages or its ACKs.
* **publish** to any node's request subjects (the protocol sends anywhere; signatures and
  ACLs decide what runs), to ACK and reply inboxes, and to the central error log; with
  JetStream, into the stream and to the JetStream API subjects the node uses (its own
  consumer only; deleting waiting messages only on central). Nothing else: no ``$SYS``, no
  other account's subjects, no other consumer's acknowledgements.

Node names are NATS subject tokens joined by dots, so ``a`` and ``a.b`` could not be kept
apart by subject permissions; such a pair is refused with an error naming both. The node
token in the inbox prefix is the node name with ``.`` written as ``/`` (node names cannot
contain ``/``), one subject token per node.

The seeds are private keys: each file is written with mode 0600 and belongs on its node
only (``nkey_seed_file``). Nothing here talks to a broker; the generated file is checked by
starting nats-server with it in the tests.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final

import attrs

from steward_otp.jetstream import consumer_name
from steward_otp.limits import node_name_problem
from steward_otp.security.nkey import UserNkey, user_nkey_from_seed
from steward_otp.transport import INBOX_PREFIX

__all__ = [
    "BrokerConfigError",
    "BrokerLayout",
    "NodePermissions",
    "node_permissions",
    "render_config",
    "write_broker_config",
]

ERROR_CENTRAL_SUBJECT: Final = "errorCentral.REQErrorLog.EventACK"
_KINDS: Final = ("EventACK", "EventNACK")
_SUB_PROCESSES: Final = ("REQSUBCopySrc", "REQSUBCopyDst")
CONFIG_FILE: Final = "nats-server.conf"
MAX_NODE_TOKENS: Final = 5


class BrokerConfigError(ValueError):
    """The node list cannot be given safe permissions; the text says which names and why."""


@attrs.frozen
class NodePermissions:
    """What one node may publish and subscribe to (nats-server subject patterns)."""

    node: str
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]


def node_permissions(
    node: str, *, central: str, error_logger: str, jetstream: bool
) -> NodePermissions:
    """The permissions of ``node`` in a fleet whose central node is ``central`` and whose
    central error logger is ``error_logger``."""
    subscribe = [f"{node}.*.{kind}" for kind in _KINDS]
    subscribe += [f"{node}.{sub}.*.EventACK" for sub in _SUB_PROCESSES]
    subscribe.append(f"{INBOX_PREFIX}.{node.replace('.', '/')}.>")  # see inbox_prefix
    if node == error_logger:
        subscribe.append(ERROR_CENTRAL_SUBJECT)
    publish = [
        *_request_patterns(),  # requests to any node
        ERROR_CENTRAL_SUBJECT,
        f"{INBOX_PREFIX}.>",  # ACKs and replies to other nodes' inboxes
        "_INBOX.>",  # ACKs to Steward nodes, which use the client library's inboxes
    ]
    if jetstream:
        consumer = consumer_name(node)
        publish += [
            "NODES.>",
            "$JS.API.INFO",
            "$JS.API.STREAM.INFO.NODES",
            "$JS.API.STREAM.CREATE.NODES",
            "$JS.API.STREAM.UPDATE.NODES",
            "$JS.API.STREAM.MSG.GET.NODES",
            "$JS.API.CONSUMER.NAMES.NODES",
            f"$JS.API.CONSUMER.CREATE.NODES.{consumer}",
            f"$JS.API.CONSUMER.CREATE.NODES.{consumer}.>",
            f"$JS.API.CONSUMER.DURABLE.CREATE.NODES.{consumer}",
            "$JS.API.CONSUMER.INFO.NODES.*",
            f"$JS.ACK.NODES.{consumer}.>",
        ]
        if node == central:
            publish.append("$JS.API.STREAM.MSG.DELETE.NODES")
        subscribe.append(f"_SOTP.JS.{node}")
    return NodePermissions(node, tuple(publish), tuple(subscribe))


def _request_patterns(max_tokens: int = MAX_NODE_TOKENS + 3) -> list[str]:
    """Request subjects ``<node...>.<method>[.<id>].<kind>`` of up to ``max_tokens`` tokens
    (node names of up to five tokens): nats-server patterns cannot say "ends with
    EventACK", so each length is listed."""
    return [
        ".".join(["*"] * (length - 1) + [kind])
        for kind in _KINDS
        for length in range(3, max_tokens + 1)
    ]


def check_node_names(nodes: Sequence[str]) -> None:
    """Raise :class:`BrokerConfigError` for a name that is not a node name, a repeated one,
    or two names whose subjects the broker could not keep apart (``a`` and ``a.b``)."""
    if not nodes:
        raise BrokerConfigError("no node names given; allowed: one or more node names")
    seen: set[str] = set()
    for node in nodes:
        problem = node_name_problem(node)
        if problem is not None:
            raise BrokerConfigError(f"node name {node!r} is not valid: it {problem}")
        if node in seen:
            raise BrokerConfigError(f"node name {node!r} is given twice")
        if node.count(".") >= MAX_NODE_TOKENS:
            raise BrokerConfigError(
                f"node name {node!r} has more than {MAX_NODE_TOKENS} dot-separated tokens; "
                "the generated permissions cover names of up to that many"
            )
        seen.add(node)
    for node in nodes:
        for other in nodes:
            if other != node and other.startswith(node + "."):
                raise BrokerConfigError(
                    f"node names {node!r} and {other!r}: one is the other plus more tokens, "
                    "so broker permissions cannot keep their subjects apart; rename one"
                )


def render_config(
    port: int, users: Iterable[tuple[UserNkey, NodePermissions]], *, jetstream: bool
) -> str:
    """The nats-server configuration text (its JSON-compatible syntax)."""
    lines = [
        "# Generated by `steward-otp broker-config`: one nkey user per node, each allowed only",
        "# what the steward-otp protocol needs (see docs/security.md).",
        f"port: {port}",
    ]
    if jetstream:
        lines.append('jetstream: {store_dir: "jetstream"}')
    lines.append("authorization: {")
    lines.append("  users: [")
    for nkey, permissions in users:
        entry = {
            "nkey": nkey.public,
            "permissions": {
                "publish": {"allow": list(permissions.publish)},
                "subscribe": {"allow": list(permissions.subscribe)},
            },
        }
        lines.append(f"    # {permissions.node}")
        lines.append("    " + json.dumps(entry) + ",")
    lines.append("  ]")
    lines.append("}")
    return "\n".join(lines) + "\n"


@attrs.frozen
class BrokerLayout:
    """What :func:`write_broker_config` wrote."""

    config_file: Path
    seed_files: dict[str, Path]


def write_broker_config(
    folder: Path,
    nodes: Sequence[str],
    *,
    central: str,
    error_logger: str | None = None,
    port: int = 4222,
    jetstream: bool = False,
) -> BrokerLayout:
    """Write ``<folder>/nats-server.conf`` and ``<folder>/<node>.nkey`` (mode 0600) for
    every node; refuse (:class:`BrokerConfigError`, nothing written) names that cannot be
    kept apart, a central node or error logger not among ``nodes``, a port outside 1-65535,
    or a folder that already holds a configuration (seeds are never overwritten)."""
    check_node_names(nodes)
    if central not in nodes:
        raise BrokerConfigError(f"central node {central!r} is not among the nodes {list(nodes)}")
    if error_logger is not None and error_logger not in nodes:
        raise BrokerConfigError(
            f"error logger node {error_logger!r} is not among the nodes {list(nodes)}"
        )
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise BrokerConfigError(f"port {port!r} is not allowed; allowed: 1 to 65535")
    config_file = folder / CONFIG_FILE
    if config_file.exists():
        raise BrokerConfigError(
            f"{config_file} exists: choose an empty folder (seeds are never overwritten)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    users: list[tuple[UserNkey, NodePermissions]] = []
    seed_files: dict[str, Path] = {}
    for node in nodes:
        nkey = user_nkey_from_seed(os.urandom(32))
        permissions = node_permissions(
            node, central=central, error_logger=error_logger or central, jetstream=jetstream
        )
        users.append((nkey, permissions))
        seed_path = folder / f"{node}.nkey"
        fd = os.open(seed_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as file:
            file.write(nkey.seed + "\n")
        seed_files[node] = seed_path
    config_file.write_text(render_config(port, users, jetstream=jetstream), encoding="utf-8")
    return BrokerLayout(config_file, seed_files)
