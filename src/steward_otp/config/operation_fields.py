"""Config's fields for running the node: services, logging, security, subscribers.

The sections Services (metrics, the data folder view, the web view), Logging, Security
(signatures, ACLs, key and ACL distribution) and Subscribers and timers, the last of the
configuration file. :class:`OperationFields` extends
:class:`~steward_otp.config.messaging_fields.MessagingFields` so that attrs keeps the file's
order (see :mod:`~steward_otp.config.connection_fields`).

The annotations are evaluated types on purpose (no ``from __future__ import annotations``):
a :class:`~steward_otp.config.Setting`'s ``annotation`` is the field's type, and loading
converts values by it.
"""

import attrs

from steward_otp.config.checks import (
    _acl_check,
    _auto_flag,
    _flag,
    _listen_address,
    _method_list,
    _node_list,
    _one_of,
    _public_key,
    _seconds_or_zero,
    _seconds_positive,
)
from steward_otp.config.connection_fields import _doc
from steward_otp.config.messaging_fields import MessagingFields
from steward_otp.logs import LOG_LEVELS, LogLevel

_START_SUB = "Subscribers and timers"


@attrs.frozen(kw_only=True)
class OperationFields(MessagingFields):
    """The fields of the sections Services, Logging, Security, and Subscribers and timers."""

    # -- Services ------------------------------------------------------------------------------
    prom_host_and_port: str = attrs.field(
        default="",
        validator=_listen_address,
        metadata=_doc(
            "Services",
            "HOST:PORT to serve Prometheus metrics on, at /metrics. Empty: no metrics listener.",
            "PromHostAndPort",
        ),
    )
    expose_data_folder: str = attrs.field(
        default="",
        validator=_listen_address,
        metadata=_doc(
            "Services",
            "HOST:PORT to serve subscribers_data_folder read-only over HTTP. Empty: off.",
            "ExposeDataFolder",
        ),
    )
    web_listener: str = attrs.field(
        default="",
        validator=_listen_address,
        metadata=_doc(
            "Services",
            "HOST:PORT to serve the web view on (fleet, trees, queue, send, error log), for "
            "whoever holds the token made by `steward-otp web token`. Empty: off.",
        ),
    )

    # -- Logging -------------------------------------------------------------------------------
    log_level: LogLevel = attrs.field(
        default="info",
        validator=_one_of(*LOG_LEVELS),
        metadata=_doc(
            "Logging",
            "Console log threshold: 'error', 'warning', 'info' or 'debug'.",
            "LogLevel",
        ),
    )
    log_console_timestamps: bool = attrs.field(
        default=False,
        validator=_flag,
        metadata=_doc(
            "Logging",
            "Start each console log line with a timestamp (off when a service manager such as "
            "journald adds its own).",
            "LogConsoleTimestamps",
        ),
    )
    is_central_error_logger: bool | None = attrs.field(
        default=None,
        validator=_auto_flag,
        metadata=_doc(
            "Logging",
            "Receive the errors of all nodes (subscribe to errorCentral.REQErrorLog) and append "
            "them to errorLog/errorCentral/error.log in the data folder. 'auto': only when "
            "node_name equals central_node_name.",
            "IsCentralErrorLogger",
        ),
    )
    error_log_known_nodes: str = attrs.field(
        default="",
        validator=_node_list,
        metadata=_doc(
            "Logging",
            "On the central error logger: nodes whose REQErrorLog lines are written besides "
            "those it knows (nodes that sent it a hello, or with a key in "
            "etc/signing/keys.json), comma-separated; '*': any node. Lines from other nodes "
            "are dropped and counted.",
        ),
    )

    # -- Security ------------------------------------------------------------------------------
    enable_signature_check: bool = attrs.field(
        default=False,
        validator=_flag,
        metadata=_doc(
            "Security",
            "Run only messages signed by an allowed key, for this node, in time (every method; "
            "see docs/security.md). Refused messages are reported to the central error log "
            "and rejected back to their sender. Off: anyone who can publish to the broker can "
            "make this node run commands (a warning says so at start).",
            "EnableSignatureCheck",
        ),
    )
    signature_max_age: float = attrs.field(
        default=6 * 24 * 3600.0,
        validator=_seconds_positive,
        metadata=_doc(
            "Security",
            "Oldest signature accepted, in seconds (default 6 days): a message that waited "
            "longer in an outbox, or a captured message replayed later, is refused. With "
            "enable_signature_check on it must be at most dedupe_retention_seconds minus 300, "
            "so that a replay is caught by one or the other.",
        ),
    )
    signature_batches: bool = attrs.field(
        default=True,
        validator=_flag,
        metadata=_doc(
            "Security",
            "Sign messages prepared together (an input's document, the replies of a batch) "
            "with one signature per batch of up to 64, each message carrying its Merkle proof "
            "(signature record version 2; see docs/security.md). Off: every message is signed "
            "alone (version 1), for fleets whose checking nodes run a steward-otp that knows "
            "version 1 records only.",
        ),
    )
    central_public_key: str = attrs.field(
        default="",
        validator=_public_key,
        metadata=_doc(
            "Security",
            "Public signing key of central_node_name (base64: the content of central's "
            "etc/signing/public.key): trusted for messages signed by central, in addition to "
            "the keys in etc/signing/keys.json. Empty: only keys.json.",
        ),
    )
    enable_acl_check: bool = attrs.field(
        default=False,
        validator=_acl_check,
        metadata=_doc(
            "Security",
            "Run a message only when this node's ACL (from central) lets its signer run that "
            "method, and for REQCliCommand/REQCliCommandCont that command line; replies, "
            "liveness and key/ACL distribution are not restricted, nor the node's own "
            "messages. Deny by default. Needs enable_signature_check (the ACL names signers). "
            "See docs/security.md.",
            "EnableAclCheck",
        ),
    )
    enable_acl_updates: bool = attrs.field(
        default=False,
        validator=_flag,
        metadata=_doc(
            "Security",
            "Ask central_node_name for this node's ACL every acl_update_interval seconds (the "
            "first at start) and store what it delivers in etc/acl/node.json. Off (Steward: "
            "on): the ACL stored last stays in use.",
            "EnableAclUpdates",
        ),
    )
    acl_update_interval: float = attrs.field(
        default=60.0,
        validator=_seconds_positive,
        metadata=_doc(
            "Security",
            "Seconds between two requests for this node's ACL (enable_acl_updates).",
            "REQAclRequestUpdateInterval",
        ),
    )
    enable_key_updates: bool = attrs.field(
        default=False,
        validator=_flag,
        metadata=_doc(
            "Security",
            "Ask central_node_name for the public keys it allows every keys_update_interval "
            "seconds (the first at start) and use them as etc/signing/keys.json's allowed "
            "keys. Central's own key is trusted from central_public_key or, without it, on "
            "first contact (a later change of it is refused). Off (Steward: on): keys.json "
            "is kept by hand.",
            "EnableKeyUpdates",
        ),
    )
    keys_update_interval: float = attrs.field(
        default=60.0,
        validator=_seconds_positive,
        metadata=_doc(
            "Security",
            "Seconds between two requests for central's allowed keys (enable_key_updates).",
            "REQKeysRequestUpdateInterval",
        ),
    )
    is_central_auth: bool = attrs.field(
        default=False,
        validator=_flag,
        metadata=_doc(
            "Security",
            "Act as the key and ACL authority: record the public key each node sends in its "
            "hello as pending, serve REQKeysAllow and REQKeysDelete (allow or delete keys in "
            "etc/signing/keys.json), keep the ACLs in etc/acl/central.json, serve the REQAcl* "
            "methods and deliver each node its ACL and the allowed keys (REQKeysRequestUpdate).",
            "IsCentralAuth",
        ),
    )

    # -- Subscribers and timers ----------------------------------------------------------------
    start_pub_hello: float = attrs.field(
        default=30.0,
        validator=_seconds_or_zero,
        metadata=_doc(
            _START_SUB,
            "Send a hello to the central node every this many seconds (the first at start). "
            "0: never.",
            "StartPubREQHello",
        ),
    )
    disabled_methods: str = attrs.field(
        default="",
        validator=_method_list,
        metadata=_doc(
            _START_SUB,
            "Methods this node does not serve (no subscriber), comma-separated, e.g. "
            "'REQCliCommand,REQCliCommandCont'. Empty: every method it has a handler for. "
            "Steward's StartSubREQ<method> = false keys are read into it.",
        ),
    )
