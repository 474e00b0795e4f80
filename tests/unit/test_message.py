"""The Message record: construction, input parsing and validation, fan-out, defaults,
subjects and reply construction."""

from __future__ import annotations

import json
import re
from typing import Any

import attrs
import pytest

from steward_otp.message import (
    INT64_MAX,
    INT64_MIN,
    MAX_PREVIOUS_DEPTH,
    Message,
    MessageDefaults,
    MessageError,
    MessageFieldsError,
    apply_defaults,
    build_reply,
    dump_json,
    dump_yaml,
    ensure_id,
    fan_out,
    new_message_id,
    parse_messages,
    subject_for,
    subject_for_node,
    uses_ack,
    validate_message,
)
from steward_otp.methods import (
    BUILTIN_METHODS,
    EventKind,
    MethodSpec,
    UnknownMethodError,
    builtin_table,
)

# --- Construction


def test_construction_normalises_lists_and_bytes() -> None:
    message = Message(method_args=["a", "b"], data=bytearray(b"x"), schedule=[1, 2])
    assert message.method_args == ("a", "b")
    assert message.data == b"x"
    assert message.schedule == (1, 2)
    assert hash(message) == hash(Message(method_args=("a", "b"), data=b"x", schedule=(1, 2)))


@pytest.mark.parametrize(
    ("fields", "error", "text"),
    [
        ({"to_node": 1}, TypeError, "to_node must be a str"),
        ({"method_args": "ls -l"}, TypeError, "method_args must be a tuple of str"),
        ({"method_args": ["ls", 1]}, TypeError, "method_args must be a tuple of str"),
        ({"data": "text"}, TypeError, "data must be bytes"),
        ({"ack_timeout": True}, TypeError, "ack_timeout must be an int"),
        ({"ack_timeout": 1.5}, TypeError, "ack_timeout must be an int"),
        ({"retries": 2**63}, ValueError, "retries is outside the signed 64-bit range"),
        ({"is_reply": 1}, TypeError, "is_reply must be a bool"),
        ({"schedule": [1, "2"]}, TypeError, "schedule must be an int"),
        ({"previous_message": {}}, TypeError, "previous_message must be a Message"),
    ],
)
def test_construction_rejects_wrong_types_naming_the_field(
    fields: dict[str, Any], error: type[Exception], text: str
) -> None:
    with pytest.raises(error, match=re.escape(text)):
        Message(**fields)


def test_integers_span_the_signed_64_bit_range() -> None:
    message = Message(ack_timeout=INT64_MIN, retries=INT64_MAX)
    assert (message.ack_timeout, message.retries) == (INT64_MIN, INT64_MAX)


def _chain(length: int) -> Message | None:
    message = None
    for i in range(length):
        message = Message(method="REQPing", id=str(i), previous_message=message)
    return message


def test_previous_message_chains_are_bounded() -> None:
    Message(previous_message=_chain(MAX_PREVIOUS_DEPTH))
    with pytest.raises(ValueError, match="nests more than"):
        Message(previous_message=_chain(MAX_PREVIOUS_DEPTH + 1))


def test_messages_are_frozen() -> None:
    message = Message(method="REQPing")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        message.method = "REQHello"  # type: ignore[misc]


# --- to_dict / from_dict


def test_to_dict_uses_steward_keys_and_omits_defaults() -> None:
    message = Message(
        to_node="ship1",
        method="REQCliCommand",
        method_args=("bash", "-c", "ls"),
        ack_timeout=5,
        file_name="out",
        previous_message=Message(method="REQPing"),
    )
    assert message.to_dict() == {
        "toNode": "ship1",
        "method": "REQCliCommand",
        "methodArgs": ["bash", "-c", "ls"],
        "ACKTimeout": 5,
        "fileName": "out",
        "previousMessage": {"method": "REQPing"},
    }


def test_data_is_text_when_utf8_else_base64() -> None:
    assert Message(data="blåbær".encode()).to_dict() == {"data": "blåbær"}
    assert Message(data=b"\xff\x00").to_dict() == {"data": {"base64": "/wA="}}
    assert Message.from_dict({"data": {"base64": "/wA="}}).data == b"\xff\x00"


