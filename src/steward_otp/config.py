"""A node's configuration: the Config record, the TOML file + overrides precedence, and the folders.

Precedence (Steward's, see docs/configuration.md): built-in defaults, then
``<home>/etc/config.toml``, then overrides (the command-line flags). The effective result is
written back to the file with :func:`save_config`, so flags persist to the next start.
"""

import base64
import binascii
import contextlib
import difflib
import math
import os
import re
import textwrap
import tomllib
import types
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, Literal, get_args, get_origin

import attrs
import tomli_w

from steward_otp.atomic_file import write_atomically
from steward_otp.logs import LOG_LEVELS, LogLevel

Compression = Literal["lz4", "none"]
Delivery = Literal["core", "jetstream"]
DELIVERIES: Final[tuple[Delivery, ...]] = ("core", "jetstream")
"""How message payloads are compressed on the wire."""

COMPRESSIONS: Final[tuple[Compression, ...]] = ("lz4", "none")

FOLDER_MODE: Final = 0o770
"""Mode of the folders steward-otp creates (Steward's; the umask still applies)."""

CONFIG_FILE_NAME: Final = "config.toml"


class ConfigError(Exception):
    """A configuration that steward-otp cannot use.

    ``str(error)`` is a complete message for the operator: it names the field (and the file
    and key when the value came from the file), the bad value and what is allowed.
    ``field`` is the :class:`Config` field concerned, when there is one.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ConfigWarning(UserWarning):
    """Something in the configuration file was ignored (an unknown or unsupported key)."""


class _Invalid(ConfigError):
    """A value out of range; :func:`load_config` re-labels it with where the value came from."""

    def __init__(self, field: str, value: object, allowed: str, label: str | None = None) -> None:
        shown = str(value) if isinstance(value, Path) else value
        super().__init__(f"{label or field} = {shown!r} is not allowed: {allowed}", field=field)
        self.value = value
        self.allowed = allowed

    def relabel(self, label: str, value: object) -> "_Invalid":
        """The same complaint about *value* as the operator wrote it, under *label*."""
        return _Invalid(self.field or "", value, self.allowed, label)


# ---------------------------------------------------------------------------------------------
# Validators. Each raises _Invalid naming the field, the value and what is allowed.

_Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


def _number(*, minimum: float, inclusive: bool, unit: str, whole: bool = False) -> _Validator:
    kind = "a whole number" if whole else "a number"
    bound = f"at least {minimum:g}" if inclusive else f"greater than {minimum:g}"
    allowed = f"must be {kind}{unit}, {bound}"

    def check(_instance: object, attribute: "attrs.Attribute[Any]", value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Invalid(attribute.name, value, allowed)
        if (whole and not isinstance(value, int)) or not math.isfinite(value):
            raise _Invalid(attribute.name, value, allowed)
        if value < minimum or (value == minimum and not inclusive):
            raise _Invalid(attribute.name, value, allowed)

    return check


_seconds_positive = _number(minimum=0, inclusive=False, unit=" of seconds")
_seconds_or_zero = _number(minimum=0, inclusive=True, unit=" of seconds")
_count_or_zero = _number(minimum=0, inclusive=True, unit="", whole=True)


def _port(_instance: object, attribute: "attrs.Attribute[Any]", value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise _Invalid(attribute.name, value, "must be a port number from 1 to 65535")


def _flag(_instance: object, attribute: "attrs.Attribute[Any]", value: object) -> None:
    if not isinstance(value, bool):
        raise _Invalid(attribute.name, value, "must be true or false")


def _one_of(*choices: str) -> _Validator:
    allowed = "must be one of " + ", ".join(repr(c) for c in choices)

    def check(_instance: object, attribute: "attrs.Attribute[Any]", value: object) -> None:
        if value not in choices:
            raise _Invalid(attribute.name, value, allowed)

    return check


_NODE_NAME_ALLOWED: Final = (
    "must be a non-empty NATS subject token sequence: tokens separated by single '.', "
    "no empty token, no whitespace, no control characters and none of '*', '>', '/', '\\'"
)
_NODE_NAME_TOKEN: Final = re.compile(r"[^\s*>/\\\x00-\x1f\x7f]+")


def is_valid_node_name(name: str) -> bool:
    """Whether *name* can be a node name: a NATS subject token sequence that is also a safe
    single path component (node names become folder names under the data folder)."""
    return bool(name) and all(_NODE_NAME_TOKEN.fullmatch(token) for token in name.split("."))


def _node_name(_instance: object, attribute: "attrs.Attribute[Any]", value: object) -> None:
    if not isinstance(value, str) or not is_valid_node_name(value):
        raise _Invalid(attribute.name, value, _NODE_NAME_ALLOWED)


def node_names_setting(text: str) -> frozenset[str]:
    """The names of a comma-separated node list setting (``"*"`` stands for any node)."""
    return frozenset(name.strip() for name in text.split(",") if name.strip())


def _node_list(_instance: object, attribute: "attrs.Attribute[Any]", value: object) -> None:
    if not isinstance(value, str) or not all(
        name == "*" or is_valid_node_name(name) for name in node_names_setting(value)
    ):
        raise _Invalid(
            attribute.name,
            value,
            "must be empty, '*' (any node) or node names separated by commas",
        )


_HOST_PORT: Final = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]*):(?P<port>\d{1,5})")
_LISTEN_ALLOWED: Final = (
    "must be empty (off) or HOST:PORT with PORT from 1 to 65535, "
    "e.g. '127.0.0.1:8080', '[::1]:8080' or ':8080' (all interfaces)"
)
_BROKER_SCHEMES: Final = ("nats", "tls", "ws", "wss")
_BROKER_ALLOWED: Final = (
    "must be empty (use the embedded broker) or HOST:PORT, optionally prefixed with "
    "nats://, tls://, ws:// or wss://, with PORT from 1 to 65535, e.g. 'nats://10.0.0.5:4222' "
    "or 'nats://user:password@10.0.0.5:4222'; several servers of one cluster comma-separated, "
    "e.g. 'nats://10.0.0.5:4222,nats://10.0.0.6:4222' (not mixing ws/wss with nats/tls)"
)


def _is_host_port(text: str, *, host_required: bool) -> bool:
    match = _HOST_PORT.fullmatch(text)
    if match is None or (host_required and not match["host"]):
        return False
    return 1 <= int(match["port"]) <= 65535


def _listen_address(_instance: object, attribute: "attrs.Attribute[Any]", value: object) -> None:
    if not isinstance(value, str) or (value and not _is_host_port(value, host_required=False)):
        raise _Invalid(attribute.name, value, _LISTEN_ALLOWED)


def _broker_address(_instance: object, attribute: "attrs.Attribute[Any]", value: object) -> None:
    if not isinstance(value, str):
        raise _Invalid(attribute.name, value, _BROKER_ALLOWED)
    if not value:
        return
    schemes = [_broker_scheme(address.strip()) for address in value.split(",")]
    websocket = {scheme in ("ws", "wss") for scheme in schemes}
    if None in schemes or len(websocket) > 1:  # nats-py refuses to mix ws and plain
        raise _Invalid(attribute.name, value, _BROKER_ALLOWED)


def _broker_scheme(address: str) -> str | None:
    """The scheme of one broker address (``nats`` when it has none); None when invalid."""
    scheme, separator, rest = address.partition("://")
    host_port = rest.rpartition("@")[2] if separator else address  # user:password@ allowed
    if separator and scheme not in _BROKER_SCHEMES:
        return None
    if not _is_host_port(host_port, host_required=True):
        return None
    return scheme if separator else "nats"


_FOLDER_ALLOWED: Final = "must be a non-empty folder path, relative to home or absolute"


def _folder(_instance: object, attribute: "attrs.Attribute[Any]", value: object) -> None:
    if not isinstance(value, Path) or str(value) in ("", "."):
        raise _Invalid(attribute.name, value, _FOLDER_ALLOWED)


def _optional_file(_instance: object, attribute: "attrs.Attribute[Any]", value: object) -> None:
    if value is not None and (not isinstance(value, Path) or str(value) in ("", ".")):
        raise _Invalid(attribute.name, value, "must be empty (not used) or a file path")


def _auto_flag(_instance: object, attribute: "attrs.Attribute[Any]", value: object) -> None:
    if value is not None and not isinstance(value, bool):
        raise _Invalid(attribute.name, value, "must be true, false or 'auto'")


def _public_key(_instance: object, attribute: "attrs.Attribute[Any]", value: object) -> None:
    allowed = "must be empty or a base64 ed25519 public key (32 bytes)"
    if not isinstance(value, str):
        raise _Invalid(attribute.name, value, allowed)
    if value and decode_public_key(value) is None:
        raise _Invalid(attribute.name, value, allowed)


def decode_public_key(text: str) -> bytes | None:
    """The 32 bytes of a base64 public key (padding optional), or None when it is not one."""
    cleaned = "".join(text.split())
    try:
        raw = base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 32 else None


def _tls_key_file(instance: Any, attribute: "attrs.Attribute[Any]", value: object) -> None:
    """A client certificate needs its key, and a key its certificate."""
    _optional_file(instance, attribute, value)
    if (value is None) != (instance.tls_cert_file is None):
        raise _Invalid(
            attribute.name,
            value,
            "tls_cert_file and tls_key_file go together: set both (mutual TLS) or neither",
        )


def _creds_file(instance: Any, attribute: "attrs.Attribute[Any]", value: object) -> None:
    """A ``.creds`` file carries the user's nkey seed: no other nkey goes with it."""
    _optional_file(instance, attribute, value)
    if value is None:
        return
    for other in ("nkey_seed_file", "nkey_from_ed25519_ssh_key_file"):
        if getattr(instance, other) is not None:
            raise _Invalid(
                attribute.name,
                value,
                f"{attribute.name} and {other} exclude each other: the .creds file carries "
                f"the user's nkey seed; leave {other} empty (it is "
                f"{str(getattr(instance, other))!r}) or {attribute.name} empty",
            )


