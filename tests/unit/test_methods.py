"""The method table: kinds, roles, the REQSUB lookup rule, runtime registration, and the
one place built-in methods are declared (their handlers take their spec from it)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from steward_otp.config import load_config
from steward_otp.handlers import builtin_handlers
from steward_otp.handlers.acl import acl_handlers
from steward_otp.handlers.base import (
    BatchResult,
    Handler,
    HandlerContext,
    NodeServices,
    handler,
)
from steward_otp.handlers.keys import key_handlers
from steward_otp.handlers.liveness import hello_handler
from steward_otp.inputs.intake import accept_document
from steward_otp.message import Message, validate_message
from steward_otp.methods import (
    BUILTIN_METHODS,
    DEFAULT_REPLY_METHOD,
    NO_REPLY,
    RETIRED_METHODS,
    EventKind,
    MethodSpec,
    MethodTable,
    UnknownMethodError,
    builtin_table,
    lookup_method,
    method_base_name,
)
from steward_otp.node import Node
from steward_otp.security.service import NodeSecurity

# Steward §5.1, plus the methods later issues add: (name, kind).
SPEC_METHODS = [
    ("REQInitial", "EventACK"),
    ("REQOpProcessList", "EventACK"),
    ("REQOpProcessStart", "EventACK"),
    ("REQOpProcessStop", "EventACK"),
    ("REQCliCommand", "EventACK"),
    ("REQCliCommandCont", "EventACK"),
    ("REQToConsole", "EventACK"),
    ("REQToFileAppend", "EventACK"),
    ("REQToFile", "EventACK"),
    ("REQToFileNACK", "EventNACK"),
    ("REQCopySrc", "EventACK"),
    ("REQCopyDst", "EventACK"),
    ("REQSUBCopySrc", "EventACK"),
    ("REQSUBCopyDst", "EventACK"),
    ("REQHello", "EventNACK"),
    ("REQErrorLog", "EventACK"),
    ("REQPing", "EventACK"),
    ("REQPong", "EventACK"),
    ("REQHttpGet", "EventACK"),
    ("REQHttpGetScheduled", "EventACK"),
    ("REQTailFile", "EventACK"),
    ("REQTest", "EventACK"),
    ("REQPublicKey", "EventACK"),
    ("REQKeysRequestUpdate", "EventNACK"),
    ("REQKeysDeliverUpdate", "EventNACK"),
    ("REQKeysAllow", "EventACK"),
    ("REQKeysDelete", "EventACK"),
    ("REQAclRequestUpdate", "EventNACK"),
    ("REQAclDeliverUpdate", "EventNACK"),
    ("REQAclAddCommand", "EventACK"),
    ("REQAclDeleteCommand", "EventACK"),
    ("REQAclDeleteSource", "EventACK"),
    ("REQAclGroupNodesAddNode", "EventACK"),
    ("REQAclGroupNodesDeleteNode", "EventACK"),
    ("REQAclGroupNodesDeleteGroup", "EventACK"),
    ("REQAclGroupCommandsAddCommand", "EventACK"),
    ("REQAclGroupCommandsDeleteCommand", "EventACK"),
    ("REQAclGroupCommandsDeleteGroup", "EventACK"),
    ("REQAclExport", "EventACK"),
    ("REQAclImport", "EventACK"),
    ("REQRelay", "EventACK"),
    ("REQOpQueueList", "EventACK"),
    ("REQOpQueueCancel", "EventACK"),
    ("REQOpQueuePurge", "EventACK"),
    ("REQOpQueueRetry", "EventACK"),
]


def test_event_kinds_are_the_literal_subject_tokens() -> None:
    assert [k.value for k in EventKind] == ["EventACK", "EventNACK"]
    assert f"{EventKind.EventACK}" == "EventACK"
    assert EventKind("EventNACK") is EventKind.EventNACK


@pytest.mark.parametrize(("name", "kind"), SPEC_METHODS)
def test_every_method_has_its_kind(name: str, kind: str) -> None:
    spec = lookup_method(name)
    assert spec is not None
    assert spec.name == name
    assert spec.kind == EventKind(kind)
    assert spec.description


def test_table_holds_exactly_the_spec_methods_and_reqnone() -> None:
    assert set(BUILTIN_METHODS.names()) == {name for name, _ in SPEC_METHODS} | {NO_REPLY}


def test_reqnone_is_a_reply_method_only() -> None:
    spec = lookup_method(NO_REPLY)
    assert spec is not None
    assert spec.reply_capable
    assert not spec.routable
    assert NO_REPLY not in BUILTIN_METHODS.routable_names()


def test_reqinitial_is_an_unroutable_placeholder() -> None:
    spec = lookup_method("REQInitial")
    assert spec is not None and not spec.routable and not spec.reply_capable


def test_reply_methods_include_stewards_list_and_the_ones_flows_need() -> None:
    replies = set(BUILTIN_METHODS.reply_method_names())
    stewards_get_reply_methods = {
        "REQToConsole",
        "REQCliCommand",
        "REQCliCommandCont",
        "REQToFile",
        "REQToFileAppend",
        "REQNone",
    }
    assert stewards_get_reply_methods <= replies
    # ping/pong, key and ACL distribution, the test hook, the NACK file writer
    assert {"REQPong", "REQKeysDeliverUpdate", "REQAclDeliverUpdate", "REQTest"} <= replies
    assert "REQToFileNACK" in replies
    assert "REQHttpGet" not in replies
    assert DEFAULT_REPLY_METHOD in replies


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("REQSUBCopySrc", "REQSUBCopySrc"),
        (f"REQSUBCopySrc.{uuid.uuid4()}", "REQSUBCopySrc"),
        (f"REQSUBCopyDst.{uuid.uuid4()}", "REQSUBCopyDst"),
        ("REQSUBCopyDst.a.b", "REQSUBCopyDst"),
        ("REQCliCommand.x", None),
        ("REQSUBUnknown.x", None),
        ("ECHORequest", None),
        ("", None),
        ("reqclicommand", None),
    ],
)
def test_lookup_applies_the_reqsub_suffix_rule(name: str, expected: str | None) -> None:
    spec = lookup_method(name)
    assert (spec.name if spec else None) == expected


def test_method_base_name_strips_only_reqsub_suffixes() -> None:
    assert method_base_name("REQSUBCopySrc.1234") == "REQSUBCopySrc"
    assert method_base_name("REQHello.1234") == "REQHello.1234"


def test_require_raises_a_value_error_naming_the_method() -> None:
    with pytest.raises(UnknownMethodError, match="ECHORequest") as info:
        BUILTIN_METHODS.require("ECHORequest")
    assert isinstance(info.value, ValueError)


def test_builtin_table_is_read_only() -> None:
    with pytest.raises(RuntimeError, match="read-only"):
        BUILTIN_METHODS.register(MethodSpec("REQMine", EventKind.EventACK))
    assert "REQMine" not in BUILTIN_METHODS


def test_user_methods_register_on_a_copy() -> None:
    table = builtin_table()
    table.register(MethodSpec("REQMine", "EventNACK", reply_capable=True, description="mine"))
    spec = lookup_method("REQMine", table)
    assert spec is not None and spec.kind is EventKind.EventNACK
    assert "REQMine" in table.reply_method_names()
    assert lookup_method("REQMine") is None
    assert len(table) == len(BUILTIN_METHODS) + 1


def test_duplicate_registration_needs_replace() -> None:
    table = MethodTable([MethodSpec("REQA", EventKind.EventACK)])
    with pytest.raises(ValueError, match="already registered"):
        table.register(MethodSpec("REQA", EventKind.EventNACK))
    table.register(MethodSpec("REQA", EventKind.EventNACK), replace=True)
    assert table.require("REQA").kind is EventKind.EventNACK


def test_registered_reqsub_methods_follow_the_suffix_rule() -> None:
    table = MethodTable([MethodSpec("REQSUBMine", EventKind.EventACK)])
    assert table.require("REQSUBMine.123").name == "REQSUBMine"


@pytest.mark.parametrize("name", ["", "REQ.Bad", "REQ Bad", "REQ*", "REQ>", "REQ\n"])
def test_method_names_must_be_one_subject_token(name: str) -> None:
    with pytest.raises(ValueError, match="not valid"):
        MethodSpec(name, EventKind.EventACK)


def test_unknown_kind_is_rejected() -> None:
    with pytest.raises(ValueError):
        MethodSpec("REQX", "EventMaybe")


def test_iteration_is_in_registration_order() -> None:
    names = [spec.name for spec in BUILTIN_METHODS]
    assert names == BUILTIN_METHODS.names()
    assert names[0] == "REQInitial"


@pytest.mark.parametrize("name", ["REQTuiToConsole", "REQRelayInitial", "REQCopyFileTo"])
def test_a_retired_steward_method_is_refused_saying_what_to_use(name: str) -> None:
    assert lookup_method(name) is None
    with pytest.raises(UnknownMethodError, match=rf"^method '{name}' is not a known method \("):
        BUILTIN_METHODS.require(name)
    problems = validate_message(Message(to_node="ship1", method=name))
    assert [p.field for p in problems] == ["method"]
    assert problems[0].reason.startswith("is not a known method (")
    assert RETIRED_METHODS[name] in str(problems[0])


def served_by_a_node(home: Path) -> Node:
    """A node with every built-in handler, as a node assembles them (no broker, not run)."""
    return Node(load_config(home, {"node_name": "central"}))


def every_builtin_handler(home: Path) -> list[Handler]:
    """Every built-in handler: the node's, and those the modules build on their own."""
    security = NodeSecurity(load_config(home, {"node_name": "central"}))
    node = served_by_a_node(home)
    return [
        *node.handlers,
        *builtin_handlers(node.processes, node),
        hello_handler(),
        *key_handlers(security),
        *acl_handlers(security.acl),
    ]


