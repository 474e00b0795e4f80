"""A node's configuration: the Config record, the TOML file + overrides precedence, and the folders.

Precedence (Steward's, see docs/configuration.md): built-in defaults, then
``<home>/etc/config.toml``, then overrides (the command-line flags). The effective result is
written back to the file with :func:`save_config`, so flags persist to the next start.

One module per topic; import the names from this package, which holds them all:

* :mod:`~steward_otp.config.errors` — :class:`ConfigError`, :class:`ConfigWarning`, and
  ``_Invalid`` (a value that is not allowed, re-labelled with where it came from).
* :mod:`~steward_otp.config.checks` — the checks of single values (the fields' validators)
  and the helpers other parts use: :func:`is_valid_node_name`, :func:`node_names_setting`,
  :func:`method_names_setting`, :func:`decode_public_key`.
* :mod:`~steward_otp.config.connection_fields`,
  :mod:`~steward_otp.config.messaging_fields`, :mod:`~steward_otp.config.operation_fields`
  — the fields of :class:`Config` in the order of config.toml: every setting, its default,
  check and help text.
* :mod:`~steward_otp.config.model` — the :class:`Config` record: the fields above, the check
  across fields and the resolved locations.
* :mod:`~steward_otp.config.settings` — the :data:`SETTINGS` table made from the fields (for
  the CLI, the environment, the file comments and the docs), and the Steward keys ignored
  with a reason.
* :mod:`~steward_otp.config.loading` — :func:`load_config`: defaults, file (our keys or
  Steward's), overrides.
* :mod:`~steward_otp.config.folders` — :func:`prepare_folders` and the folders' mode.
* :mod:`~steward_otp.config.saving` — :func:`render_config`, :func:`save_config`.

Each module imports only modules listed before it (no import cycles).
"""

from steward_otp.config.checks import decode_public_key as decode_public_key
from steward_otp.config.checks import is_valid_node_name as is_valid_node_name
from steward_otp.config.checks import method_names_setting as method_names_setting
from steward_otp.config.checks import node_names_setting as node_names_setting
from steward_otp.config.errors import ConfigError as ConfigError
from steward_otp.config.errors import ConfigWarning as ConfigWarning
from steward_otp.config.folders import FOLDER_MODE as FOLDER_MODE
from steward_otp.config.folders import prepare_folders as prepare_folders
from steward_otp.config.loading import load_config as load_config
from steward_otp.config.messaging_fields import COMPRESSIONS as COMPRESSIONS
from steward_otp.config.messaging_fields import DELIVERIES as DELIVERIES
from steward_otp.config.messaging_fields import Compression as Compression
from steward_otp.config.messaging_fields import Delivery as Delivery
from steward_otp.config.model import CONFIG_FILE_NAME as CONFIG_FILE_NAME
from steward_otp.config.model import SIGNATURE_CLOCK_SKEW as SIGNATURE_CLOCK_SKEW
from steward_otp.config.model import Config as Config
from steward_otp.config.saving import render_config as render_config
from steward_otp.config.saving import save_config as save_config
from steward_otp.config.settings import DROPPED_GO_KEYS as DROPPED_GO_KEYS
from steward_otp.config.settings import NOT_YET_AVAILABLE_KEYS as NOT_YET_AVAILABLE_KEYS
from steward_otp.config.settings import REQUIRED as REQUIRED
from steward_otp.config.settings import RETIRED_KEYS as RETIRED_KEYS
from steward_otp.config.settings import SETTINGS as SETTINGS
from steward_otp.config.settings import Setting as Setting
