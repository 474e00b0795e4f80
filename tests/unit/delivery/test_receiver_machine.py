"""The receiver's batch triage and settlement, and the ACK record on the wire."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from steward_otp import codec
from steward_otp.delivery.protocol import VERSION_HEADER, Ack, AckDecodeError, with_version
from steward_otp.delivery.receiver import refuse, settle, stored_rows, triage
from steward_otp.message import Message
from steward_otp.transport import InboundMessage

SUBJECT = "ship1.REQToFileAppend.EventACK"


def message(msg_id: str, *, ack: bool = True, data: bytes = b"x") -> Message:
    return Message(
        id=msg_id,
        to_node="ship1",
        from_node="central",
        method="REQToFileAppend",
        data=data,
        ack_timeout=5 if ack else 0,
    )


def wire(
    m: Message, *, reply: str = "_INBOX.a", version: str | None = "2", compress: bool = False
) -> InboundMessage:
    encoded = codec.encode(m, compress_threshold=1 if compress else None)
    headers = dict(encoded.headers)
    if version is not None:
        headers[VERSION_HEADER] = version
    return InboundMessage(SUBJECT, encoded.payload, headers, reply)


def acks_by_subject(payloads: list[tuple[str, bytes]]) -> dict[str, Ack]:
    return {subject: Ack.decode(payload) for subject, payload in payloads}


def test_one_ack_per_sender_lists_new_and_duplicate_ids() -> None:
    batch = [wire(message("a")), wire(message("b")), wire(message("c"), reply="_INBOX.b")]
    triaged = triage(SUBJECT, batch)
    settlement = settle(triaged.candidates, new_ids=["a", "c"])
    acks = acks_by_subject([(a.subject, a.payload) for a in settlement.acks])
    assert acks == {"_INBOX.a": Ack(("a", "b")), "_INBOX.b": Ack(("c",))}
    assert [m.id for m in settlement.run] == ["a", "c"]
    assert settlement.duplicates == 1


def test_stored_bytes_are_the_received_cbor_decompressed_never_re_encoded() -> None:
    m = message("big", data=b"y" * 5000)
    inbound = wire(m, compress=True)
    assert inbound.headers is not None and inbound.headers["cmp"] == "lz4"
    (candidate,) = triage(SUBJECT, [inbound]).candidates
    assert candidate.stored == codec.encode(m, compress_threshold=None).payload
    assert stored_rows([candidate]) == [("big", "central", "REQToFileAppend", candidate.stored)]


def test_garbage_and_missing_fields_are_reported_not_acked() -> None:
    garbage = InboundMessage(SUBJECT, b"\xff\x00", {"serial": "cbor", VERSION_HEADER: "2"}, "r")
    nameless = wire(Message(id="", to_node="ship1", from_node="central", method="REQNone"))
    triaged = triage(SUBJECT, [garbage, nameless])
    assert triaged.candidates == () and triaged.rejections == ()
    texts = [p.text for p in triaged.problems]
    assert "decoding failed" in texts[0]
    assert 'field "id" is empty' in texts[1]


def test_unsupported_version_is_rejected_by_id_with_what_is_allowed() -> None:
    triaged = triage(SUBJECT, [wire(message("a"), version="9")])
    assert triaged.candidates == ()
    (rejection,) = triaged.rejections
    assert rejection.msg_id == "a" and "'9' is not supported; allowed: 2" in rejection.reason
    (ack,) = settle([], [], triaged.rejections).acks
    assert Ack.decode(ack.payload).rejected == (("a", rejection.reason),)


def test_steward_request_reply_gets_an_empty_ack_per_message() -> None:
    triaged = triage(SUBJECT, [wire(message("a"), version=None, reply="_INBOX.x.1")])
    (candidate,) = triaged.candidates
    assert not candidate.versioned
    settlement = settle(triaged.candidates, ["a"])
    assert [(a.subject, a.payload) for a in settlement.acks] == [("_INBOX.x.1", b"")]
    assert refuse(candidate, "no") is None  # Steward's request/reply has no "no"


def test_fire_and_forget_gets_no_ack() -> None:
    triaged = triage(SUBJECT, [wire(message("n", ack=False), reply="")])
    assert settle(triaged.candidates, ["n"]).acks == ()


def test_ack_record_round_trip_and_errors() -> None:
    ack = Ack(("a", "b"), (("c", "why"),))
    assert Ack.decode(ack.encode()) == ack
    for bad, match in [
        (b"\xff", "not CBOR"),
        (cbor2.dumps([1]), "expected a map"),
        (cbor2.dumps({"v": 1}), "version 1"),
        (cbor2.dumps({"v": 2, "ok": [1]}), '"ok"'),
        (cbor2.dumps({"v": 2, "rej": [["a"]]}), '"rej"'),
    ]:
        with pytest.raises(AckDecodeError, match=match):
            Ack.decode(bad)
    assert with_version({"serial": "cbor"}) == {"serial": "cbor", VERSION_HEADER: "2"}


@given(
    picks=st.lists(
        st.tuples(
            st.integers(0, 9),  # id
            st.sampled_from(["_INBOX.a", "_INBOX.b", ""]),  # reply subject
            st.booleans(),  # wants an ACK
            st.sampled_from(["2", None, "3"]),  # protocol version
        ),
        max_size=30,
    ),
    seen=st.sets(st.integers(0, 9)),
)
def test_each_new_id_runs_once_and_every_stored_message_is_acked(
    picks: list[tuple[int, str, bool, str | None]], seen: set[int]
) -> None:
    batch = [
        wire(message(f"m{i}", ack=ack), reply=reply, version=version)
        for i, reply, ack, version in picks
    ]
    triaged = triage(SUBJECT, batch)
    rows = stored_rows(triaged.candidates)
    assert len({r[0] for r in rows}) == len(rows)
    new_ids = [r[0] for r in rows if int(r[0][1:]) not in seen]
    settlement = settle(triaged.candidates, new_ids, triaged.rejections)
    assert sorted(m.id for m in settlement.run) == sorted(new_ids)
    versioned_acks: dict[str, Ack] = {}
    for ack in settlement.acks:
        if ack.payload:
            assert ack.subject not in versioned_acks, "one ACK per sender per batch"
            versioned_acks[ack.subject] = Ack.decode(ack.payload)
    for candidate in triaged.candidates:
        if candidate.wants_ack and candidate.versioned:
            assert candidate.message.id in versioned_acks[candidate.reply].accepted
    for rejection in triaged.rejections:
        assert (rejection.msg_id, rejection.reason) in versioned_acks[rejection.reply].rejected


def test_jetstream_deliveries_are_acked_each_and_garbage_terminated() -> None:
    batch = [
        wire(message("a"), reply="$JS.ACK.1"),
        wire(message("a"), reply="$JS.ACK.2"),  # redelivered: acked again, not run again
        wire(message("n", ack=False), reply="$JS.ACK.3"),  # the broker wants an ACK anyway
        InboundMessage(SUBJECT, b"\xff", {"serial": "cbor"}, "$JS.ACK.4"),
        wire(message("v"), reply="$JS.ACK.5", version="9"),
    ]
    triaged = triage(SUBJECT, batch, jetstream=True)
    assert triaged.terminate == ("$JS.ACK.4",)
    settlement = settle(triaged.candidates, ["a", "n"], triaged.rejections)
    assert [(a.subject, a.payload) for a in settlement.acks] == [
        ("$JS.ACK.1", b"+ACK"),
        ("$JS.ACK.2", b"+ACK"),
        ("$JS.ACK.3", b"+ACK"),
        ("$JS.ACK.5", b"+TERM"),
    ]
    assert [m.id for m in settlement.run] == ["a", "n"]
    (candidate, *_) = triaged.candidates
    rejection = refuse(candidate, "not signed")
    assert rejection is not None and rejection.jetstream
