"""The node's store file: where it lives, and whether a node can start on it.

:func:`store_path` names the file (``<db_folder>/steward.db``). :func:`check_store_file`, run
before a node starts, opens it once and turns an empty, foreign or damaged file into
:class:`StoreUnusable`, which stops the start with a message saying what to do
(``steward-otp store check`` / ``store repair``).
"""

from __future__ import annotations

from pathlib import Path

from steward_otp.config import ConfigError
from steward_otp.store.schema import StoreDamaged, StoreError, open_database

__all__ = ["DB_FILE_NAME", "StoreUnusable", "check_store_file", "store_path"]


DB_FILE_NAME = "steward.db"
"""File name of the store inside the configured database folder."""


def store_path(db_folder: str | Path) -> Path:
    """Where a node keeps its store: ``<db_folder>/steward.db``."""
    return Path(db_folder) / DB_FILE_NAME


class StoreUnusable(ConfigError):
    """The node cannot start on its store file (empty, not a database, damaged); the text
    says which file and what to do. A ConfigError: the daemon exits with status 2, which
    service managers do not retry (retrying cannot help until an operator acts)."""


def check_store_file(path: str | Path, *, home: Path | None = None) -> None:
    """Before a node starts: open the store at ``path`` (creating it when missing) and close
    it again. Raises :class:`StoreUnusable` when it is empty, not a database or damaged;
    other trouble (e.g. the file is in use) is left for the store process to report.
    ``home`` is put into the suggested commands."""
    try:
        open_database(path, lock_timeout=0.5).close()
    except StoreDamaged as exc:
        text = str(exc)
        if home is not None:
            text = text.replace("--home <home>", f"--home {home}")
        raise StoreUnusable(text) from None
    except StoreError:
        return
