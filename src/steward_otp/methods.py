"""The method registry: every request method a node knows, its subject kind and its role.

A method name selects the handler that runs a message, and its *kind* (the literal token
``EventACK`` or ``EventNACK``) is the last token of the NATS subject
``<node>.<method>.<kind>``. The kind is only a name: whether delivery is acknowledged is
decided by the message's ``ACKTimeout`` (see ``steward_otp.message.uses_ack``).

``BUILTIN_METHODS`` is a read-only table of the built-in methods, and the one place their
contract is written: subject kind, reply capability, description, arguments and whether
they are quick. The built-in handlers (``steward_otp.handlers``) take their spec from here
(``@handler("REQPing")`` declares no kind of its own; one that contradicts the table fails
at import), so what a sender validates against and what a receiving node subscribes to
cannot disagree. The table lives here rather than next to the handlers because message
validation needs it at import time, before any handler module is loaded.

Every routable built-in method has a built-in handler; the two that are not routable have
none and are refused as a request at input: ``REQNone`` (reply-only, "send no reply") and
``REQInitial`` (a placeholder). A test checks both ways.

An embedding application that adds its own methods takes a writable copy with
:func:`builtin_table`, registers its :class:`MethodSpec` records on it and passes that table
to the functions that accept one (a node does this for the handlers it is given).
"""

from __future__ import annotations

import enum
import re
import types
from collections.abc import Iterable, Iterator, Mapping
from typing import Final

import attrs

__all__ = [
    "BUILTIN_METHODS",
    "BUILTIN_METHOD_SPECS",
    "DEFAULT_REPLY_METHOD",
    "NO_REPLY",
    "RETIRED_METHODS",
    "SUB_PROCESS_PREFIX",
    "EventKind",
    "MethodSpec",
    "MethodTable",
    "UnknownMethodError",
    "builtin_table",
    "lookup_method",
    "method_base_name",
    "unknown_method_reason",
]

NO_REPLY = "REQNone"
"""Reply method meaning "send no reply at all"; never valid as a request method."""

DEFAULT_REPLY_METHOD = "REQToFileAppend"
"""Reply method used when a request leaves ``replyMethod`` empty."""

SUB_PROCESS_PREFIX = "REQSUB"
"""Methods starting with this prefix carry a ``.<uuid>`` suffix naming one sub-process."""

_METHOD_NAME = re.compile(r"[A-Za-z0-9_\-]+")


class EventKind(enum.StrEnum):
    """The subject's last token for a method; its value is the literal wire token."""

    EventACK = "EventACK"
    EventNACK = "EventNACK"


def _check_method_name(_instance: object, _attribute: object, value: str) -> None:
    if not isinstance(value, str) or not _METHOD_NAME.fullmatch(value):
        raise ValueError(
            f"method name {value!r} is not valid: use letters, digits, '_' or '-' "
            "(one NATS subject token, no '.', '*', '>' or spaces)"
        )


@attrs.frozen
class MethodSpec:
    """What the node knows about one method.

    ``reply_capable`` methods may be named in a message's ``replyMethod``; ``routable``
    methods may be sent as requests (``REQNone`` and the ``REQInitial`` placeholder are not,
    and have no handler).
    A ``quick`` method's handler finishes in a moment without waiting on other nodes or
    processes (writing a file, printing, recording): the receiving node runs it with the
    batch it arrived in and stores its completion and replies in one operation.
    The name is validated on construction: one subject token of letters, digits, ``_``, ``-``.
    """

    name: str = attrs.field(validator=_check_method_name)
    kind: EventKind = attrs.field(converter=EventKind)
    reply_capable: bool = False
    description: str = ""
    args: str = ""
    routable: bool = True
    quick: bool = False


RETIRED_METHODS: Final[Mapping[str, str]] = types.MappingProxyType(
    {
        "REQTuiToConsole": "steward-otp has no terminal UI; use REQToConsole",
        "REQRelayInitial": "relaying is asked for with the relayViaNode field; the node "
        "wraps the message in REQRelay itself",
        "REQCopyFileFrom": "Steward removed it in 2022; use REQCopySrc",
        "REQCopyFileTo": "Steward removed it in 2022; use REQCopySrc",
    }
)
"""Steward method names that no node serves, and what to use instead: refused where they are
named, with this reason, rather than queued for a node that could never run them."""


