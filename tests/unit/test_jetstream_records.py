"""The JetStream layout and the broker's publish acknowledgements."""

from __future__ import annotations

from steward_otp.jetstream import (
    StreamLimits,
    consumer_config,
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
