"""The :class:`Config` record: every setting of a node, with its default, check and help.

One attrs field per setting, in the order of the configuration file. Field metadata (made by
``_doc``): ``section`` and ``help`` (shown by ``steward-otp run --help`` and as the comment
above each key in config.toml) and ``go_key`` (Steward's TOML key, read for migration).
:mod:`~steward_otp.config.settings` makes the setting table from these fields, so a field
added here is at once a command-line option, an environment variable, a commented key of
config.toml and a setting the documentation must name.

Guarantees: a Config exists only validated (construction runs each field's check from
:mod:`~steward_otp.config.checks`, then the cross-field check of ``__attrs_post_init__``, and
raises :class:`~steward_otp.config.ConfigError` otherwise) and is frozen. Its properties
resolve folders against ``home`` and never touch the disk.

The annotations are evaluated types on purpose (no ``from __future__ import annotations``):
a :class:`~steward_otp.config.Setting`'s ``annotation`` is the field's type, and loading
converts values by it.
"""

from pathlib import Path
from typing import Final, Literal

import attrs

from steward_otp.config.checks import (
    _acl_check,
    _auto_flag,
    _broker_address,
    _count_or_zero,
    _creds_file,
    _flag,
    _folder,
    _listen_address,
    _method_list,
    _node_list,
    _node_name,
    _one_of,
    _optional_file,
    _port,
    _public_key,
    _seconds_or_zero,
    _seconds_positive,
    _tls_key_file,
)
from steward_otp.config.errors import _Invalid
from steward_otp.logs import LOG_LEVELS, LogLevel

Compression = Literal["lz4", "none"]
Delivery = Literal["core", "jetstream"]
DELIVERIES: Final[tuple[Delivery, ...]] = ("core", "jetstream")
"""How messages travel: core NATS (the sender keeps them until ACKed) or JetStream."""

COMPRESSIONS: Final[tuple[Compression, ...]] = ("lz4", "none")
"""How message payloads are compressed on the wire."""

CONFIG_FILE_NAME: Final = "config.toml"

SIGNATURE_CLOCK_SKEW: Final = 300.0
"""Seconds a signing time may lie in the future (clocks of nodes differ a little)."""


def _doc(section: str, help: str, go_key: str | None = None) -> dict[str, str | None]:
    return {"section": section, "help": help, "go_key": go_key}


_START_SUB = "Subscribers and timers"


