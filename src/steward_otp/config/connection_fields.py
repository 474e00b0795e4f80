"""Config's first fields: its home, the node's identity and how it reaches the broker.

Field metadata (made by :func:`_doc`, which every ``*_fields`` module uses): ``section`` and
``help`` (shown by ``steward-otp run --help`` and as the comment above each key in
config.toml) and ``go_key`` (Steward's TOML key, read for migration).

The fields of Config are declared in three classes, in the order of the configuration file:
:class:`ConnectionFields` here, then
:class:`~steward_otp.config.messaging_fields.MessagingFields` and
:class:`~steward_otp.config.operation_fields.OperationFields`, each extending the one before
it, because attrs puts a base class's fields first. Config extends the last.

The annotations are evaluated types on purpose (no ``from __future__ import annotations``):
a :class:`~steward_otp.config.Setting`'s ``annotation`` is the field's type, and loading
converts values by it.
"""

from pathlib import Path

import attrs

from steward_otp.config.checks import (
    _broker_address,
    _creds_file,
    _nkey_ssh_key_file,
    _node_name,
    _optional_file,
    _port,
    _seconds_or_zero,
    _seconds_positive,
    _tls_key_file,
)


def _doc(section: str, help: str, go_key: str | None = None) -> dict[str, str | None]:
    return {"section": section, "help": help, "go_key": go_key}


@attrs.frozen(kw_only=True)
class ConnectionFields:
    """The fields of the sections Identity and Broker, after ``home``."""

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
        validator=_nkey_ssh_key_file,
        metadata=_doc(
            "Broker",
            "OpenSSH ed25519 private key to derive the NATS nkey from; excludes "
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