@pytest.mark.parametrize("key", ["previousMessage", "PreviousMessage", "previousmessage"])
def test_previous_message_key_spellings(key: str) -> None:
    message = Message.from_dict({key: {"method": "REQPing", "toNode": "a"}})
    assert message.previous_message == Message(method="REQPing", to_node="a")


def test_from_dict_reports_every_bad_field() -> None:
    with pytest.raises(MessageFieldsError) as info:
        Message.from_dict({"ACKTimeout": "five", "toNodes": "ship1", "isReply": "yes"})
    assert {e.field for e in info.value.errors} == {"ACKTimeout", "toNodes", "isReply"}
    assert isinstance(info.value, ValueError)


def test_both_previous_message_spellings_is_an_error() -> None:
    with pytest.raises(MessageFieldsError, match="given more than once"):
        Message.from_dict({"previousMessage": {}, "PreviousMessage": {}})


# --- parse_messages: documents


def test_json_list_and_single_object_are_accepted() -> None:
    one = '{"toNode": "ship1", "method": "REQPing"}'
    assert parse_messages(one).messages == [Message(to_node="ship1", method="REQPing")]
    assert (
        parse_messages(f"[{one}, {one}]").messages
        == [Message(to_node="ship1", method="REQPing")] * 2
    )


def test_yaml_list_single_object_and_several_documents() -> None:
    text = "---\n- toNode: a\n  method: REQPing\n---\ntoNode: b\nmethod: REQHello\n"
    result = parse_messages(text)
    assert result.errors == []
    assert [m.to_node for m in result.messages] == ["a", "b"]


def test_nul_bytes_bom_and_whitespace_around_the_document_are_trimmed() -> None:
    doc = b"\x00\x00" + '\ufeff[{"toNode": "a", "method": "REQPing"}]\n'.encode() + b"\x00"
    assert parse_messages(doc).messages == [Message(to_node="a", method="REQPing")]


def test_json_with_trailing_commas_and_tabs_is_accepted() -> None:
    doc = '[\n\t{\n\t"toNode": "a",\n\t"method": "REQPing",\n\t"methodArgs": ["x",],\n},\n]'
    result = parse_messages(doc)
    assert result.errors == []
    assert result.messages == [Message(to_node="a", method="REQPing", method_args=("x",))]


def test_trailing_comma_inside_a_string_is_kept() -> None:
    doc = '[{"toNode": "a", "method": "REQCliCommand", "methodArgs": [",]", "x",],}]'
    assert parse_messages(doc).messages[0].method_args == (",]", "x")


@pytest.mark.parametrize("doc", ["", "   \n", "\x00\x00", "null", "---\n"])
def test_empty_documents_hold_no_messages(doc: str) -> None:
    result = parse_messages(doc)
    assert result.messages == [] and result.errors == []


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ('[{"toNode": "a",, }]', "malformed JSON: Expecting"),
        ('{"toNode": "a"', "line 1 column"),
        ("- toNode: a\n method: [", "malformed YAML"),
        ("- toNode: a\n  method: [\n", "line"),
        (b"\xff\xfe[]", "not UTF-8 text"),
        ("42", "expected a list of messages or one message object, got 42"),
        ('"just text"', "expected a list of messages"),
    ],
)
def test_unreadable_documents_give_one_document_error(doc: str | bytes, expected: str) -> None:
    result = parse_messages(doc)
    assert result.messages == []
    assert len(result.errors) == 1
    error = result.errors[0]
    assert (error.index, error.field) == (None, None)
    assert expected in error.reason
    assert str(error).startswith("document: ")
    assert "\n" not in str(error)


def test_unsafe_yaml_tags_are_a_document_error_not_code() -> None:
    result = parse_messages("- !!python/object/apply:os.system ['true']\n")
    assert result.messages == [] and result.errors[0].index is None


def test_yaml_keeps_how_scalars_were_written() -> None:
    doc = (
        "- toNode: 1234\n"
        "  method: REQCliCommand\n"
        "  methodArgs: [0700, 1.50, yes, off, 2021-01-01, =, true, 0x1F]\n"
    )
    result = parse_messages(doc)
    assert result.errors == []
    (message,) = result.messages
    assert message.to_node == "1234"
    assert message.method_args == ("0700", "1.50", "yes", "off", "2021-01-01", "=", "true", "0x1F")