def unknown_method_reason(name: str) -> str:
    """Why ``name`` is refused: "is not a known method", with the retired method's reason."""
    retired = RETIRED_METHODS.get(name)
    return "is not a known method" + (f" ({retired})" if retired else "")


class UnknownMethodError(ValueError):
    """A method name that is not in the method table was used where a known one is needed."""

    def __init__(self, method: str) -> None:
        super().__init__(f"method {method!r} {unknown_method_reason(method)}")
        self.method = method


def method_base_name(name: str) -> str:
    """The table name of ``name``: ``REQSUBCopySrc.<uuid>`` → ``REQSUBCopySrc``.

    Only names starting with ``REQSUB`` lose everything from their first ``.``; every other
    name is returned unchanged.
    """
    if name.startswith(SUB_PROCESS_PREFIX):
        return name.partition(".")[0]
    return name


class MethodTable:
    """A registry of :class:`MethodSpec` records keyed by method name.

    Iteration yields the specs in registration order. A table created with
    ``read_only=True`` (such as ``BUILTIN_METHODS``) refuses :meth:`register`; use
    :meth:`copy` or :func:`builtin_table` to get one you can extend.
    """

    __slots__ = ("_read_only", "_specs")

    def __init__(self, specs: Iterable[MethodSpec] = (), *, read_only: bool = False) -> None:
        self._specs: dict[str, MethodSpec] = {}
        self._read_only = False
        for spec in specs:
            self.register(spec)
        self._read_only = read_only

    @property
    def read_only(self) -> bool:
        """True when :meth:`register` is refused."""
        return self._read_only

    def register(self, spec: MethodSpec, *, replace: bool = False) -> None:
        """Add ``spec``; raise ``ValueError`` if its name exists and ``replace`` is false.

        Raises ``RuntimeError`` on a read-only table.
        """
        if self._read_only:
            raise RuntimeError(
                "this method table is read-only; extend a copy instead (builtin_table())"
            )
        if not isinstance(spec, MethodSpec):
            raise TypeError(f"expected a MethodSpec, got {type(spec).__name__}")
        if spec.name in self._specs and not replace:
            raise ValueError(
                f"method {spec.name!r} is already registered; pass replace=True to override it"
            )
        self._specs[spec.name] = spec

    def lookup(self, name: str) -> MethodSpec | None:
        """The spec for ``name`` (``REQSUB<x>.<uuid>`` resolves to ``REQSUB<x>``), else None."""
        spec = self._specs.get(name)
        if spec is None and name.startswith(SUB_PROCESS_PREFIX):
            spec = self._specs.get(method_base_name(name))
        return spec

    def require(self, name: str) -> MethodSpec:
        """Like :meth:`lookup` but raise :class:`UnknownMethodError` for an unknown name."""
        spec = self.lookup(name)
        if spec is None:
            raise UnknownMethodError(name)
        return spec

    def routing_spec(self, name: str, *, reply: bool) -> MethodSpec:
        """The spec a message of method ``name`` is published by (its subject's kind).

        A known method: its own spec. A reply (``reply`` true) whose method this node does
        not know: an ``EventACK`` spec of that name, since the reply goes back to the node
        that named its method and serves it (an embedding application's own reply method,
        say). Raises :class:`UnknownMethodError` for any other unknown name, for a retired
        one, and for a name that is not one subject token.
        """
        spec = self.lookup(name)
        if spec is not None:
            return spec
        if not reply or name in RETIRED_METHODS or not _METHOD_NAME.fullmatch(name):
            raise UnknownMethodError(name)
        return MethodSpec(name, EventKind.EventACK, reply_capable=True)

    def names(self) -> list[str]:
        """All registered names, in registration order."""
        return list(self._specs)

    def routable_names(self) -> list[str]:
        """Names that may be sent as a request ``method``."""
        return [s.name for s in self._specs.values() if s.routable]

    def reply_method_names(self) -> list[str]:
        """Names that may be given as ``replyMethod`` (includes ``REQNone``)."""
        return [s.name for s in self._specs.values() if s.reply_capable]

    def copy(self) -> MethodTable:
        """A writable table holding the same specs."""
        return MethodTable(self._specs.values())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.lookup(name) is not None

    def __iter__(self) -> Iterator[MethodSpec]:
        return iter(list(self._specs.values()))

    def __len__(self) -> int:
        return len(self._specs)

    def __repr__(self) -> str:
        state = "read-only, " if self._read_only else ""
        return f"<MethodTable {state}{len(self._specs)} methods>"