def method_names_setting(text: str) -> frozenset[str]:
    """The method names of a comma-separated method list setting (``disabled_methods``)."""
    return frozenset(name.strip() for name in text.split(",") if name.strip())


def _method_list(_instance: object, attribute: "attrs.Attribute[Any]", value: object) -> None:
    if not isinstance(value, str) or not all(
        _METHOD_NAME.fullmatch(name) for name in method_names_setting(value)
    ):
        raise _Invalid(
            attribute.name,
            value,
            "must be empty or method names separated by commas (letters, digits, '_', '-'), "
            "e.g. 'REQCliCommand,REQTailFile'",
        )


def _acl_check(instance: Any, attribute: "attrs.Attribute[Any]", value: object) -> None:
    """ACLs name the nodes that signed a message: without signature checks, anyone could
    claim any name, so the switch needs enable_signature_check."""
    _flag(instance, attribute, value)
    if value and not instance.enable_signature_check:
        raise _Invalid(
            attribute.name,
            value,
            "it needs enable_signature_check = true: the ACL allows commands by the node "
            "that signed them, and without signature checks anyone can claim any node name",
        )


SIGNATURE_CLOCK_SKEW: Final = 300.0
"""Seconds a signing time may lie in the future (clocks of nodes differ a little)."""


# ---------------------------------------------------------------------------------------------
# The record. Field metadata: "section" and "help" (shown by `steward-otp run --help` and as the
# comment above each key in config.toml) and "go_key" (Steward's TOML key, read for migration).


