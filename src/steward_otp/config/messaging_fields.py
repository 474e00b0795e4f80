"""Config's fields for where messages are kept, how they come in and how they travel.

The sections Folders (the node's folders under its home), Inputs (how messages come in) and
Delivery (how they go out: timeouts, retries, retention, core NATS or JetStream,
compression), in the order of the configuration file. :class:`MessagingFields` extends
:class:`~steward_otp.config.connection_fields.ConnectionFields` so that attrs keeps that
order (see there).

The annotations are evaluated types on purpose (no ``from __future__ import annotations``):
a :class:`~steward_otp.config.Setting`'s ``annotation`` is the field's type, and loading
converts values by it.
"""

from pathlib import Path
from typing import Final, Literal

import attrs

from steward_otp.config.checks import (
    _count_or_zero,
    _flag,
    _folder,
    _listen_address,
    _one_of,
    _seconds_positive,
    _whole_seconds,
)
from steward_otp.config.connection_fields import ConnectionFields, _doc

Compression = Literal["lz4", "none"]
Delivery = Literal["core", "jetstream"]
DELIVERIES: Final[tuple[Delivery, ...]] = ("core", "jetstream")
"""How messages travel: core NATS (the sender keeps them until ACKed) or JetStream."""

COMPRESSIONS: Final[tuple[Compression, ...]] = ("lz4", "none")
"""How message payloads are compressed on the wire."""