def test_json_numbers_in_string_fields_become_their_text() -> None:
    doc = '[{"toNode": "a", "method": "REQCliCommand", "methodArgs": ["sleep", 5, 1.50]}]'
    assert parse_messages(doc).messages[0].method_args == ("sleep", "5", "1.50")


def test_json_minus_zero_in_a_string_field_keeps_its_sign() -> None:
    # The one integer whose text str() does not give back.
    doc = '[{"toNode": "a", "method": "REQCliCommand", "methodArgs": ["echo", -0, 7, -12]}]'
    assert parse_messages(doc).messages[0].method_args == ("echo", "-0", "7", "-12")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ('"hello\\n"', b"hello\n"),
        ('{"base64": "AAEC"}', b"\x00\x01\x02"),
        ("[104, 105]", b"hi"),
        ("[]", b""),
        ('[""]', b""),
        ("null", b""),
    ],
)
def test_data_forms(data: str, expected: bytes) -> None:
    result = parse_messages(f'{{"toNode": "a", "method": "REQPing", "data": {data}}}')
    assert result.errors == []
    assert result.messages[0].data == expected


def test_data_as_yaml_binary() -> None:
    result = parse_messages("toNode: a\nmethod: REQPing\ndata: !!binary AAEC\n")
    assert result.messages[0].data == b"\x00\x01\x02"


def test_yaml_binary_spread_over_lines_is_read_whole() -> None:
    result = parse_messages("toNode: a\nmethod: REQPing\ndata: !!binary |\n  aGVs\n  bG8K\n")
    assert result.messages[0].data == b"hello\n"


@pytest.mark.parametrize("encoded", ["aGVsbG8K!!!", "aGVsbG8", "aGVs bG8K==x", "häll"])
def test_yaml_binary_that_is_not_base64_is_rejected_like_json_base64(encoded: str) -> None:
    yaml_doc = parse_messages(f"- toNode: a\n  method: REQPing\n  data: !!binary '{encoded}'\n")
    json_doc = parse_messages(
        json.dumps([{"toNode": "a", "method": "REQPing", "data": {"base64": encoded}}])
    )
    assert yaml_doc.messages == [] and json_doc.messages == []
    (error,) = yaml_doc.errors
    assert (error.index, error.field) == (0, "data")
    assert error.value == json.dumps(encoded, ensure_ascii=False)
    assert "not valid base64" in error.reason
    assert "not valid base64" in json_doc.errors[0].reason


@pytest.mark.parametrize(
    "document",
    [
        '[{"toNode": "a", "method": "REQPing", "toNode": "b"}]',
        "- toNode: a\n  method: REQPing\n  toNode: b\n",
    ],
    ids=["json", "yaml"],
)
def test_a_field_given_twice_in_one_message_is_refused_naming_it(document: str) -> None:
    result = parse_messages(document)
    assert result.messages == []
    (error,) = result.errors
    assert (error.index, error.field, error.value) == (0, "toNode", "['a', 'b']")
    assert error.reason == "is given 2 times in one message"
    assert error.allowed == "each field at most once per message"


def test_only_the_message_with_a_repeated_field_is_refused() -> None:
    document = (
        "- {toNode: a, method: REQPing}\n"
        "- {toNode: a, method: REQPing, previousMessage: {fileName: x, fileName: y}}\n"
        "- &m {toNode: a, method: REQPing}\n"
        "- {<<: *m, toNode: b}\n"  # a merge key overridden: not a repeat
    )
    result = parse_messages(document)
    assert [m.to_node for m in result.messages] == ["a", "a", "b"]
    (error,) = result.errors
    assert (error.index, error.field) == (1, "previousMessage.fileName")


def test_old_empty_data_list_is_accepted_with_a_warning() -> None:
    result = parse_messages('[{"toNode": "a", "method": "REQPing", "data": [""]}]')
    assert len(result.messages) == 1
    (warning,) = result.warnings
    assert warning.field == "data" and "old list form" in warning.reason


