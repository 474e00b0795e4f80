"""The setting table: the user-facing view of the :class:`~steward_otp.config.Config` fields.

:data:`SETTINGS` holds one :class:`Setting` per configurable field (every field but
``home``), in the order of the configuration file; the command-line options, the
``STEWARD_OTP_<NAME>`` variables, the comments of config.toml and the check of
docs/configuration.md are all made from it. Also here: the lookups by our key and by
Steward's key (``_BY_NAME``, ``_BY_GO_KEY``), the keys that are read but ignored with a
reason (:data:`DROPPED_GO_KEYS`, :data:`RETIRED_KEYS`, :data:`NOT_YET_AVAILABLE_KEYS`), and
``_to_toml``, the config.toml spelling of a value, which :attr:`Setting.default_text` and
:func:`~steward_otp.config.render_config` share.

Everything here is built once at import from the Config fields and never changes.
"""

import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import attrs
import tomli_w

from steward_otp.config.model import Config


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


def _to_toml(name: str, value: object) -> object:
    """A field value in its config.toml spelling (load_config reads it back unchanged)."""
    if value is None:
        return "auto" if name == "is_central_error_logger" else ""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