@attrs.frozen(kw_only=True)
class MessagingFields(ConnectionFields):
    """The fields of the sections Folders, Inputs and Delivery."""

    # -- Folders -------------------------------------------------------------------------------
    socket_folder: Path = attrs.field(
        default=Path("tmp"),
        validator=_folder,
        metadata=_doc(
            "Folders",
            "Folder of the node's sockets (steward.sock, control.sock) and temporary files.",
            "SocketFolder",
        ),
    )
    read_folder: Path = attrs.field(
        default=Path("readfolder"),
        validator=_folder,
        metadata=_doc(
            "Folders",
            "Folder watched for message files when enable_read_folder is on; each file is "
            "read, queued and deleted.",
            "ReadFolder",
        ),
    )
    database_folder: Path = attrs.field(
        default=Path("var/lib"),
        validator=_folder,
        metadata=_doc(
            "Folders",
            "Folder of the node's database (durable outbox, inbox, audit). Keys and ACLs stay in "
            "<home>/etc.",
            "DatabaseFolder",
        ),
    )
    subscribers_data_folder: Path = attrs.field(
        default=Path("data"),
        validator=_folder,
        metadata=_doc(
            "Folders",
            "Folder where methods write their results (REQToFile, REQHello, the central "
            "error log, ...).",
            "SubscribersDataFolder",
        ),
    )

    # -- Inputs --------------------------------------------------------------------------------
    enable_socket: bool = attrs.field(
        default=True,
        validator=_flag,
        metadata=_doc(
            "Inputs",
            "Accept messages on the Unix socket steward.sock in socket_folder.",
            "EnableSocket",
        ),
    )
    enable_read_folder: bool = attrs.field(
        default=True,
        validator=_flag,
        metadata=_doc("Inputs", "Watch read_folder for message files.", "EnableReadFolder"),
    )
    tcp_listener: str = attrs.field(
        default="",
        validator=_listen_address,
        metadata=_doc(
            "Inputs",
            "HOST:PORT to accept messages on over TCP (one batch per connection, read until "
            "the client closes). Empty: off.",
            "TCPListener",
        ),
    )
    http_listener: str = attrs.field(
        default="",
        validator=_listen_address,
        metadata=_doc(
            "Inputs",
            "HOST:PORT to accept messages on as HTTP request bodies. Empty: off.",
            "HTTPListener",
        ),
    )

    # -- Delivery ------------------------------------------------------------------------------
    default_message_timeout: int = attrs.field(
        default=10,
        validator=_whole_seconds,
        metadata=_doc(
            "Delivery",
            "ACK timeout in whole seconds of the messages the node sends by itself (hello, key "
            "and ACL update requests).",
            "DefaultMessageTimeout",
        ),
    )
    default_message_retries: int = attrs.field(
        default=1,
        validator=_count_or_zero,
        metadata=_doc(
            "Delivery",
            "Retries given to a message whose retries field is negative.",
            "DefaultMessageRetries",
        ),
    )
    default_method_timeout: float = attrs.field(
        default=10.0,
        validator=_seconds_positive,
        metadata=_doc(
            "Delivery",
            "Seconds a method may run when the message does not set methodTimeout. Messages "
            "this node sends carry it rounded up to whole seconds (methodTimeout's unit).",
            "DefaultMethodTimeout",
        ),
    )
    keep_publishers_alive_for: float = attrs.field(
        default=10.0,
        validator=_seconds_positive,
        metadata=_doc(
            "Delivery",
            "Seconds an idle publisher (one per destination node and method) is kept before "
            "it is stopped.",
            "KeepPublishersAliveFor",
        ),
    )
    error_message_timeout: int = attrs.field(
        default=60,
        validator=_whole_seconds,
        metadata=_doc(
            "Delivery",
            "ACK timeout in whole seconds of error-log messages sent to the central error logger.",
            "ErrorMessageTimeout",
        ),
    )
    error_message_retries: int = attrs.field(
        default=10,
        validator=_count_or_zero,
        metadata=_doc(
            "Delivery",
            "Retries of error-log messages sent to the central error logger.",
            "ErrorMessageRetries",
        ),
    )
    dedupe_retention_seconds: float = attrs.field(
        default=7 * 24 * 3600.0,
        validator=_seconds_positive,
        metadata=_doc(
            "Delivery",
            "Seconds the ids of received messages are remembered, so that a retried delivery "
            "whose ACK was lost does not run twice (default 7 days). Retries of one message "
            "must end within this time.",
        ),
    )
    outbox_retention_seconds: float = attrs.field(
        default=7 * 24 * 3600.0,
        validator=_seconds_positive,
        metadata=_doc(
            "Delivery",
            "Seconds a failed or cancelled message stays in the outbox, for an operator to "
            "retry it, before it is removed (default 7 days); its audit record stays.",
        ),
    )
    audit_retention_seconds: float = attrs.field(
        default=30 * 24 * 3600.0,
        validator=_seconds_positive,
        metadata=_doc(
            "Delivery",
            "Seconds the audit log keeps the record of each finished message (delivered, "
            "failed, cancelled, purged, handled) (default 30 days).",
        ),
    )
    delivery: Delivery = attrs.field(
        default="core",
        validator=_one_of(*DELIVERIES),
        metadata=_doc(
            "Delivery",
            "How this node sends and receives: 'core' (the sender keeps a message in its "
            "outbox until the destination ACKs it) or 'jetstream' (the broker keeps it in the "
            "NODES stream until the destination takes it, so the sender may be gone by then; "
            "needs a broker with JetStream, which the embedded broker then runs). "
            "toNode 'all' (broadcast) needs 'jetstream'. See docs/protocol.md.",
        ),
    )
    jetstream_max_age_seconds: float = attrs.field(
        default=7 * 24 * 3600.0,
        validator=_seconds_positive,
        metadata=_doc(
            "Delivery",
            "With delivery 'jetstream': how long a message may wait in the broker's stream "
            "for its node before the broker drops it (default 7 days).",
        ),
    )
    jetstream_ack_wait_seconds: float = attrs.field(
        default=30.0,
        validator=_seconds_positive,
        metadata=_doc(
            "Delivery",
            "With delivery 'jetstream': how long the broker waits for a node to acknowledge a "
            "message it delivered before delivering it again (e.g. after the node was killed).",
        ),
    )
    jetstream_max_msgs_per_subject: int = attrs.field(
        default=0,
        validator=_count_or_zero,
        metadata=_doc(
            "Delivery",
            "With delivery 'jetstream': messages kept per node and method in the stream, the "
            "oldest dropped first; 0: no limit.",
        ),
    )
    compression: Compression = attrs.field(
        default="lz4",
        validator=_one_of(*COMPRESSIONS),
        metadata=_doc(
            "Delivery",
            "Compression of message payloads: 'lz4' (payloads of at least "
            "compress_threshold_bytes) or 'none'. Receivers read both.",
            "Compression",
        ),
    )
    compress_threshold_bytes: int = attrs.field(
        default=1024,
        validator=_count_or_zero,
        metadata=_doc(
            "Delivery",
            "Smallest encoded payload, in bytes, that is compressed when compression is 'lz4'.",
        ),
    )
