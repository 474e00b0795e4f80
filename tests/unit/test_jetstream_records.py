"""The JetStream layout and the broker's publish acknowledgements."""

from __future__ import annotations

from steward_otp.jetstream import (
    StreamLimits,
    consumer_config,
    consumer_name,
    deliver_subject,
    parse_pub_ack,
    stream_config,
    stream_subject,
)


def test_layout_names() -> None:
    assert stream_subject("ship1.REQPing.EventACK") == "NODES.ship1.REQPing.EventACK"
    assert deliver_subject("ship1") == "_SOTP.JS.ship1"
    config = consumer_config("ship1", StreamLimits(ack_wait_seconds=2))
    assert config["durable_name"] == "sotp_ship1"
    assert config["deliver_group"] == "ship1"
    assert config["filter_subjects"] == ["NODES.ship1.>", "NODES.all.>"]
    assert config["ack_wait"] == 2_000_000_000


def test_stream_limits_become_nanoseconds_and_unlimited_is_minus_one() -> None:
    config = stream_config(StreamLimits(max_age_seconds=60, max_msgs_per_subject=0))
    assert config["max_age"] == 60_000_000_000
    assert config["max_msgs_per_subject"] == -1
    assert config["subjects"] == ["NODES.>"]


def test_pub_acks() -> None:
    assert parse_pub_ack(b'{"stream":"NODES","seq":3}').stored
    dup = parse_pub_ack(b'{"stream":"NODES","seq":3,"duplicate": true}')
    assert dup.stored and dup.duplicate
    refused = parse_pub_ack(b'{"error":{"code":503,"description":"no space"}}')
    assert not refused.stored and refused.error == "no space"
    for garbage in (b"", b"[]", b'{"stream":"OTHER","seq":1}'):
        answer = parse_pub_ack(garbage)
        assert not answer.stored and answer.error


def test_waiting_message_fields_come_from_the_subject_also_for_dotted_node_names() -> None:
    from steward_otp.jetstream.waiting import WaitingMessage, _subject_node  # noqa: PLC0415

    assert _subject_node("NODES.ship1.REQPing.EventACK") == "ship1"
    assert _subject_node("NODES.ship.7.REQPing.EventACK") == "ship.7"
    assert _subject_node("NODES.all.REQPing.EventACK") == "all"
    assert _subject_node("OTHER.ship1.REQPing.EventACK") == ""
    waiting = WaitingMessage(1, "ship.7", "NODES.ship.7.REQPing.EventACK", "i", "c", "t", 3)
    assert waiting.method == "REQPing"
    assert not waiting.broadcast
    assert WaitingMessage(2, "x", "NODES.all.REQPing.EventACK", "i", "c", "t", 3).broadcast


def test_stored_headers_are_read_with_lower_case_keys() -> None:
    import base64  # noqa: PLC0415

    from steward_otp.jetstream.waiting import _headers  # noqa: PLC0415

    raw = b"NATS/1.0\r\nNats-Msg-Id: central:1\r\nfromNode: central\r\nsotp: 2\r\n\r\n"
    assert _headers(base64.b64encode(raw).decode()) == {
        "nats-msg-id": "central:1",
        "fromnode": "central",
        "sotp": "2",
    }
    assert _headers(None) == {}
    assert _headers("not base64!") == {}


def test_consumer_names_are_valid_for_dotted_node_names_and_never_shared() -> None:
    assert consumer_name("ship1") == "sotp_ship1"
    dotted, underscored = consumer_name("ship.7"), consumer_name("ship_7")
    assert "." not in dotted and dotted.startswith("sotp_ship_7_")
    assert dotted != underscored