def test_old_data_list_of_arguments_is_rejected_with_a_hint() -> None:
    result = parse_messages('[{"toNode": "a", "method": "REQHttpGet", "data": ["http://x"]}]')
    assert result.messages == []
    (error,) = result.errors
    assert error.field == "data"
    assert "methodArgs" in error.reason
    assert error.value == "['http://x']"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ("[1, 256]", "outside 0-255"),
        ('{"base64": "***"}', "not valid base64"),
        ('{"hex": "00"}', 'is not {"base64"'),
        ("true", "is not text or bytes"),
        ('[1, "a"]', "is not text or bytes"),
    ],
)
def test_bad_data_is_rejected_naming_data(data: str, reason: str) -> None:
    result = parse_messages(f'{{"toNode": "a", "method": "REQPing", "data": {data}}}')
    assert result.messages == []
    assert result.errors[0].field.startswith("data")  # type: ignore[union-attr]
    assert reason in result.errors[0].reason


# --- parse_messages: validation


def _errors(fields: dict[str, Any]) -> list[MessageError]:
    return parse_messages(json.dumps([fields])).errors


BASE = {"toNode": "ship1", "method": "REQCliCommand"}


@pytest.mark.parametrize(
    ("fields", "field", "value", "reason", "allowed"),
    [
        ({"toNode": "a"}, "method", None, "is missing", "REQCliCommand"),
        ({"toNode": "a", "method": ""}, "method", None, "is missing", "REQHello"),
        (
            {"toNode": "a", "method": "ECHORequest"},
            "method",
            '"ECHORequest"',
            "not a known",
            "REQPing",
        ),
        (
            {"toNode": "a", "method": "REQNone"},
            "method",
            '"REQNone"',
            "only valid as replyMethod",
            "REQPing",
        ),
        (
            {"toNode": "a", "method": "REQInitial"},
            "method",
            '"REQInitial"',
            "cannot be sent",
            "REQPing",
        ),
        ({"toNode": "a", "method": "REQSUBCopySrc. x"}, "method", None, "sub-process suffix", None),
        ({"method": "REQPing"}, "toNode", None, "is missing and toNodes is empty", "toNodes"),
        ({"method": "REQPing", "toNodes": []}, "toNode", None, "is missing", "node name"),
        (
            {"method": "REQPing", "toNode": "a b"},
            "toNode",
            '"a b"',
            "not a valid node name",
            "without whitespace",
        ),
        ({"method": "REQPing", "toNode": "ship.*"}, "toNode", None, "not a valid node name", None),
        (
            {"method": "REQPing", "toNodes": ["a", "b..c"]},
            "toNodes[1]",
            '"b..c"',
            "not a valid node name",
            None,
        ),
        ({**BASE, "fromNode": "x>"}, "fromNode", '"x>"', "not a valid node name", None),
        (
            {**BASE, "replyMethod": "REQHttpGet"},
            "replyMethod",
            '"REQHttpGet"',
            "cannot be used as replyMethod",
            "REQToConsole",
        ),
        (
            {**BASE, "replyMethod": "REQBogus"},
            "replyMethod",
            '"REQBogus"',
            "not a known method",
            "REQNone",
        ),
        (
            {**BASE, "schedule": [5]},
            "schedule",
            "[5]",
            "exactly 2 elements",
            "[intervalSeconds, totalSeconds]",
        ),
        ({**BASE, "schedule": [1, 2, 3]}, "schedule", None, "exactly 2 elements", None),
        ({**BASE, "schedule": [0, 10]}, "schedule[0]", "0", "not a positive", None),
        ({**BASE, "schedule": [10, -1]}, "schedule[1]", "-1", "not a positive", None),
        ({**BASE, "schedule": "10,20"}, "schedule", '"10,20"', "not a list of integers", None),
        ({**BASE, "ACKTimeout": "five"}, "ACKTimeout", '"five"', "is not an integer", "an integer"),
        ({**BASE, "ACKTimeout": 5.5}, "ACKTimeout", "5.5", "is not an integer", None),
        ({**BASE, "ACKTimeout": True}, "ACKTimeout", "true", "is not an integer", None),
        ({**BASE, "retries": 2**63}, "retries", str(2**63), "out of range", "9223372036854775807"),
        ({**BASE, "isReply": "yes"}, "isReply", '"yes"', "is not true or false", "true or false"),
        ({**BASE, "methodArgs": "ls -l"}, "methodArgs", '"ls -l"', "not a list of strings", None),
        (
            {**BASE, "methodArgs": ["ls", {"a": 1}]},
            "methodArgs[1]",
            "{'a': 1}",
            "is not a string",
            None,
        ),
        ({**BASE, "methodArgs": ["ls", None]}, "methodArgs[1]", "null", "is not a string", None),
        (
            {**BASE, "toNodes": [["x"]], "toNode": ""},
            "toNodes[0]",
            "['x']",
            "is not a string",
            None,
        ),
        ({**BASE, "directory": ["a"]}, "directory", "['a']", "is not a string", "a string"),
        ({**BASE, "id": ["x"]}, "id", "['x']", "is not a string", "a text id"),
        ({**BASE, "previousMessage": "x"}, "previousMessage", '"x"', "not a message object", None),
        (
            {**BASE, "previousMessage": {"ACKTimeout": "x"}},
            "previousMessage.ACKTimeout",
            '"x"',
            "not an integer",
            None,
        ),
    ],
)
def test_validation_errors_name_field_value_and_allowed(
    fields: dict[str, Any], field: str, value: str | None, reason: str, allowed: str | None
) -> None:
    errors = _errors(fields)
    assert errors, fields
    error = next(e for e in errors if e.field == field)
    assert error.index == 0
    if value is not None:
        assert error.value == value
    assert reason in error.reason
    if allowed is not None:
        assert error.allowed is not None and allowed in error.allowed