def _doc(section: str, help: str, go_key: str | None = None) -> dict[str, str | None]:
    return {"section": section, "help": help, "go_key": go_key}


_START_SUB = "Subscribers and timers"
_METHOD_NAME: Final = re.compile(r"[A-Za-z0-9_\-]+")
_START_SUB_GO_KEY: Final = re.compile(r"StartSub(REQ[A-Za-z0-9]+)")
_START_SUB_KEY: Final = re.compile(r"start_sub_req_[a-z0-9_]+")
_START_SUB_METHODS: Final = (
    "REQHello",
    "REQToFileAppend",
    "REQToFile",
    "REQToFileNACK",
    "REQCopySrc",
    "REQCopyDst",
    "REQPing",
    "REQPong",
    "REQCliCommand",
    "REQToConsole",
    "REQHttpGet",
    "REQHttpGetScheduled",
    "REQTailFile",
    "REQCliCommandCont",
)
"""The methods Steward (and earlier steward-otp versions) switched one key each for."""


def _snake(method: str) -> str:
    words = re.findall(r"[A-Z]+(?![a-z])|[A-Z][a-z0-9]*", method.removeprefix("REQ"))
    return "start_sub_req_" + "_".join(w.lower() for w in words)


_BY_START_SUB_KEY: Final = {_snake(m): m for m in _START_SUB_METHODS}


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


# ---------------------------------------------------------------------------------------------
# Settings: the user-facing view of the fields, for the CLI, the file comments and the docs.


