"""The folders of a node's home: :func:`prepare_folders` and the mode they are made with.

:func:`prepare_folders` creates the folders a node needs at start when they are missing and
leaves existing ones as they are; a folder it cannot create is a
:class:`~steward_otp.config.ConfigError` naming it.
"""

from typing import Final

from steward_otp.config.errors import ConfigError
from steward_otp.config.model import Config

FOLDER_MODE: Final = 0o770
"""Mode of the folders steward-otp creates (Steward's; the umask still applies)."""


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