def test_to_nodes_given_as_one_string_is_refused_with_a_to_nodes_example() -> None:
    (error,) = _errors({"toNodes": "local", "method": "REQCliCommand"})
    assert (error.field, error.value) == ("toNodes", '"local"')
    assert "is not a list of strings" in error.reason
    assert error.allowed == (
        'a list of node names, e.g. ["ship1", "ship2"]; for one node: toNode: "ship1"'
    )
    (args_error,) = _errors({**BASE, "methodArgs": "ls -l"})
    assert args_error.allowed == 'e.g. ["bash", "-c", "ls -l"]'


def test_accepted_integers_follow_steward() -> None:
    fields = {**BASE, "methodTimeout": -1, "retries": -5, "ACKTimeout": -3, "retryWait": -2}
    result = parse_messages(json.dumps([fields]))
    assert result.errors == []
    message = result.messages[0]
    assert (message.method_timeout, message.retries, message.ack_timeout) == (-1, -5, -3)


def test_error_text_is_one_clear_line() -> None:
    (error,) = _errors({"toNode": "ship1", "method": "ECHORequest"})
    text = str(error)
    assert text.startswith('message 0: field "method": value "ECHORequest" is not a known method; ')
    assert "allowed: REQOpProcessList, REQOpProcessStart" in text
    assert error.to_dict() == {
        "index": 0,
        "field": "method",
        "value": '"ECHORequest"',
        "reason": "is not a known method",
        "allowed": error.allowed,
        "text": text,
    }


def test_missing_field_text() -> None:
    (error,) = _errors({"toNode": "ship1"})
    assert str(error).startswith('message 0: field "method" is missing; allowed: ')


def test_several_errors_in_one_message_are_all_reported() -> None:
    errors = _errors({"method": "ECHORequest", "ACKTimeout": "x", "schedule": [0]})
    assert {e.field for e in errors} == {"method", "ACKTimeout", "schedule", "toNode"}


def test_a_bad_type_does_not_also_report_missing() -> None:
    errors = _errors({"method": "REQPing", "toNode": ["ship1"]})
    assert [e.field for e in errors] == ["toNode"]
    assert errors[0].reason == "is not a string"


def test_one_bad_message_does_not_stop_the_batch() -> None:
    doc = json.dumps(
        [
            {"toNode": "a", "method": "REQPing"},
            {"toNode": "b", "method": "ECHORequest"},
            "not a message",
            {"toNode": "c", "method": "REQHello", "ACKTimeout": "x"},
            {"toNode": "d", "method": "REQHello"},
        ]
    )
    result = parse_messages(doc)
    assert [m.to_node for m in result.messages] == ["a", "d"]
    assert [e.index for e in result.errors] == [1, 2, 3]
    assert result.errors[1].reason == "is not a message object"
    assert not result.ok


