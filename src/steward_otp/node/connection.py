"""How a node reaches its broker, derived from its Config: the NATS URL, the connection
settings (reconnect jitter, TLS files, nkey seed, ``.creds`` file) and the embedded
nats-server it runs when no broker address is configured.

Guarantees: relative paths resolve against the node's home folder; a setting that cannot
work (an SSH key that gives no nkey, a ``.creds`` file that is unreadable or malformed, a TLS
or nkey seed file that cannot be read or holds no certificate, key or seed)
raises :class:`~steward_otp.config.ConfigError` naming the setting when the node is made,
rather than every connection attempt failing later.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from steward_otp.bridge import BridgeSettings, NatsBridge
from steward_otp.bridge.settings import tls_context
from steward_otp.broker import BrokerSpec, EmbeddedBroker
from steward_otp.config import Config, ConfigError
from steward_otp.security.nkey import NkeyError, nkey_from_ssh_key, write_nkey_files


def broker_url(config: Config) -> str:
    """The NATS URL a node connects to: the configured broker, or its embedded one."""
    address = config.broker_address
    if not address:
        return f"nats://127.0.0.1:{config.embedded_broker_port}"
    urls = (a.strip() for a in address.split(","))
    return ",".join(url if "://" in url else f"nats://{url}" for url in urls)


def _reconnect_jitter(config: Config, url: str) -> float:
    """The reconnect jitter setting that applies: the TLS one for TLS connections."""
    tls = bool(config.root_ca_path or config.tls_cert_file) or any(
        u.strip().startswith(("tls://", "wss://")) for u in url.split(",")
    )
    return config.nats_reconnect_jitter_tls if tls else config.nats_reconnect_jitter


def nats_bridge(config: Config, url: str) -> NatsBridge:
    """The NATS connection of the node ``config`` describes, to the broker at ``url``.

    Raises ConfigError naming the setting and the path when a TLS or nkey file cannot be
    read or holds no usable certificate, key or seed.
    """
    settings = BridgeSettings(
        url=url,
        name=config.node_name,
        connect_timeout=config.nats_conn_opt_timeout,
        connect_retry_interval=config.nats_connect_retry_interval,
        reconnect_jitter=_reconnect_jitter(config, url),
        nkeys_seed_file=_nkey_seed_file(config),
        user_credentials_file=_nats_creds_file(config),
        tls_ca_file=_readable(config, "root_ca_path"),
        tls_cert_file=_readable(config, "tls_cert_file"),
        tls_key_file=_readable(config, "tls_key_file"),
    )
    try:
        tls_context(settings)
    except (OSError, ssl.SSLError) as exc:
        ca_failed = settings.tls_ca_file is not None and not _loads_as_ca(settings.tls_ca_file)
        field = "root_ca_path" if ca_failed else "tls_cert_file"
        what = (
            "holds no CA certificate in PEM form"
            if ca_failed
            else "and tls_key_file are not a PEM certificate and its private key"
        )
        path = settings.tls_ca_file if ca_failed else settings.tls_cert_file
        raise ConfigError(f"{field} = {path!r} {what}: {exc}", field=field) from None
    return NatsBridge(settings)


def _loads_as_ca(path: str) -> bool:
    try:
        ssl.create_default_context(cafile=path)
    except (OSError, ssl.SSLError):
        return False
    return True


def _readable(config: Config, field: str) -> str | None:
    """The file of setting ``field`` resolved against home, as text (None when not set).

    Raises ConfigError naming the setting and the path when it cannot be read.
    """
    setting: Path | None = getattr(config, field)
    if setting is None:
        return None
    path = config.resolve_path(setting)
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"{field} = {str(path)!r}: cannot read it: {exc.strerror or exc}", field=field
        ) from None
    return str(path)


def embedded_broker(config: Config) -> EmbeddedBroker:
    """The nats-server a node runs itself when ``config`` names no broker address."""
    return EmbeddedBroker(
        BrokerSpec(
            port=config.embedded_broker_port,
            log_file=config.var_dir / "nats-server.log",
            server_name=config.node_name.replace(".", "_"),
            jetstream=config.delivery == "jetstream",
            store_dir=config.var_dir / "jetstream",
        )
    )


def _nkey_seed_file(config: Config) -> str | None:
    """The nkey seed file to authenticate with (relative paths resolve against home).

    With ``nkey_from_ed25519_ssh_key_file`` (which excludes ``nkey_seed_file``) the nkey is
    derived from the SSH key and written to the socket folder (Steward's way, spec 8.1).
    Raises ConfigError when the SSH key cannot give one, or the seed file cannot be read or
    holds no user seed.
    """
    if config.nkey_from_ed25519_ssh_key_file is not None:
        path = config.resolve_path(config.nkey_from_ed25519_ssh_key_file)
        try:
            nkey = nkey_from_ssh_key(path)
            return str(write_nkey_files(nkey, config.tmp_dir))
        except NkeyError as exc:
            raise ConfigError(str(exc), field="nkey_from_ed25519_ssh_key_file") from None
        except OSError as exc:
            raise ConfigError(
                f"cannot write the nkey derived from {path} to {config.tmp_dir}: "
                f"{exc.strerror or exc}",
                field="nkey_from_ed25519_ssh_key_file",
            ) from None
    seed_file = _readable(config, "nkey_seed_file")
    if seed_file is None:
        return None
    if not Path(seed_file).read_bytes().strip().startswith(b"SU"):
        raise ConfigError(
            f"nkey_seed_file = {seed_file!r} holds no nkey user seed (a line starting SU..., "
            "as nk -gen user writes it)",
            field="nkey_seed_file",
        )
    return seed_file


_CREDS_SECTIONS: tuple[tuple[str, str, str], ...] = (
    ("-----BEGIN NATS USER JWT-----", "a user JWT", "ey"),
    ("-----BEGIN USER NKEY SEED-----", "a user nkey seed", "SU"),
)
"""The sections nats-py reads from a ``.creds`` file: the line after each ``marker`` holds
``what``, which starts with ``prefix``."""


def _nats_creds_file(config: Config) -> str | None:
    """The NATS ``.creds`` file to authenticate with (relative paths resolve against home).

    Raises ConfigError naming ``nats_creds_file`` and the path when the file cannot be read,
    lacks the user JWT or the user nkey seed section, or has ``\\r\\n`` line ends (which
    nats-py reads into the JWT and the seed): the start stops rather than every connection
    attempt failing later.
    """
    if config.nats_creds_file is None:
        return None
    path = config.resolve_path(config.nats_creds_file)
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise ConfigError(
            f"nats_creds_file = {str(path)!r}: cannot read it: {exc.strerror or exc}",
            field="nats_creds_file",
        ) from None
    if "\r" in text:
        raise ConfigError(
            f"nats_creds_file = {str(path)!r} has \\r\\n line ends, which the NATS client "
            "reads as part of the JWT and the seed; convert it to \\n line ends",
            field="nats_creds_file",
        )
    lines = text.splitlines()
    after = {line.strip(): lines[i + 1].strip() for i, line in enumerate(lines[:-1])}
    missing = [
        what
        for marker, what, prefix in _CREDS_SECTIONS
        if not after.get(marker, "").startswith(prefix)
    ]
    if missing:
        raise ConfigError(
            f"nats_creds_file = {str(path)!r} is not a NATS .creds file: it lacks "
            f"{' and '.join(missing)} (each on the line after its '-----BEGIN ...' line, "
            "as nsc generate creds writes them)",
            field="nats_creds_file",
        )
    return str(path)