_ACK = EventKind.EventACK
_NACK = EventKind.EventNACK


def _m(
    name: str,
    kind: EventKind,
    description: str,
    args: str = "",
    *,
    reply: bool = False,
    routable: bool = True,
    quick: bool = False,
) -> MethodSpec:
    return MethodSpec(name, kind, reply, description, args, routable, quick)


BUILTIN_METHOD_SPECS: tuple[MethodSpec, ...] = (
    _m("REQInitial", _ACK, "Internal placeholder; never routed.", routable=False),
    # Operator methods.
    _m("REQOpProcessList", _ACK, "Reply with the node's supervision tree (its process list)."),
    _m("REQOpProcessStart", _ACK, "Start a subscriber for a method.", "[method]"),
    _m(
        "REQOpProcessStop",
        _ACK,
        "Stop a subscriber.",
        '[method] or [method, node, "subscriber"]',
    ),
    _m(
        "REQOpQueueList",
        _ACK,
        "Reply with one JSON line per message the node holds for delivery.",
        "[toNode?, state...]",
    ),
    _m("REQOpQueueCancel", _ACK, "Cancel held messages by id.", "[id...]"),
    _m(
        "REQOpQueuePurge",
        _ACK,
        "Remove queued, failed and cancelled messages, by destination and age.",
        '[toNode or "*", olderThanSeconds?]',
    ),
    _m("REQOpQueueRetry", _ACK, "Queue failed or cancelled messages again, by id.", "[id...]"),
    # Command execution.
    _m(
        "REQCliCommand",
        _ACK,
        "Run a program (no shell); reply with its stdout.",
        "[program, arg...]",
        reply=True,
    ),
    _m(
        "REQCliCommandCont",
        _ACK,
        "Run a program; reply once per output line while it runs (up to the method timeout).",
        "[program, arg...]",
        reply=True,
    ),
    _m(
        "REQTailFile",
        _ACK,
        "Follow a file from its end; reply once per new line; survives rotation.",
        "[path]",
    ),
    # Output.
    _m(
        "REQToConsole",
        _ACK,
        "Print data to stdout (or stderr).",
        '[] or ["stderr"]',
        reply=True,
        quick=True,
    ),
    _m("REQToFileAppend", _ACK, "Append data to the output file.", reply=True, quick=True),
    _m(
        "REQToFile",
        _ACK,
        "Write data to the output file, replacing its content.",
        reply=True,
        quick=True,
    ),
    _m("REQToFileNACK", _NACK, "Like REQToFile, on a NACK subject.", reply=True, quick=True),
    _m("REQNone", _ACK, "Reply method meaning: send no reply.", reply=True, routable=False),
    _m("REQTest", _ACK, "Hand the message to the node's in-process test listener.", reply=True),
    # File copy.
    _m(
        "REQCopySrc",
        _ACK,
        "Copy a file from this node to another node.",
        "[srcPath, dstNode, dstPath, chunkSize?, maxTotalCopyTime?, folderPermission?]",
    ),
    _m(
        "REQCopyDst",
        _ACK,
        "Receive a copied file (sent by REQCopySrc); data = CBOR init record.",
    ),
    _m(
        "REQSUBCopySrc",
        _ACK,
        "Copy protocol, source sub-process (REQSUBCopySrc.<uuid>): chunk requests, results.",
    ),
    _m(
        "REQSUBCopyDst",
        _ACK,
        "Copy protocol, destination sub-process (REQSUBCopyDst.<uuid>): chunks, aborts.",
    ),
    # Liveness.
    _m(
        "REQHello",
        _NACK,
        "A node says it is alive; data = its 32-byte public signing key.",
        quick=True,
    ),
    _m("REQErrorLog", _ACK, "Append an error/info line to the central error log.", quick=True),
    _m("REQPing", _ACK, "Record the ping and reply with empty data.", quick=True),
    _m("REQPong", _ACK, "Record the pong of a ping.", reply=True, quick=True),
    _m("REQPublicKey", _ACK, "Reply with the node's 32-byte signing public key.", quick=True),
    # HTTP.
    _m("REQHttpGet", _ACK, "HTTP GET a URL; reply with the body.", "[url]"),
    _m(
        "REQHttpGetScheduled",
        _ACK,
        "Deprecated: REQHttpGet on the schedule [intervalSeconds, totalMinutes*60]; "
        "reply with each body.",
        "[url, intervalSeconds, totalMinutes]",
    ),
    # Key distribution.
    _m(
        "REQKeysRequestUpdate",
        _NACK,
        "Ask central for the allowed keys; data = local hash (answered when they differ).",
    ),
    _m(
        "REQKeysDeliverUpdate",
        _NACK,
        "The allowed keys central delivers; data = keys JSON.",
        reply=True,
    ),
    _m("REQKeysAllow", _ACK, "Allow the pending public keys of nodes.", "[node...]"),
    _m("REQKeysDelete", _ACK, "Delete the public keys of nodes.", "[node...]"),
    # ACLs.
    _m(
        "REQAclRequestUpdate",
        _NACK,
        "Ask central for the node's ACL; data = local hash (answered when it differs).",
    ),
    _m(
        "REQAclDeliverUpdate",
        _NACK,
        "The ACL central delivers; data = ACL JSON.",
        reply=True,
        quick=True,
    ),
    _m("REQAclAddCommand", _ACK, "Allow a command.", "[host, source, command]"),
    _m("REQAclDeleteCommand", _ACK, "Remove an allowed command.", "[host, source, command]"),
    _m("REQAclDeleteSource", _ACK, "Remove a source with all its commands.", "[host, source]"),
    _m("REQAclGroupNodesAddNode", _ACK, "Add a node to a node group.", "[nodeGroup, node]"),
    _m(
        "REQAclGroupNodesDeleteNode",
        _ACK,
        "Remove a node from a node group.",
        "[nodeGroup, node]",
    ),
    _m("REQAclGroupNodesDeleteGroup", _ACK, "Delete a node group.", "[nodeGroup]"),
    _m(
        "REQAclGroupCommandsAddCommand",
        _ACK,
        "Add a command to a command group.",
        "[commandGroup, command]",
    ),
    _m(
        "REQAclGroupCommandsDeleteCommand",
        _ACK,
        "Remove a command from a command group.",
        "[commandGroup, command]",
    ),
    _m("REQAclGroupCommandsDeleteGroup", _ACK, "Delete a command group.", "[commandGroup]"),
    _m("REQAclExport", _ACK, "Reply with the ACL rules and groups as JSON."),
    _m(
        "REQAclImport",
        _ACK,
        "Replace the ACL rules and groups with an exported document.",
        "[aclJSON]",
    ),
    # Relay.
    _m("REQRelay", _ACK, "Forward a relayed message to its destination."),
)
"""The built-in methods, in a stable order."""

BUILTIN_METHODS = MethodTable(BUILTIN_METHOD_SPECS, read_only=True)
"""Read-only table of the built-in methods; the default ``table`` argument everywhere."""


def builtin_table() -> MethodTable:
    """A new writable table holding the built-in methods, ready for :meth:`MethodTable.register`."""
    return BUILTIN_METHODS.copy()


def lookup_method(name: str, table: MethodTable = BUILTIN_METHODS) -> MethodSpec | None:
    """The spec for ``name`` in ``table`` (``REQSUB...`` suffix rule applied), else None."""
    return table.lookup(name)
