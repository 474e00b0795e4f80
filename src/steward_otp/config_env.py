"""Settings from the environment: ``STEWARD_OTP_<NAME>`` for every setting of
:mod:`steward_otp.config` (the setting's name in upper case: ``STEWARD_OTP_NODE_NAME``,
``STEWARD_OTP_BROKER_ADDRESS``, ``STEWARD_OTP_RING_BUFFER_SIZE``, ...).

Where a value comes from, first match wins: a command-line option of ``steward-otp run``,
then the environment, then ``<home>/etc/config.toml``, then the built-in default.
``steward-otp run`` writes the options it was given back to config.toml, never what came
from the environment (a container's ``-e STEWARD_OTP_NODE_NAME=...`` stays in the
container's definition). ``STEWARD_OTP_HOME`` is the home folder (``--home``), not a setting.

Values are written as on the command line: numbers as digits, flags as ``true``/``false``
(also ``1``/``0``, ``yes``/``no``, ``on``/``off``), ``auto`` where a setting allows it, and
an empty value unsets an optional file path. A value that is not allowed ends the command
with an error naming the variable, the value and what is allowed; a ``STEWARD_OTP_...``
variable that names no setting is ignored with a warning (with a "did you mean").
"""

from __future__ import annotations

import difflib
import os
import warnings
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Final, Literal, get_args, get_origin

from steward_otp.config import (
    SETTINGS,
    Config,
    ConfigError,
    ConfigWarning,
    Setting,
    load_config,
)

PREFIX: Final = "STEWARD_OTP_"
NOT_SETTINGS: Final = frozenset({"STEWARD_OTP_HOME"})
"""Variables of the prefix that are not settings."""

_TRUE: Final = frozenset({"true", "1", "yes", "on"})
_FALSE: Final = frozenset({"false", "0", "no", "off"})


def env_name(setting: Setting | str) -> str:
    """The environment variable of a setting: ``node_name`` -> ``STEWARD_OTP_NODE_NAME``."""
    name = setting if isinstance(setting, str) else setting.name
    return PREFIX + name.upper()


_BY_VARIABLE: Final[dict[str, Setting]] = {env_name(s): s for s in SETTINGS}


class EnvError(ConfigError):
    """A setting's environment variable holds a value that is not allowed."""

    def __init__(self, variable: str, value: str, allowed: str, field: str) -> None:
        super().__init__(f"{variable} = {value!r} is not allowed: {allowed}", field=field)
        self.variable = variable


def _parse(setting: Setting, variable: str, text: str) -> object:
    """``text`` from the environment as the value the setting's option would give."""
    annotation = setting.annotation
    word = text.strip().lower()

    def bad(allowed: str) -> EnvError:
        return EnvError(variable, text, allowed, setting.name)

    if annotation is bool:
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise bad("must be true or false (or 1/0, yes/no, on/off)")
    if annotation is int:
        try:
            return int(text.strip())
        except ValueError:
            pass
        try:  # a number, but not whole: the setting's own check says what is allowed
            return float(text.strip())
        except ValueError:
            raise bad("must be a whole number") from None
    if annotation is float:
        try:
            return float(text.strip())
        except ValueError:
            raise bad("must be a number (seconds, for a duration)") from None
    if annotation == bool | None:
        if word == "auto":
            return "auto"
        if word in _TRUE:
            return "true"
        if word in _FALSE:
            return "false"
        raise bad("must be true, false or auto")
    if get_origin(annotation) is Literal:
        choices = get_args(annotation)
        if text not in choices:
            raise bad("must be one of " + ", ".join(repr(c) for c in choices))
        return text
    return text  # str, Path, Path | None ("" unsets it): checked by load_config


def env_settings(
    environ: Mapping[str, str] | None = None, *, skip: Collection[str] = ()
) -> dict[str, object]:
    """The settings given in the environment, by setting name, parsed; those named in
    ``skip`` (given as options: they win) are left out unread.

    Raises :class:`EnvError` for a value that cannot be one (naming the variable, the value
    and what is allowed); warns (:class:`ConfigWarning`) about a ``STEWARD_OTP_`` variable
    that names no setting.
    """
    environ = os.environ if environ is None else environ
    found: dict[str, object] = {}
    for variable, text in environ.items():
        if not variable.startswith(PREFIX) or variable in NOT_SETTINGS:
            continue
        setting = _BY_VARIABLE.get(variable)
        if setting is None:
            close = difflib.get_close_matches(variable, list(_BY_VARIABLE), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            warnings.warn(
                f"environment variable {variable}: names no setting, ignored{hint}",
                ConfigWarning,
                stacklevel=2,
            )
            continue
        if setting.name not in skip:
            found[setting.name] = _parse(setting, variable, text)
    return found


def load_effective(
    home: Path,
    flags: Mapping[str, object] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """The configuration of the node at ``home``: ``flags`` (None values: not given) over
    the environment over config.toml over the defaults.

    A bad value from the environment is reported under its variable's name (see
    :class:`EnvError`); other errors are :func:`~steward_otp.config.load_config`'s.
    """
    given = {name: value for name, value in (flags or {}).items() if value is not None}
    from_env = env_settings(environ, skip=given)
    try:
        return load_config(home, {**from_env, **given})
    except EnvError:
        raise
    except ConfigError as error:
        if error.field not in from_env:
            raise
        variable = env_name(error.field)
        raw = (os.environ if environ is None else environ)[variable]
        allowed = getattr(error, "allowed", None)
        if allowed is None:
            raise ConfigError(f"{variable} = {raw!r}: {error}", field=error.field) from None
        raise EnvError(variable, raw, str(allowed), error.field) from None


def file_config(home: Path, flags: Mapping[str, object] | None = None) -> Config | None:
    """What ``steward-otp run`` writes back to config.toml: ``flags`` over the file over
    the defaults, without the environment; None when that is not a valid configuration on
    its own (e.g. the node name is given only in the environment)."""
    given = {name: value for name, value in (flags or {}).items() if value is not None}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return load_config(home, given)
    except ConfigError:
        return None


def env_help() -> str:
    """A line for ``--help`` about the environment."""
    return (
        f"Every option can also come from the environment as {PREFIX}<NAME> (the option's "
        f"name in upper case with underscores, e.g. {env_name('node_name')}); an option "
        "given on the command line wins over the environment, which wins over the config "
        "file, which wins over the defaults. Values from the environment are not written "
        "to the config file."
    )