@attrs.frozen
class Setting:
    """One configurable field of :class:`Config`: its names, its default and its help text."""

    name: str
    """The :class:`Config` field and the key in config.toml."""
    annotation: Any
    """The field's type, e.g. ``int`` or ``Path | None``."""
    default: Any
    """The built-in default; :data:`REQUIRED` for ``node_name``."""
    section: str
    """The group it belongs to in config.toml and in the documentation."""
    help: str
    """What it means, for the operator."""
    go_key: str | None
    """Steward's TOML key for this field, or ``None`` for fields new in steward-otp."""

    @property
    def flag(self) -> str:
        """The command-line option, e.g. ``--ring-buffer-size``."""
        return "--" + self.name.replace("_", "-")

    @property
    def default_text(self) -> str:
        """The default as an operator writes it (TOML spelling, ``auto``, ``""``)."""
        if self.default is REQUIRED:
            return "(required)"
        value = _to_toml(self.name, self.default)
        return tomli_w.dumps({"v": value}).partition("=")[2].strip()


REQUIRED: Final = object()
"""Marks a :class:`Setting` without a default."""

SETTINGS: Final[tuple[Setting, ...]] = tuple(
    Setting(
        name=field.name,
        annotation=field.type,
        default=REQUIRED if field.default is attrs.NOTHING else field.default,
        section=field.metadata["section"],
        help=field.metadata["help"],
        go_key=field.metadata["go_key"],
    )
    for field in attrs.fields(Config)
    if field.name != "home"
)
"""Every configurable field, in the order of the configuration file."""

_BY_NAME: Final[dict[str, Setting]] = {s.name: s for s in SETTINGS}
_BY_GO_KEY: Final[dict[str, Setting]] = {s.go_key: s for s in SETTINGS if s.go_key}

_NO_RING_BUFFER: Final = (
    "accepted messages go straight to the durable outbox; there is no in-memory buffer to size"
)

DROPPED_GO_KEYS: Final[Mapping[str, str]] = types.MappingProxyType(
    {
        "ConfigFolder": "the configuration file is always <home>/etc/config.toml",
        "RingBufferPersistStore": "messages are always stored durably",
        "ProfilingPort": "Go runtime profiling does not apply",
        "SetBlockProfileRate": "Go runtime profiling does not apply",
        "Serialization": "the wire format is always CBOR",
        "EnableTUI": "the terminal UI is not part of steward-otp",
        "EnableDebug": "it had no effect in Steward; use log_level = 'debug'",
        "NkeyPublicKey": "it is derived from the nkey seed at start",
        "RingBufferSize": _NO_RING_BUFFER,
    }
)
"""Steward TOML keys that steward-otp ignores (with a warning), and why."""

RETIRED_KEYS: Final[Mapping[str, str]] = types.MappingProxyType(
    {"ring_buffer_size": _NO_RING_BUFFER}
)
"""Keys that earlier versions of steward-otp wrote and that no longer exist: ignored with a
warning saying why; the next write removes them."""


NOT_YET_AVAILABLE_KEYS: Final[Mapping[str, str]] = types.MappingProxyType({})
"""Keys (ours as written by earlier versions, and Steward's) of features not built yet: they
are ignored with a warning saying so, and the next write removes them."""


# ---------------------------------------------------------------------------------------------
# Loading


_SKIP: Final = object()


def _start_sub_method(key: str) -> str | None:
    """The method a ``StartSubREQ<method>`` (Steward) or ``start_sub_req_<method>`` (earlier
    steward-otp) key switches, or None for any other key."""
    match = _START_SUB_GO_KEY.fullmatch(key)
    if match is not None:
        return match[1]
    if _START_SUB_KEY.fullmatch(key):
        return _BY_START_SUB_KEY.get(key)
    return None


def _from_go(key: str, value: object, label: str) -> object:
    """Steward's spelling of a value in ours; ``_SKIP`` to keep our default."""
    if (
        key == "NatsReconnectJitter"
        and isinstance(value, int | float)
        and not isinstance(value, bool)
    ):
        return value / 1000  # milliseconds in Steward, seconds here
    if key == "Compression" and isinstance(value, str):
        if value == "":
            return _SKIP  # Steward wrote its default "" (uncompressed) into every file
        if value in ("z", "g"):
            warnings.warn(
                f"{label} = {value!r}: zstd and gzip are not supported; using 'lz4'",
                ConfigWarning,
                stacklevel=3,
            )
            return "lz4"
    return value


