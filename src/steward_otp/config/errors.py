"""Errors and warnings of the configuration: what the operator is told about a setting.

:class:`ConfigError` is the one exception every configuration problem raises (reading,
checking, writing, creating folders); ``str(error)`` is a complete message for the operator
and ``field`` names the setting concerned. :class:`ConfigWarning` marks a key of the file
that was ignored. ``_Invalid`` is the ConfigError of a value that is not allowed: the checks
raise it naming the field, and :func:`~steward_otp.config.load_config` re-labels it with
where the value came from (the file and key, or the override).

Depends on nothing else in the package.
"""

from pathlib import Path


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
