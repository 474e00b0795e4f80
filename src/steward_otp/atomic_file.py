"""Files replaced whole: a crash leaves the old content or the new, never a mix.

Blocking file I/O: call these from a worker thread in async code.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

__all__ = ["fsync_folder", "write_atomically"]


def write_atomically(
    path: Path, data: bytes | str, *, mode: int = 0o600, sync_folder: bool = False
) -> None:
    """Replace the content of ``path`` with ``data`` (text is written as UTF-8).

    The data goes to a new temporary file beside ``path`` (created with ``mode``, less the
    umask), is flushed to disk (fsync), and the file is renamed over ``path``: a crash at
    any point leaves ``path`` as it was or as it is meant to be. With ``sync_folder`` the
    folder is fsynced after the rename, so that the rename itself survives a power loss.
    Raises OSError when anything fails; the temporary file is removed then and ``path`` is
    unchanged. The folder must exist.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else data
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            view = memoryview(raw)
            while view:
                view = view[os.write(descriptor, view) :]
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise
    if sync_folder:
        fsync_folder(path.parent)


def fsync_folder(folder: Path) -> None:
    """Flush ``folder``'s entries (names created, renamed or removed in it) to disk.

    Raises OSError when the folder cannot be opened or synced."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