def test_every_builtin_method_has_a_handler_or_is_never_a_request(tmp_path: Path) -> None:
    """One method table: a built-in method is served by a built-in handler, or it is not
    routable -- reply-only (REQNone) or a placeholder (REQInitial) -- and has none. Retired
    Steward methods are in neither."""
    served = set(served_by_a_node(tmp_path).handlers.names())
    assert {spec.name for spec in BUILTIN_METHODS if spec.routable} == served
    unserved = [spec for spec in BUILTIN_METHODS if spec.name not in served]
    assert {spec.name for spec in unserved} == {NO_REPLY, "REQInitial"}
    assert not any(spec.routable for spec in unserved)
    assert [spec.name for spec in unserved if spec.reply_capable] == [NO_REPLY]  # reply-only
    assert not set(RETIRED_METHODS) & (served | set(BUILTIN_METHODS.names()))


def test_every_builtin_handler_has_the_method_tables_spec(tmp_path: Path) -> None:
    """What ``send`` validates against (the table) is what the receiving node subscribes
    to (its handler's spec): kind, reply capability, description, args, quick, routable."""
    for served in every_builtin_handler(tmp_path):
        assert served.method == BUILTIN_METHODS.require(served.name), served.name


def test_a_node_validates_against_what_it_serves(tmp_path: Path) -> None:
    node = served_by_a_node(tmp_path)
    for served in node.handlers:
        assert node.table.lookup(served.name) == served.method, served.name
    assert list(node.table) == list(BUILTIN_METHODS)


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ({"reply_capable": False}, "reply_capable=False differs from the method table's True"),
        ({"kind": "NACK"}, "kind='EventNACK' differs from the method table's 'EventACK'"),
        ({"kind": EventKind.EventNACK}, "kind='EventNACK'"),
        ({"description": "mine"}, "description='mine' differs from the method table's \"Hand"),
        ({"args": "[x]"}, "args='[x]' differs from the method table's ''"),
        ({"quick": True}, "quick=True differs from the method table's False"),
    ],
)
def test_a_builtin_handler_contradicting_the_table_is_refused(
    given: dict[str, Any], shown: str
) -> None:
    with pytest.raises(ValueError, match=r"^handler REQTest: ") as info:
        handler("REQTest", **given)
    assert shown in str(info.value)
    assert "steward_otp.methods" in str(info.value)


