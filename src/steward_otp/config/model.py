"""The :class:`Config` record: every setting of a node, with its default, check and help.

Config has one attrs field per setting, in the order of the configuration file, declared in
:mod:`~steward_otp.config.connection_fields`, :mod:`~steward_otp.config.messaging_fields`
and :mod:`~steward_otp.config.operation_fields` (each field with its type, default, check,
help text and Steward key). :mod:`~steward_otp.config.settings` makes the setting table from
these fields, so a field added there is at once a command-line option, an environment
variable, a commented key of config.toml and a setting the documentation must name. Here:
the check across fields and the resolved locations.

Guarantees: a Config exists only validated (construction runs each field's check from
:mod:`~steward_otp.config.checks`, then the cross-field check of ``__attrs_post_init__``, and
raises :class:`~steward_otp.config.ConfigError` otherwise) and is frozen. Its properties
resolve folders against ``home`` and never touch the disk.
"""

from pathlib import Path
from typing import Final

import attrs

from steward_otp.config.errors import _Invalid
from steward_otp.config.operation_fields import OperationFields

CONFIG_FILE_NAME: Final = "config.toml"

SIGNATURE_CLOCK_SKEW: Final = 300.0
"""Seconds a signing time may lie in the future (clocks of nodes differ a little)."""


@attrs.frozen(kw_only=True)
class Config(OperationFields):
    """The validated configuration of one node.

    Constructing it checks every field and raises :class:`ConfigError` naming the field, the
    bad value and what is allowed. Folder fields are kept as given (relative to ``home``
    unless absolute); use the ``*_dir`` / ``*_path`` properties for resolved locations.
    Durations are seconds. Use :func:`attrs.evolve` for a changed copy.
    """

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
