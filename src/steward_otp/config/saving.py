"""Writing a node's configuration: :func:`render_config` and :func:`save_config`.

The file holds the effective configuration: a header, then every setting with its help text
as a comment, grouped by section; :func:`~steward_otp.config.load_config` reads it back into
an equal :class:`~steward_otp.config.Config`. :func:`save_config` replaces the file
atomically (a crash leaves the old or the new file), writes nothing when the text is
unchanged, and raises :class:`~steward_otp.config.ConfigError` naming the path when it
cannot write.
"""

import contextlib
import textwrap
from pathlib import Path
from typing import Final

import tomli_w

from steward_otp.atomic_file import write_atomically
from steward_otp.config.errors import ConfigError
from steward_otp.config.folders import FOLDER_MODE
from steward_otp.config.model import Config
from steward_otp.config.settings import REQUIRED, SETTINGS, _to_toml

_FILE_HEADER: Final = """\
# steward-otp node configuration.
#
# steward-otp writes this file at every start of `steward-otp run`: the effective settings,
# command-line flags included, so a flag given once persists. Edit a value here, or give the
# matching flag (`steward-otp run --help` lists them). Relative folders are relative to the
# node's home folder (the folder that holds etc/). Durations are in seconds.
"""


def render_config(config: Config) -> str:
    """The text :func:`save_config` writes: a header, then every setting of *config* with its
    help text as a comment, grouped by section. Reading it back gives an equal Config."""
    parts = [_FILE_HEADER]
    section = ""
    for setting in SETTINGS:
        if setting.section != section:
            section = setting.section
            parts.append(f"\n# {'=' * 20} {section} {'=' * (68 - len(section))}\n")
        default = "" if setting.default is REQUIRED else f" Default: {setting.default_text}."
        comment = textwrap.fill(
            setting.help + default,
            width=94,
            initial_indent="# ",
            subsequent_indent="# ",
            break_on_hyphens=False,
        )
        entry = tomli_w.dumps({setting.name: _to_toml(setting.name, getattr(config, setting.name))})
        parts.append(f"\n{comment}\n{entry}")
    return "".join(parts)


def save_config(config: Config) -> Path:
    """Write *config* to ``config.config_file`` and return that path.

    The file is replaced atomically (written beside it, flushed to disk, then renamed), so a
    crash leaves either the old or the new file. ``<home>/etc`` is created when missing.
    Raises :class:`ConfigError` naming the path when it cannot be written.
    """
    path = config.config_file
    text = render_config(config)
    with contextlib.suppress(OSError, UnicodeDecodeError):
        if path.read_text(encoding="utf-8") == text:
            return path  # unchanged: no write, so a restart on a full disk is not stopped
    try:
        path.parent.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
        write_atomically(path, text, mode=0o660)
    except OSError as error:
        raise ConfigError(f"cannot write {path}: {error.strerror}") from None
    return path