def test_a_builtin_handler_may_repeat_what_the_table_says() -> None:
    spec = BUILTIN_METHODS.require("REQToFileNACK")
    declared = handler("REQToFileNACK", kind="NACK", reply_capable=True, quick=True)(_nothing)
    assert declared.method == spec


def test_a_builtin_handler_inherits_quick_for_its_batch() -> None:
    assert handler("REQToFile", batch=_no_batch)(_nothing).method.quick
    with pytest.raises(ValueError, match="REQTest: batch= needs quick=True"):
        handler("REQTest", batch=_no_batch)


@pytest.mark.parametrize("name", [NO_REPLY, "REQInitial"])
def test_a_method_never_sent_as_a_request_cannot_have_a_handler(name: str) -> None:
    with pytest.raises(ValueError, match=rf"handler {name}: .* never sent as a request"):
        handler(name)


def test_a_custom_handler_declares_its_own_spec() -> None:
    mine = handler(
        "REQMine", kind="NACK", reply_capable=True, description="mine", args="[x]", quick=True
    )(_nothing)
    assert mine.method == MethodSpec(
        "REQMine", EventKind.EventNACK, True, "mine", "[x]", routable=True, quick=True
    )
    plain = handler("REQPlain")(_nothing)
    assert plain.method == MethodSpec("REQPlain", EventKind.EventACK)
    assert (plain.method.reply_capable, plain.method.description, plain.method.args) == (
        False,
        "",
        "",
    )
    assert not plain.method.quick


def test_methods_cannot_redefine_a_method_the_node_serves(tmp_path: Path) -> None:
    config = load_config(tmp_path, {"node_name": "central"})
    with pytest.raises(ValueError, match="method REQPing: methods= declares it"):
        Node(config, methods=[MethodSpec("REQPing", EventKind.EventNACK)])


@pytest.mark.parametrize("name", [NO_REPLY, "REQInitial", "ECHORequest", "REQTuiToConsole"])
async def test_a_method_no_node_serves_is_refused_at_input_naming_it(name: str) -> None:
    """A method with no handler anywhere (not served, not routable) never reaches the
    outbox: the input answers with an error naming it."""
    submitted: list[Message] = []

    async def submit(messages: Sequence[Message]) -> list[str]:
        submitted.extend(messages)
        return [m.id for m in messages]

    document = json.dumps([{"toNode": "ship1", "method": name}])
    (answer,) = await accept_document(
        document, node_name="central", submit=submit, table=BUILTIN_METHODS
    )
    assert not answer.accepted and answer.error is not None
    assert answer.error.field == "method"
    assert f'"{name}"' in str(answer.error)
    assert submitted == []


async def _nothing(ctx: HandlerContext, msg: Message) -> bytes | None:
    return None


async def _no_batch(services: NodeServices, messages: Sequence[Message]) -> list[BatchResult]:
    return [None for _ in messages]
