"""The method table: kinds, roles, the REQSUB lookup rule and runtime registration."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from steward_otp.config import load_config
from steward_otp.handlers import builtin_handlers
from steward_otp.handlers.acl import acl_handlers
from steward_otp.handlers.keys import key_handlers
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


def test_every_builtin_handler_declares_what_the_method_table_says(tmp_path: Path) -> None:
    """One truth per method: what ``send`` validates against (the table) is what the
    receiving node serves (its handler's declaration)."""
    security = NodeSecurity(load_config(tmp_path, {"node_name": "central"}))
    every = [*builtin_handlers(), *key_handlers(security), *acl_handlers(security.acl)]
    for served in every:
        spec = BUILTIN_METHODS.lookup(served.name)
        assert spec is not None, f"{served.name} has a handler but is not in the table"
        declared = served.method
        assert (declared.kind, declared.reply_capable, declared.quick, declared.routable) == (
            spec.kind,
            spec.reply_capable,
            spec.quick,
            spec.routable,
        ), served.name


def test_every_routable_method_is_served_by_a_node(tmp_path: Path) -> None:
    """A method in the table that no node serves would queue, and fail only when its
    retries run out: every routable built-in method has a handler."""
    security = NodeSecurity(load_config(tmp_path, {"node_name": "central"}))
    served = {h.name for h in [*builtin_handlers(), *key_handlers(security)]}
    served |= {h.name for h in acl_handlers(security.acl)}
    served.add("REQHello")  # the node builds it around its security object
    assert [n for n in BUILTIN_METHODS.routable_names() if n not in served] == []
