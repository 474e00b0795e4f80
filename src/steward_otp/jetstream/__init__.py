"""JetStream delivery: messages kept by the broker until their node takes them.

Everything here speaks plain NATS through a :class:`~steward_otp.transport.Transport`: the
JetStream API is request/reply on ``$JS.API.*`` subjects, a publish into the stream is
acknowledged by the broker on the publish's reply subject, and a push consumer delivers to an
ordinary subject with a queue group. So the transport seam stays as it is, and only the
bridge talks to NATS.

One module per part, every name imported from ``steward_otp.jetstream``:

* :mod:`~steward_otp.jetstream.layout` -- the one stream, the durable consumer of each
  node, their subjects, limits and configurations (pure; see ``docs/protocol.md``);
* :mod:`~steward_otp.jetstream.api` -- the API calls: making the stream and the consumers,
  asking whether the broker has JetStream, reading the broker's publish acknowledgements;
* :mod:`~steward_otp.jetstream.waiting` -- what waits in the stream for each node.
"""

from steward_otp.jetstream.api import (
    NOT_ENABLED_CODES,
    STREAM_EXISTS_DIFFERENTLY,
    STREAM_NOT_FOUND,
    JetStreamUnavailable,
    PubAck,
    api_request,
    ensure_stream,
    ensure_stream_and_consumer,
    jetstream_available,
    parse_pub_ack,
    stream_info,
)
from steward_otp.jetstream.layout import (
    ACK,
    BROADCAST_NODE,
    STREAM,
    SUBJECT_PREFIX,
    TERMINATE,
    StreamLimits,
    consumer_config,
    consumer_name,
    deliver_subject,
    stream_config,
    stream_subject,
)
from steward_otp.jetstream.waiting import (
    CONSUMER_NOT_FOUND,
    CONSUMER_PREFIX,
    NO_MESSAGE,
    SEQUENCE_NOT_FOUND,
    WaitingMessage,
    delete_waiting,
    waiting_counts,
    waiting_message,
    waiting_messages,
)

__all__ = [
    "ACK",
    "BROADCAST_NODE",
    "CONSUMER_NOT_FOUND",
    "CONSUMER_PREFIX",
    "NOT_ENABLED_CODES",
    "NO_MESSAGE",
    "SEQUENCE_NOT_FOUND",
    "STREAM",
    "STREAM_EXISTS_DIFFERENTLY",
    "STREAM_NOT_FOUND",
    "SUBJECT_PREFIX",
    "TERMINATE",
    "JetStreamUnavailable",
    "PubAck",
    "StreamLimits",
    "WaitingMessage",
    "api_request",
    "consumer_config",
    "consumer_name",
    "delete_waiting",
    "deliver_subject",
    "ensure_stream",
    "ensure_stream_and_consumer",
    "jetstream_available",
    "parse_pub_ack",
    "stream_config",
    "stream_info",
    "stream_subject",
    "waiting_counts",
    "waiting_message",
    "waiting_messages",
]