def _coerce(setting: Setting, value: object, label: str) -> object:
    """*value* (as TOML or a caller gives it) converted to the field's type, or _Invalid."""
    annotation = setting.annotation
    name = setting.name

    def bad(allowed: str) -> _Invalid:
        return _Invalid(name, value, allowed, label)

    if annotation is bool:
        if not isinstance(value, bool):
            raise bad("must be true or false")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("must be a whole number")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad("must be a number of seconds")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise bad("must be a string")
        return value
    if annotation is Path:
        if value == "" or not isinstance(value, str | os.PathLike):
            raise bad(_FOLDER_ALLOWED)
        return Path(value)
    if annotation == Path | None:
        if value is None or value == "":
            return None
        if not isinstance(value, str | os.PathLike):
            raise bad("must be empty (not used) or a file path (a string)")
        return Path(value)
    if annotation == bool | None:
        if value is None or isinstance(value, bool):
            return value
        words: dict[object, bool | None] = {"auto": None, "true": True, "false": False}
        if value in words:
            return words[value]
        raise bad("must be true, false or 'auto'")
    if get_origin(annotation) is Literal:
        choices = get_args(annotation)
        if value not in choices:
            raise bad("must be one of " + ", ".join(repr(c) for c in choices))
        return value
    raise AssertionError(f"no conversion for {name}: {annotation!r}")  # a new field's type


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{path}: not UTF-8 text ({error.reason} at byte {error.start})"
        ) from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read it: {error.strerror}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None


_NO_OVERRIDES: Final[Mapping[str, object]] = types.MappingProxyType({})