def test_unknown_keys_are_ignored_with_a_warning_and_a_suggestion() -> None:
    result = parse_messages(
        json.dumps([{**BASE, "RetryWait": 5, "replyMethodTimeOut": 3, "colour": "red", "1": 2}])
    )
    assert result.errors == [] and len(result.messages) == 1
    assert result.messages[0].retry_wait == 0
    by_field = {w.field: w for w in result.warnings}
    assert by_field["RetryWait"].allowed == '"retryWait" (keys are case-sensitive)'
    assert (
        by_field["replyMethodTimeOut"].allowed == '"replyMethodTimeout" (keys are case-sensitive)'
    )
    assert by_field["colour"].allowed is None
    assert "is not a known field and was ignored" in str(by_field["colour"])


def test_yaml_non_string_keys_are_warned_about() -> None:
    result = parse_messages("- toNode: a\n  method: REQPing\n  1: x\n")
    assert len(result.messages) == 1
    assert result.warnings[0].field is None and result.warnings[0].value == "1"


def test_relay_fields_of_old_files_are_kept() -> None:
    result = parse_messages(
        json.dumps([{**BASE, "relayViaNode": "central", "relayReplyMethod": "REQToConsole"}])
    )
    message = result.messages[0]
    assert (message.relay_via_node, message.relay_reply_method) == ("central", "REQToConsole")
    assert result.warnings == []


def test_to_nodes_next_to_to_node_gives_a_warning() -> None:
    result = parse_messages(json.dumps([{**BASE, "toNodes": ["central"]}]))
    assert len(result.messages) == 1
    (warning,) = result.warnings
    assert warning.field == "toNodes" and "ignored because toNode is set" in warning.reason


def test_numeric_ids_are_ignored_with_a_warning() -> None:
    result = parse_messages(json.dumps([{**BASE, "id": 17}]))
    assert result.messages[0].id == ""
    assert result.warnings[0].field == "id"


def test_text_ids_are_kept_and_unassigned_ids_stay_empty() -> None:
    assert parse_messages(json.dumps([{**BASE, "id": "op:1"}])).messages[0].id == "op:1"
    assert parse_messages(json.dumps([BASE])).messages[0].id == ""


def test_lone_surrogates_are_rejected() -> None:
    result = parse_messages('[{"toNode": "a", "method": "REQPing", "directory": "\\ud800"}]')
    assert result.errors[0].field == "directory"
    str(result.errors[0]).encode("utf-8")


def test_user_registered_methods_are_accepted_with_their_table() -> None:
    table = builtin_table()
    table.register(MethodSpec("REQMine", EventKind.EventACK))
    doc = json.dumps([{"toNode": "a", "method": "REQMine"}])
    assert parse_messages(doc).errors != []
    assert parse_messages(doc, table=table).errors == []


def test_validate_message_on_a_valid_message_is_empty() -> None:
    assert validate_message(Message(to_nodes=("a", "b"), method="REQPing")) == []
    assert validate_message(Message(to_node="a", method="REQSUBCopySrc.1234-ab")) == []


def test_dumped_documents_read_back() -> None:
    messages = [
        Message(to_node="a", method="REQPing", data=b"\x00\xff", retries=-1),
        Message(to_nodes=("x", "y"), method="REQCliCommand", method_args=("0700", "yes", "")),
    ]
    assert parse_messages(dump_json(messages)).messages == messages
    assert parse_messages(dump_yaml(messages)).messages == messages


# --- ids


def test_new_message_id_is_node_prefixed_uuid7() -> None:
    ids = {new_message_id("central") for _ in range(1000)}
    assert len(ids) == 1000
    for value in ids:
        node, hex_part = value.split(":")
        assert node == "central"
        assert re.fullmatch(r"[0-9a-f]{12}7[0-9a-f]{3}[89ab][0-9a-f]{15}", hex_part)
    assert ":" not in new_message_id("")


def test_ensure_id_assigns_only_when_missing() -> None:
    message = Message(from_node="ship1", method="REQPing")
    assigned = ensure_id(message)
    assert assigned.id.startswith("ship1:")
    assert ensure_id(assigned) is assigned


# --- fan-out


