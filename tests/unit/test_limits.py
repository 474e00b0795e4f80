"""What the wire can carry, checked at input: node names, paths, sizes, document limits."""

from __future__ import annotations

import json
import time

import pytest
import trio

from steward_otp import codec
from steward_otp.limits import (
    MAX_ENCODED_MESSAGE_BYTES,
    MAX_MESSAGES_PER_DOCUMENT,
    MAX_NODE_NAME_LENGTH,
    current_max_payload,
    node_name_problem,
    path_text_problem,
    payload_limit_from,
    text_problem,
)
from steward_otp.message import (
    Message,
    MessageFieldsError,
    check_wire,
    parse_messages,
    validate_message,
    wire_errors,
)

PING = {"toNode": "ship1", "method": "REQPing"}


def _only_error(document: object) -> tuple[str | None, str]:
    result = parse_messages(json.dumps(document))
    assert not result.messages
    assert len(result.errors) == 1, result.errors
    return result.errors[0].field, str(result.errors[0])


# --- Node names


@pytest.mark.parametrize("name", ["ship1", "ww.central", "a-b_c", "ñode", "x" * 128, "local"])
def test_valid_node_names_pass(name: str) -> None:
    assert node_name_problem(name) is None
    assert validate_message(Message(to_node=name, method="REQPing")) == []


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("y" * 5000, "is 5000 characters long"),
        ("a b", "U+0020"),
        ("a\x00b", "U+0000"),
        ("a\x1bb", "U+001B"),
        ("a\x07", "U+0007"),
        ("a\x85b", "U+0085"),
        ("ship.*", "'*'"),
        ("ship>", "'>'"),
        ("a/b", "'/'"),
        ("a..b", "empty dot-separated part"),
        (".a", "empty dot-separated part"),
        ("x\udcff", "U+DCFF at position 1, a lone surrogate: not valid Unicode text"),
        ("\ud800.a", "U+D800 at position 0, a lone surrogate"),
    ],
)
def test_invalid_node_names_say_why(name: str, problem: str) -> None:
    reason = node_name_problem(name)
    assert reason is not None and problem in reason


@pytest.mark.parametrize("key", ["toNode", "fromNode", "relayViaNode", "relayFromNode"])
def test_a_long_node_name_is_refused_at_input_naming_field_value_and_rule(key: str) -> None:
    field, text = _only_error({**PING, key: "y" * 5000})
    assert field == key
    assert "is 5000 characters long" in text
    assert f"at most {MAX_NODE_NAME_LENGTH} characters" in text
    # The value is shown, truncated for display.
    assert '"' + "y" * 60 + '…"' in text and "y" * 61 not in text


def test_each_bad_to_nodes_entry_is_named() -> None:
    field, text = _only_error({"toNodes": ["ok", "bad name"], "method": "REQPing"})
    assert field == "toNodes[1]" and "U+0020" in text


def test_sub_process_suffix_is_bounded() -> None:
    field, _ = _only_error({**PING, "method": "REQSUBCopySrc." + "x" * 200})
    assert field == "method"


# --- directory and fileName


@pytest.mark.parametrize("key", ["directory", "fileName"])
@pytest.mark.parametrize("bad", ["a\x00b", "\x1b[31mred", "bell\x07", "new\nline", "c1\x9b"])
def test_control_characters_in_paths_are_refused(key: str, bad: str) -> None:
    field, text = _only_error({**PING, key: bad})
    assert field == key
    assert "control character" in text and "allowed: text without NUL" in text


def test_ordinary_paths_pass() -> None:
    assert path_text_problem("logs/2026 ünïcode, spaces.txt") is None


def test_a_path_that_is_not_text_is_refused() -> None:
    assert path_text_problem("out\udcff") == (
        "contains U+DCFF at position 3, a lone surrogate: not valid Unicode text"
    )
    assert text_problem("ünïcode") is None


# --- Size


def test_a_message_too_large_for_the_broker_is_refused_naming_data() -> None:
    field, text = _only_error({**PING, "data": "x" * (MAX_ENCODED_MESSAGE_BYTES + 1)})
    assert field == "data"
    assert f"is {MAX_ENCODED_MESSAGE_BYTES + 1} bytes" in text
    assert "max_payload of 1048576 bytes" in text


def test_a_message_just_under_the_limit_is_accepted() -> None:
    data = "x" * (MAX_ENCODED_MESSAGE_BYTES - 200)
    result = parse_messages(json.dumps({**PING, "data": data}))
    assert result.errors == []
    [message] = result.messages
    assert len(codec.encode(message, compress_threshold=None).payload) <= MAX_ENCODED_MESSAGE_BYTES


def test_size_counts_every_field_and_names_the_largest() -> None:
    args = ["y" * 1000] * 1100
    field, _ = _only_error({**PING, "methodArgs": args})
    assert field == "methodArgs"