@attrs.frozen(kw_only=True)
class Config:
    """The validated configuration of one node.

    Constructing it checks every field and raises :class:`ConfigError` naming the field, the
    bad value and what is allowed. Folder fields are kept as given (relative to ``home``
    unless absolute); use the ``*_dir`` / ``*_path`` properties for resolved locations.
    Durations are seconds. Use :func:`attrs.evolve` for a changed copy.
    """

    home: Path
    """The node's home folder; relative folders are resolved against it."""

    # -- Identity ------------------------------------------------------------------------------
    node_name: str = attrs.field(
        validator=_node_name,
        metadata=_doc(
            "Identity",
            "Name of this node; messages reach it with toNode set to this name. Tokens "
            "separated by '.', without whitespace, '*', '>', '/' or '\\'. Instances started "
            "with the same name share its work. Required.",
            "NodeName",
        ),
    )
    central_node_name: str = attrs.field(
        default="central",
        validator=_node_name,
        metadata=_doc(
            "Identity",
            "Name of the central node: hello messages and key and ACL update requests go to it.",
            "CentralNodeName",
        ),
    )

    # -- Broker --------------------------------------------------------------------------------
    broker_address: str = attrs.field(
        default="",
        validator=_broker_address,
        metadata=_doc(
            "Broker",
            "NATS server to connect to, as HOST:PORT or nats://HOST:PORT (also tls://, ws://, "
            "wss://); for a cluster, several comma-separated (the node connects to one and "
            "fails over to the others). Empty: start an embedded nats-server on "
            "embedded_broker_port and use it.",
            "BrokerAddress",
        ),
    )
    embedded_broker_port: int = attrs.field(
        default=4222,
        validator=_port,
        metadata=_doc(
            "Broker",
            "Client port of the embedded nats-server; used only when broker_address is empty.",
        ),
    )
    nats_conn_opt_timeout: float = attrs.field(
        default=20.0,
        validator=_seconds_positive,
        metadata=_doc(
            "Broker",
            "Seconds to wait for the NATS server to answer one connection attempt.",
            "NatsConnOptTimeout",
        ),
    )
    nats_connect_retry_interval: float = attrs.field(
        default=10.0,
        validator=_seconds_positive,
        metadata=_doc(
            "Broker",
            "Seconds between attempts to reach the NATS server; the node keeps trying forever.",
            "NatsConnectRetryInterval",
        ),
    )
    nats_reconnect_jitter: float = attrs.field(
        default=0.1,
        validator=_seconds_or_zero,
        metadata=_doc(
            "Broker",
            "Up to this many random extra seconds in the wait between reconnect attempts over "
            "plain TCP (drawn once per connection), so that many nodes do not reconnect in "
            "lockstep (Steward's key was in milliseconds; it is converted).",
            "NatsReconnectJitter",
        ),
    )
    nats_reconnect_jitter_tls: float = attrs.field(
        default=1.0,
        validator=_seconds_or_zero,
        metadata=_doc(
            "Broker",
            "Up to this many random extra seconds in the wait between reconnect attempts over "
            "TLS (tls:// or wss:// addresses, or root_ca_path set).",
            "NatsReconnectJitterTLS",
        ),
    )
    root_ca_path: Path | None = attrs.field(
        default=None,
        validator=_optional_file,
        metadata=_doc(
            "Broker",
            "PEM file of the CA to trust for TLS to the NATS server. Empty: the system's "
            "trust store.",
            "RootCAPath",
        ),
    )
    tls_cert_file: Path | None = attrs.field(
        default=None,
        validator=_optional_file,
        metadata=_doc(
            "Broker",
            "PEM certificate this node presents to the NATS server (mutual TLS, for a server "
            "with tls { verify: true }); needs tls_key_file. Empty: none.",
        ),
    )
    tls_key_file: Path | None = attrs.field(
        default=None,
        validator=_tls_key_file,
        metadata=_doc(
            "Broker",
            "PEM private key of tls_cert_file. Empty: none (both or neither must be set).",
        ),
    )
    nkey_seed_file: Path | None = attrs.field(
        default=None,
        validator=_optional_file,
        metadata=_doc(
            "Broker",
            "File holding the NATS nkey user seed (SU...) to authenticate with. Empty: no nkey.",
            "NkeySeedFile",
        ),
    )
    nkey_from_ed25519_ssh_key_file: Path | None = attrs.field(
        default=None,
        validator=_optional_file,
        metadata=_doc(
            "Broker",
            "OpenSSH ed25519 private key to derive the NATS nkey from; takes precedence over "
            "nkey_seed_file. Empty: not used.",
            "NkeyFromED25519SSHKeyFile",
        ),
    )
    nats_creds_file: Path | None = attrs.field(
        default=None,
        validator=_creds_file,
        metadata=_doc(
            "Broker",
            "NATS .creds file (a user JWT and its nkey seed, e.g. from nsc) to authenticate "
            "with to a server in operator (JWT) mode; excludes nkey_seed_file and "
            "nkey_from_ed25519_ssh_key_file. Empty: not used.",
        ),
    )

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
            "Folder of the node's database (durable outbox, inbox, audit) and key and ACL files.",
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
    default_message_timeout: float = attrs.field(
        default=10.0,
        validator=_seconds_positive,
        metadata=_doc(
            "Delivery",
            "ACK timeout in seconds of the messages the node sends by itself (hello, key and "
            "ACL update requests).",
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
            "Seconds a method may run when the message does not set methodTimeout.",
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
    error_message_timeout: float = attrs.field(
        default=60.0,
        validator=_seconds_positive,
        metadata=_doc(
            "Delivery",
            "ACK timeout in seconds of error-log messages sent to the central error logger.",
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

    def __attrs_post_init__(self) -> None:
        if (
            self.enable_signature_check
            and self.signature_max_age + SIGNATURE_CLOCK_SKEW > self.dedupe_retention_seconds
        ):
            raise _Invalid(
                "signature_max_age",
                self.signature_max_age,
                f"with enable_signature_check on it must be at most dedupe_retention_seconds "
                f"({self.dedupe_retention_seconds:g}) minus {SIGNATURE_CLOCK_SKEW:g} seconds of "
                "clock allowance; otherwise a message replayed after its id was forgotten "
                "would run again. Lower it or raise dedupe_retention_seconds",
            )

    # -- Resolved locations --------------------------------------------------------------------
    def resolve_path(self, path: Path) -> Path:
        """*path* itself when absolute, otherwise *path* under ``home``."""
        return path if path.is_absolute() else self.home / path

    @property
    def etc_dir(self) -> Path:
        """``<home>/etc``: holds the configuration file."""
        return self.home / "etc"

    @property
    def config_file(self) -> Path:
        """``<home>/etc/config.toml``, read by :func:`load_config`, written by
        :func:`save_config`."""
        return self.etc_dir / CONFIG_FILE_NAME

    @property
    def var_dir(self) -> Path:
        """``<home>/var``: parent of the default database folder."""
        return self.home / "var"

    @property
    def db_dir(self) -> Path:
        """The resolved ``database_folder`` (default ``<home>/var/lib``)."""
        return self.resolve_path(self.database_folder)

    @property
    def data_dir(self) -> Path:
        """The resolved ``subscribers_data_folder`` (default ``<home>/data``)."""
        return self.resolve_path(self.subscribers_data_folder)

    @property
    def tmp_dir(self) -> Path:
        """The resolved ``socket_folder`` (default ``<home>/tmp``)."""
        return self.resolve_path(self.socket_folder)

    @property
    def socket_path(self) -> Path:
        """The message input socket, ``<tmp_dir>/steward.sock``."""
        return self.tmp_dir / "steward.sock"

    @property
    def control_socket_path(self) -> Path:
        """The inspection socket used by the CLI, ``<tmp_dir>/control.sock``."""
        return self.tmp_dir / "control.sock"

    @property
    def readfolder_dir(self) -> Path:
        """The resolved ``read_folder`` (default ``<home>/readfolder``)."""
        return self.resolve_path(self.read_folder)

    @property
    def startup_dir(self) -> Path:
        """``<home>/startup``: message files run once at every start."""
        return self.home / "startup"

    @property
    def acts_as_central_error_logger(self) -> bool:
        """Whether this node receives the central error log (``is_central_error_logger``,
        where ``None`` means: when ``node_name == central_node_name``)."""
        if self.is_central_error_logger is None:
            return self.node_name == self.central_node_name
        return self.is_central_error_logger
