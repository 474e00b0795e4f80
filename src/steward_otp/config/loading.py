"""Reading a node's configuration: :func:`load_config`.

Precedence (Steward's, see docs/configuration.md): the defaults of
:class:`~steward_otp.config.Config`, then ``<home>/etc/config.toml``, then the overrides (the
command-line flags). The file may use our keys or Steward's: ``_from_go`` converts Steward's
spellings of values, and the ``StartSubREQ<method>`` keys become ``disabled_methods``.
``_coerce`` converts each value to its field's type. Unknown, dropped, retired and
not-yet-available keys are ignored with a :class:`~steward_otp.config.ConfigWarning`.

Guarantees: nothing is written; every problem is a :class:`~steward_otp.config.ConfigError`
naming the file and key (or the override) the value came from; the result is a validated
Config.
"""

import difflib
import os
import re
import tomllib
import types
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal, get_args, get_origin

from steward_otp.config.checks import _FOLDER_ALLOWED, method_names_setting
from steward_otp.config.errors import ConfigError, ConfigWarning, _Invalid
from steward_otp.config.model import CONFIG_FILE_NAME, Config
from steward_otp.config.settings import (
    _BY_GO_KEY,
    _BY_NAME,
    DROPPED_GO_KEYS,
    NOT_YET_AVAILABLE_KEYS,
    RETIRED_KEYS,
    Setting,
)

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
        if isinstance(value, float) and value.is_integer():
            return int(value)  # 10.0 is 10
        # Anything else that is not a whole number is refused by the field's own check,
        # which says the unit and the bounds too.
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