def test_wire_errors_check_messages_that_did_not_come_through_an_input() -> None:
    reply = Message(to_node="y" * 5000, from_node="central", method="REQToFileAppend")
    [error] = wire_errors(reply)
    assert error.field == "toNode" and "5000 characters" in error.reason
    with pytest.raises(MessageFieldsError, match="toNode"):
        check_wire(reply)
    big = Message(to_node="a", method="REQToFile", data=b"x" * (2 * 1024 * 1024))
    assert [e.field for e in wire_errors(big)] == ["data"]
    check_wire(Message(to_node="a", method="REQPing", data=b"x" * 1000))


# --- Documents


def test_more_messages_than_the_limit_refuses_the_document_naming_count_and_limit() -> None:
    document = json.dumps([PING] * (MAX_MESSAGES_PER_DOCUMENT + 1))
    result = parse_messages(document)
    assert result.messages == []
    [error] = result.errors
    assert error.index is None
    assert f"holds {MAX_MESSAGES_PER_DOCUMENT + 1} messages" in str(error)
    assert f"at most {MAX_MESSAGES_PER_DOCUMENT}" in str(error)
    assert len(parse_messages(json.dumps([PING] * MAX_MESSAGES_PER_DOCUMENT)).messages) == 1000


def test_a_long_yaml_document_is_refused_after_reading_only_the_limit() -> None:
    document = "".join(f"- toNode: n{i}\n  method: REQPing\n" for i in range(50_000))
    started = time.perf_counter()
    [error] = parse_messages(document).errors
    assert time.perf_counter() - started < 2.0
    assert "more than 1000 messages" in str(error)


def test_fan_out_counts_against_the_limit() -> None:
    nodes = [f"n{i}" for i in range(MAX_MESSAGES_PER_DOCUMENT + 1)]
    [error] = parse_messages(json.dumps({"toNodes": nodes, "method": "REQPing"})).errors
    assert f"fans out to {MAX_MESSAGES_PER_DOCUMENT + 1} messages" in str(error)


def _alias_bomb() -> str:
    """A ~7 KB YAML document that fans out to 100,000 messages through one aliased list."""
    nodes = ", ".join(f"n{i}" for i in range(1000))
    head = f"- &m {{method: REQPing, toNode: '', toNodes: &nodes [{nodes}]}}\n"
    return head + "- *m\n" * 99


def test_an_alias_bomb_is_refused_quickly_naming_the_count() -> None:
    bomb = _alias_bomb()
    assert len(bomb) < 8000
    started = time.perf_counter()
    result = parse_messages(bomb)
    assert time.perf_counter() - started < 1.0
    assert result.messages == []
    [error] = result.errors
    assert "fans out to 100000 messages" in str(error)
    assert "at most 1000 messages per document" in str(error)


def test_a_top_level_list_of_aliases_counts_every_use() -> None:
    document = "- &a {toNode: x, method: REQPing}\n" + "- *a\n" * 5000
    [error] = parse_messages(document).errors
    assert "more than 1000 messages" in str(error) or "5001" in str(error)


def test_exponential_alias_expansion_is_refused_before_construction() -> None:
    lines = ["- &a0 [" + ", ".join(["'" + "x" * 50 + "'"] * 10) + "]"]
    lines += [f"- &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    started = time.perf_counter()
    [error] = parse_messages("\n".join(lines)).errors
    assert time.perf_counter() - started < 1.0
    assert "YAML aliases expand the document" in str(error)


def test_a_recursive_alias_is_refused() -> None:
    [error] = parse_messages("- &a [*a]\n").errors
    assert "refers to the collection that contains it" in str(error)


def test_a_few_ordinary_aliases_still_work() -> None:
    document = (
        "- &ping {toNode: ship1, method: REQPing, ACKTimeout: 5}\n"
        "- {<<: *ping, toNode: ship2}\n"
        "- *ping\n"
    )
    result = parse_messages(document)
    assert result.errors == []
    assert [m.to_node for m in result.messages] == ["ship1", "ship2", "ship1"]


# --- The broker's max_payload in effect


def test_the_size_limit_follows_the_brokers_max_payload_set_for_the_node() -> None:
    message = {**PING, "data": "x" * (40 * 1024)}
    assert parse_messages(json.dumps(message)).errors == []
    with payload_limit_from(lambda: 32 * 1024):
        assert current_max_payload() == 32 * 1024
        [error] = parse_messages(json.dumps(message)).errors
        assert error.field == "data"
        assert "max_payload is 32768 bytes" in error.reason
        assert error.allowed is not None and "max_payload of 32768 bytes" in error.allowed
        assert [
            e.field for e in wire_errors(Message(to_node="a", method="REQPing", data=b"x" * 40_000))
        ] == ["data"]
    assert current_max_payload() == 1024 * 1024


async def test_worker_threads_of_a_node_see_its_max_payload() -> None:
    with payload_limit_from(lambda: 50_000):
        assert await trio.to_thread.run_sync(current_max_payload) == 50_000


@pytest.mark.parametrize("figure", [0, -1, True, "big"])
def test_a_nonsense_max_payload_counts_as_the_default(figure: object) -> None:
    with payload_limit_from(lambda: figure):  # type: ignore[arg-type, return-value]
        assert current_max_payload() == 1024 * 1024