@pytest.mark.parametrize(
    ("to_node", "to_nodes", "msg_id", "expected"),
    [
        ("ship1", (), "", [("ship1", "")]),
        ("ship1", ("central", "ship2"), "", [("ship1", "")]),
        ("ship1", ("central",), "x", [("ship1", "x")]),
        ("", ("a", "b"), "", [("a", ""), ("b", "")]),
        ("", ("a", "b", "a"), "", [("a", ""), ("b", "")]),
        ("", ("a", "b"), "op:1", [("a", "op:1@a"), ("b", "op:1@b")]),
        ("local", (), "", [("me", "")]),
        ("", ("local", "b"), "k", [("me", "k@me"), ("b", "k@b")]),
        ("", ("local", "local", "me"), "k", [("me", "k@me")]),
        ("", ("me", "b", "local"), "", [("me", ""), ("b", "")]),
        ("", (), "", []),
    ],
)
def test_fan_out(
    to_node: str, to_nodes: tuple[str, ...], msg_id: str, expected: list[tuple[str, str]]
) -> None:
    message = Message(to_node=to_node, to_nodes=to_nodes, id=msg_id, method="REQPing", data=b"d")
    copies = fan_out(message, "me")
    assert [(m.to_node, m.id) for m in copies] == expected
    for copy in copies:
        assert copy.to_nodes == ()
        assert attrs.evolve(copy, to_node="", id="") == attrs.evolve(
            message, to_node="", to_nodes=(), id=""
        )


def test_fan_out_returns_the_message_itself_when_nothing_changes() -> None:
    message = Message(to_node="ship1", from_node="central", method="REQPing")
    assert fan_out(message, "me")[0] is message
    assert fan_out(message, "me", from_node="central")[0] is message
    [renamed] = fan_out(message, "me", from_node="op")
    assert renamed is not message and renamed.from_node == "op"
    [listed] = fan_out(attrs.evolve(message, to_nodes=("a",)), "me")
    assert listed.to_node == "ship1" and listed.to_nodes == ()
    [local] = fan_out(attrs.evolve(message, to_node="local"), "me")
    assert local.to_node == "me"


# --- defaults


@pytest.mark.parametrize(
    ("retries", "method_timeout", "expected"),
    [
        (0, 0, (0, 10)),
        (-1, 5, (1, 5)),
        (-7, -1, (1, -1)),
        (3, -5, (3, 10)),
        (2, 1, (2, 1)),
    ],
)
def test_apply_defaults(retries: int, method_timeout: int, expected: tuple[int, int]) -> None:
    message = Message(retries=retries, method_timeout=method_timeout, ack_timeout=0)
    result = apply_defaults(message, MessageDefaults(retries=1, method_timeout=10))
    assert (result.retries, result.method_timeout) == expected
    assert result.ack_timeout == 0


def test_apply_defaults_returns_the_same_message_when_nothing_changes() -> None:
    message = Message(retries=1, method_timeout=4)
    assert apply_defaults(message) is message


def test_apply_defaults_uses_steward_defaults() -> None:
    result = apply_defaults(Message(retries=-1))
    assert (result.retries, result.method_timeout) == (1, 10)


# --- subjects and ACK mode


@pytest.mark.parametrize(
    ("to_node", "method", "subject"),
    [
        ("ship1", "REQCliCommand", "ship1.REQCliCommand.EventACK"),
        ("central", "REQHello", "central.REQHello.EventNACK"),
        ("ww.central", "REQToFileNACK", "ww.central.REQToFileNACK.EventNACK"),
        ("errorCentral", "REQErrorLog", "errorCentral.REQErrorLog.EventACK"),
        ("a", "REQSUBCopySrc.1f2e", "a.REQSUBCopySrc.1f2e.EventACK"),
    ],
)
def test_subject_for(to_node: str, method: str, subject: str) -> None:
    assert subject_for(Message(to_node=to_node, method=method)) == subject


def test_subject_for_errors() -> None:
    with pytest.raises(UnknownMethodError):
        subject_for(Message(to_node="a", method="ECHORequest"))
    with pytest.raises(ValueError, match="fan it out"):
        subject_for(Message(to_nodes=("a",), method="REQPing"))


def test_subject_for_node() -> None:
    spec = BUILTIN_METHODS.require("REQSUBCopyDst")
    assert subject_for_node("ship1", spec) == "ship1.REQSUBCopyDst.EventACK"
    assert (
        subject_for_node("ship1", spec, method_name="REQSUBCopyDst.u1")
        == "ship1.REQSUBCopyDst.u1.EventACK"
    )