def load_config(home: Path, overrides: Mapping[str, object] = _NO_OVERRIDES) -> Config:
    """Build the effective configuration of the node at *home*.

    Values come from the defaults, then from ``<home>/etc/config.toml`` when it exists, then
    from *overrides* (keyed by :class:`Config` field names; ``None`` means "not given" and
    leaves the file's value). The file may use our snake_case keys or Steward's Go keys
    (``NodeName``, ``RingBufferSize``, ...); unknown and unsupported keys are ignored with a
    :class:`ConfigWarning`. A relative *home* is made absolute against the current folder.

    Raises :class:`ConfigError` for an unreadable or malformed file (naming the file and the
    line), for a bad value (naming the field, the key in the file when it came from there,
    the value and what is allowed), for an unknown override name, and when ``node_name`` is
    neither overridden nor in the file. Nothing is written; see :func:`save_config`.
    """
    home = home.absolute()
    path = home / "etc" / CONFIG_FILE_NAME
    values: dict[str, object] = {}
    # Where each value came from and how it was written, for error messages.
    origins: dict[str, tuple[str, object]] = {}
    keys_seen: dict[str, str] = {}

    switched_off: list[str] = []  # StartSubREQ<method> = false (Steward, earlier versions)
    for key, raw in _read_file(path).items():
        label = f"{path}: {key}"
        method = _start_sub_method(key)
        if method is not None:
            if not isinstance(raw, bool):
                raise _Invalid("disabled_methods", raw, "must be true or false", label)
            if raw is False:
                switched_off.append(method)
            continue
        if key in _BY_NAME:
            setting, value = _BY_NAME[key], raw
        elif key in _BY_GO_KEY:
            setting, value = _BY_GO_KEY[key], _from_go(key, raw, label)
            if value is _SKIP:
                continue
        elif key in NOT_YET_AVAILABLE_KEYS:
            warnings.warn(
                f"{label}: ignored, not available yet: {NOT_YET_AVAILABLE_KEYS[key]}",
                ConfigWarning,
                stacklevel=2,
            )
            continue
        elif key in RETIRED_KEYS:
            warnings.warn(
                f"{label}: ignored, no longer a setting: {RETIRED_KEYS[key]}",
                ConfigWarning,
                stacklevel=2,
            )
            continue
        elif key in DROPPED_GO_KEYS:
            warnings.warn(
                f"{label}: Steward key ignored: {DROPPED_GO_KEYS[key]}",
                ConfigWarning,
                stacklevel=2,
            )
            continue
        else:
            close = difflib.get_close_matches(key, [*_BY_NAME, *_BY_GO_KEY], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            warnings.warn(f"{label}: unknown key ignored{hint}", ConfigWarning, stacklevel=2)
            continue
        converted = _coerce(setting, value, label)
        if setting.name in values and values[setting.name] != converted:
            raise ConfigError(
                f"{path}: keys {keys_seen[setting.name]!r} and {key!r} both set "
                f"{setting.name}, to different values; keep one of them",
                field=setting.name,
            )
        values[setting.name] = converted
        origins[setting.name] = (label, raw)
        keys_seen[setting.name] = key

    if switched_off:
        listed = method_names_setting(str(values.get("disabled_methods", "")))
        merged = [*sorted(listed), *(m for m in switched_off if m not in listed)]
        values["disabled_methods"] = ",".join(merged)
        origins.setdefault("disabled_methods", (f"{path}: StartSub...", ",".join(merged)))
    for name, raw in overrides.items():
        if name not in _BY_NAME:
            raise ConfigError(f"unknown configuration field {name!r}", field=name)
        if raw is None:
            continue
        values[name] = _coerce(_BY_NAME[name], raw, name)
        origins[name] = (name, raw)

    if not values.get("node_name"):
        raise ConfigError(
            f"node_name is required: it was not given and {path} does not set it",
            field="node_name",
        )
    try:
        return Config(home=home, **values)  # type: ignore[arg-type]  # checked by _coerce
    except _Invalid as error:
        if error.field not in origins:  # a default is never invalid; keep the error as is
            raise
        label, raw = origins[error.field]
        raise error.relabel(label, raw) from None


# ---------------------------------------------------------------------------------------------
# Saving


def _to_toml(name: str, value: object) -> object:
    """A field value in its config.toml spelling (load_config reads it back unchanged)."""
    if value is None:
        return "auto" if name == "is_central_error_logger" else ""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


_FILE_HEADER: Final = """\
# steward-otp node configuration.
#
# steward-otp writes this file at every start of `steward-otp run`: the effective settings,
# command-line flags included, so a flag given once persists. Edit a value here, or give the
# matching flag (`steward-otp run --help` lists them). Relative folders are relative to the
# node's home folder (the folder that holds etc/). Durations are in seconds.
"""


def render_config(config: Config) -> str:
    """The text :func:`save_config` writes: a header, then every setting of *config* with its
    help text as a comment, grouped by section. Reading it back gives an equal Config."""
    parts = [_FILE_HEADER]
    section = ""
    for setting in SETTINGS:
        if setting.section != section:
            section = setting.section
            parts.append(f"\n# {'=' * 20} {section} {'=' * (68 - len(section))}\n")
        default = "" if setting.default is REQUIRED else f" Default: {setting.default_text}."
        comment = textwrap.fill(
            setting.help + default,
            width=94,
            initial_indent="# ",
            subsequent_indent="# ",
            break_on_hyphens=False,
        )
        entry = tomli_w.dumps({setting.name: _to_toml(setting.name, getattr(config, setting.name))})
        parts.append(f"\n{comment}\n{entry}")
    return "".join(parts)


def save_config(config: Config) -> Path:
    """Write *config* to ``config.config_file`` and return that path.

    The file is replaced atomically (written beside it, flushed to disk, then renamed), so a
    crash leaves either the old or the new file. ``<home>/etc`` is created when missing.
    Raises :class:`ConfigError` naming the path when it cannot be written.
    """
    path = config.config_file
    text = render_config(config)
    with contextlib.suppress(OSError, UnicodeDecodeError):
        if path.read_text(encoding="utf-8") == text:
            return path  # unchanged: no write, so a restart on a full disk is not stopped
    try:
        path.parent.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
        write_atomically(path, text, mode=0o660)
    except OSError as error:
        raise ConfigError(f"cannot write {path}: {error.strerror}") from None
    return path


# ---------------------------------------------------------------------------------------------
# Folders


def prepare_folders(config: Config) -> None:
    """Create the folders a node needs at start, when missing: ``<home>/etc``, ``<home>/var``,
    the database folder, the data folder and the socket folder (mode 0o770 minus the umask).

    Existing folders are left as they are. The read folder and the startup folder are created
    by the inputs that use them. Raises :class:`ConfigError` naming the folder when one cannot
    be created.
    """
    for folder in (config.etc_dir, config.var_dir, config.db_dir, config.data_dir, config.tmp_dir):
        try:
            folder.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
        except FileExistsError:
            raise ConfigError(f"cannot create folder {folder}: a file is in the way") from None
        except OSError as error:
            raise ConfigError(f"cannot create folder {folder}: {error.strerror}") from None
