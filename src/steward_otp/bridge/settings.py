"""How one NATS bridge connects: its settings record, and the client options made from it.

:class:`BridgeSettings` is immutable and plain data (the node builds it from its Config).
:func:`connection_options` turns it into nats-py's connect options, everything but the
callbacks the bridge itself supplies: the server pool, reconnecting without limit, the
reconnect wait with its random jitter (drawn anew at every call, so once per connection),
credentials (a ``.creds`` file wins over an nkey seed) and TLS.
"""

from __future__ import annotations

import random
import ssl
from typing import Any

import attrs

from steward_otp.limits import MAX_MESSAGE_BYTES


@attrs.frozen
class BridgeSettings:
    """How one bridge connects. Durations are seconds."""

    url: str
    name: str
    connect_timeout: float = 5.0
    connect_retry_interval: float = 2.0
    reconnect_time_wait: float = 1.0
    reconnect_jitter: float = 0.0
    """Up to this many random extra seconds on ``reconnect_time_wait``, drawn once per
    connection, so that many nodes losing one broker do not come back in lockstep."""
    outbound_capacity: int = 65536
    max_batch: int = 4096
    default_inbound_capacity: int = 4096
    nkeys_seed_file: str | None = None
    user_credentials_file: str | None = None
    """A NATS ``.creds`` file (user JWT and nkey seed) for a server in operator mode; used
    instead of ``nkeys_seed_file``."""
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    """A client certificate and its key, presented to the server (mutual TLS)."""
    max_payload: int = MAX_MESSAGE_BYTES
    """The broker's ``max_payload`` assumed until a server announces its own."""


def connection_options(settings: BridgeSettings) -> dict[str, Any]:
    """The keyword arguments of ``nats.connect`` for ``settings``, without callbacks."""
    options: dict[str, Any] = {
        "servers": settings.url.split(","),  # a cluster's servers: a pool
        "name": settings.name,
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": settings.reconnect_time_wait
        + random.uniform(0.0, max(settings.reconnect_jitter, 0.0)),
        "connect_timeout": settings.connect_timeout,
    }
    if settings.user_credentials_file:
        options["user_credentials"] = settings.user_credentials_file
    elif settings.nkeys_seed_file:
        options["nkeys_seed"] = settings.nkeys_seed_file
    context = tls_context(settings)
    if context is not None:
        options["tls"] = context
    return options


def tls_context(settings: BridgeSettings) -> ssl.SSLContext | None:
    """The TLS context of ``settings`` (None without a CA or client certificate).

    Raises ``OSError`` for a file that cannot be read and ``ssl.SSLError`` for one that
    holds no usable certificate or key.
    """
    if not (settings.tls_ca_file or settings.tls_cert_file):
        return None
    context = ssl.create_default_context(cafile=settings.tls_ca_file)
    if settings.tls_cert_file:
        context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    return context