@pytest.mark.parametrize(
    ("ack_timeout", "expected"), [(0, False), (-1, False), (1, True), (60, True)]
)
def test_uses_ack(ack_timeout: int, expected: bool) -> None:
    assert uses_ack(Message(ack_timeout=ack_timeout)) is expected


# --- replies (Steward §4.5)

REQUEST = Message(
    to_node="ship1",
    from_node="central",
    id="central:1",
    method="REQCliCommand",
    method_args=("bash", "-c", "echo hi"),
    data=b"input",
    reply_method="REQToFile",
    reply_method_args=("stderr",),
    reply_ack_timeout=7,
    reply_retries=4,
    reply_method_timeout=30,
    ack_timeout=5,
    retries=3,
    retry_wait=2,
    method_timeout=10,
    directory="cli",
    file_name="out.txt",
    schedule=(1, 5),
    relay_via_node="r",
)


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("to_node", "central"),
        ("from_node", "ship1"),
        ("data", b"result"),
        ("method", "REQToFile"),
        ("method_args", ("stderr",)),
        ("method_timeout", 30),
        ("ack_timeout", 7),
        ("retries", 4),
        ("retry_wait", 2),
        ("directory", "cli"),
        ("file_name", "out.txt"),
        ("is_reply", True),
        ("reply_method", ""),
        ("reply_method_args", ()),
        ("reply_ack_timeout", 0),
        ("reply_retries", 0),
        ("reply_method_timeout", 0),
        ("schedule", ()),
        ("to_nodes", ()),
        ("relay_via_node", ""),
        ("arg_signature", b""),
    ],
)
def test_reply_field_mapping(field: str, expected: object) -> None:
    reply = build_reply(REQUEST, b"result")
    assert reply is not None
    assert getattr(reply, field) == expected


def test_reply_carries_the_request_without_data_and_a_fresh_id() -> None:
    reply = build_reply(REQUEST, b"result")
    assert reply is not None
    assert reply.previous_message == attrs.evolve(REQUEST, data=b"")
    assert reply.id.startswith("ship1:") and reply.id != REQUEST.id
    again = build_reply(REQUEST, b"result")
    assert again is not None and again.id != reply.id


@pytest.mark.parametrize(
    ("changes", "method"),
    [({"reply_method": ""}, "REQToFileAppend"), ({"reply_method": "REQPong"}, "REQPong")],
)
def test_reply_method_default(changes: dict[str, Any], method: str) -> None:
    reply = build_reply(attrs.evolve(REQUEST, **changes), b"")
    assert reply is not None and reply.method == method


@pytest.mark.parametrize(
    "request_message",
    [attrs.evolve(REQUEST, reply_method="REQNone"), attrs.evolve(REQUEST, is_reply=True)],
)
def test_no_reply_to_reqnone_or_to_a_reply(request_message: Message) -> None:
    assert build_reply(request_message, b"x") is None
    assert build_reply(request_message, b"x", error=True) is None


def test_error_reply_goes_to_the_error_file() -> None:
    reply = build_reply(REQUEST, b"error: boom", error=True)
    assert reply is not None
    assert reply.file_name == "out.txt.error"
    assert reply.previous_message is not None
    assert reply.previous_message.file_name == "out.txt.error"
    assert reply.data == b"error: boom"


def test_reply_is_nack_unless_reply_ack_timeout_was_given() -> None:
    reply = build_reply(attrs.evolve(REQUEST, reply_ack_timeout=0), b"")
    assert reply is not None and not uses_ack(reply)


def test_reply_to_a_request_at_the_chain_limit_stays_within_it() -> None:
    request = attrs.evolve(REQUEST, previous_message=_chain(MAX_PREVIOUS_DEPTH))
    reply = build_reply(request, b"")
    assert reply is not None
    depth, current = 0, reply.previous_message
    while current is not None:
        depth, current = depth + 1, current.previous_message
    assert depth == MAX_PREVIOUS_DEPTH


def test_problem_counts_stay_bounded_for_huge_bad_input() -> None:
    fields = {**BASE, **{f"extra{i}": 1 for i in range(500)}, "methodArgs": [[1]] * 10_000}
    result = parse_messages(json.dumps([fields]))
    assert [e.field for e in result.errors] == ["methodArgs[0]"]
    assert len(result.warnings) == 11
    assert str(result.warnings[-1]) == "message 0: has 490 more unknown fields"
