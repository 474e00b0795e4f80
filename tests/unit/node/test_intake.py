"""The common input path: answers for accepted, rejected and unstorable messages."""

from __future__ import annotations

import json
from collections.abc import Sequence

import attrs

from steward_otp.inputs.intake import accept_document
from steward_otp.message import Message
from steward_otp.methods import BUILTIN_METHODS
from steward_otp.store.schema import StoreError

DOCUMENT = json.dumps(
    [
        {"toNodes": ["ship1", "ship2"], "method": "REQPing"},
        {"toNode": "ship1", "method": "NoSuchMethod"},
        {"toNode": "local", "method": "REQPing", "fromNode": "elsewhere"},
    ]
)


async def test_each_message_is_answered_in_document_order_with_ids_or_errors() -> None:
    stored: list[Message] = []

    async def submit(messages: Sequence[Message]) -> list[str]:
        stored.extend(messages)
        return [f"id{i}" for i in range(len(messages))]

    answers = await accept_document(
        DOCUMENT, node_name="central", submit=submit, table=BUILTIN_METHODS
    )
    assert [(a.index, a.accepted, a.to_node) for a in answers] == [
        (0, True, "ship1"),
        (0, True, "ship2"),
        (1, False, None),
        (2, True, "central"),
    ]
    assert answers[2].error is not None and answers[2].error.field == "method"
    # The input forces fromNode: another node's name is replaced here, an empty one is
    # left for the outbox to fill in with the same name.
    assert [m.from_node for m in stored] == ["", "", "central"]


async def test_a_store_that_cannot_take_the_batch_gets_every_message_an_answer() -> None:
    async def submit(messages: Sequence[Message]) -> list[str]:
        raise StoreError("the store is not running")

    answers = await accept_document(
        DOCUMENT, node_name="central", submit=submit, table=BUILTIN_METHODS
    )
    assert len(answers) == 4
    assert not any(a.accepted for a in answers)
    assert "was not accepted: the store is not running" in str(answers[0].error)


async def test_fanned_out_copies_differ_from_the_parsed_message_only_in_routing_fields() -> None:
    # One copy per destination carries fromNode, toNode, toNodes and id; the rest as parsed.
    document = json.dumps(
        [
            {
                "id": "job7",
                "toNodes": ["ship1", "local", "ship1"],
                "method": "REQToFileAppend",
                "fromNode": "elsewhere",
                "data": "line\n",
                "directory": "out",
                "fileName": "f.txt",
                "ACKTimeout": 5,
                "retries": 2,
                "methodArgs": ["a", "b"],
            }
        ]
    )
    stored: list[Message] = []

    async def submit(messages: Sequence[Message]) -> list[str]:
        stored.extend(messages)
        return [m.id for m in messages]

    for force, sender in ((True, "central"), (False, "elsewhere")):
        stored.clear()
        answers = await accept_document(
            document,
            node_name="central",
            submit=submit,
            table=BUILTIN_METHODS,
            force_from_node=force,
        )
        assert [a.id for a in answers] == ["job7@ship1", "job7@central"]
        expected = Message(
            method="REQToFileAppend",
            from_node=sender,
            data=b"line\n",
            directory="out",
            file_name="f.txt",
            ack_timeout=5,
            retries=2,
            method_args=("a", "b"),
        )
        assert stored == [
            attrs.evolve(expected, to_node="ship1", id="job7@ship1"),
            attrs.evolve(expected, to_node="central", id="job7@central"),
        ]


async def test_local_and_the_node_s_own_name_in_to_nodes_are_one_destination() -> None:
    stored: list[Message] = []

    async def submit(messages: Sequence[Message]) -> list[str]:
        stored.extend(messages)
        return [m.id for m in messages]

    document = json.dumps(
        [{"id": "j", "toNodes": ["local", "local", "central", "ship1"], "method": "REQPing"}]
    )
    answers = await accept_document(
        document, node_name="central", submit=submit, table=BUILTIN_METHODS
    )
    assert [(a.accepted, a.to_node, a.id) for a in answers] == [
        (True, "central", "j@central"),
        (True, "ship1", "j@ship1"),
    ]
    assert [m.to_node for m in stored] == ["central", "ship1"]


BROADCAST_ALLOWED = (
    'a node name; to broadcast, set "jetstream": true on the message or run the node with '
    "--delivery jetstream"
)


async def test_a_broadcast_that_would_go_by_core_nats_is_refused_at_input() -> None:
    stored: list[Message] = []

    async def submit(messages: Sequence[Message]) -> list[str]:
        stored.extend(messages)
        return [m.id for m in messages]

    document = json.dumps(
        [
            {"toNode": "all", "method": "REQPing"},
            {"toNodes": ["ship1", "all"], "method": "REQPing"},
            {"toNode": "all", "method": "REQPing", "jetstream": True},
            {"toNode": "all", "method": "REQPing", "relayViaNode": "hub"},
        ]
    )
    answers = await accept_document(
        document, node_name="central", submit=submit, table=BUILTIN_METHODS
    )
    assert [(a.index, a.accepted, a.to_node) for a in answers] == [
        (0, False, None),
        (1, False, None),
        (1, True, "ship1"),
        (2, True, "all"),
        (3, True, "all"),
    ]
    first, refused = answers[0].error, answers[1].error
    assert first is not None and refused is not None
    assert (first.field, first.value, first.allowed) == ("toNode", '"all"', BROADCAST_ALLOWED)
    assert str(first) == (
        'message 0: field "toNode": value "all" is a broadcast, which reaches every node only '
        'through JetStream, but this node\'s delivery is "core" and the message does not set '
        f'"jetstream"; allowed: {BROADCAST_ALLOWED}'
    )
    assert (refused.field, refused.value) == ("toNodes[1]", '"all"')
    assert [(m.to_node, m.jetstream) for m in stored] == [
        ("ship1", None),
        ("all", True),
        ("all", None),
    ]


async def test_a_broadcast_goes_through_on_a_jetstream_node_unless_it_asks_for_core() -> None:
    stored: list[Message] = []

    async def submit(messages: Sequence[Message]) -> list[str]:
        stored.extend(messages)
        return [m.id for m in messages]

    document = json.dumps(
        [
            {"toNode": "all", "method": "REQPing"},
            {"toNode": "all", "method": "REQPing", "jetstream": False},
        ]
    )
    answers = await accept_document(
        document, node_name="central", submit=submit, table=BUILTIN_METHODS, jetstream=True
    )
    assert [a.accepted for a in answers] == [True, False]
    error = answers[1].error
    assert error is not None and 'the message sets "jetstream": false' in error.reason
    assert [m.to_node for m in stored] == ["all"]
