"""Where output methods write: Steward's output-path rule (spec 5.0), made safe.

* ``directory`` starting with ``/``: that folder, as given (the operator chose an absolute
  place on the target node). There is no setting to switch this off yet: anyone who may
  send output methods to a node may write wherever the node's user may, except into the
  node's own folders (below).
* ``directory`` starting with ``./``: that folder relative to the node's home.
* otherwise ``<data>/<directory>/<node>/<fileName>``, where for a reply ``directory``,
  ``node`` and ``fileName`` come from the request it answers (``node`` = the node that ran
  the request, or the reply's ``fromNode`` when that is unknown).

Guarantees, checked by :func:`safe_output_path` right before each write:

* a relative ``directory`` never leaves its base folder (the data folder, or the home for
  ``./``): ``..`` components are refused, and so is a path that a symbolic link leads out
  of its base (the real path, all links resolved, must be inside the real base);
* nothing is written into the node's own ``<home>/etc``, ``<home>/var`` or ``<home>/tmp``
  (configuration, store, sockets), however the path is given, absolute or through links
  (:func:`refuse_own_folder` applies the same rule to a copy's destination);
  only when the data folder itself lies inside one of them, writes inside the data folder
  are allowed there;
* ``fileName`` is a plain file name, and neither field holds a control character.

Violations raise :class:`UnsafePath`, whose text names the field, the value and what is
allowed. The on-disk check resolves links just before the write; someone who can change
links inside the data folder between that check and the write can still race it.
"""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path, PurePosixPath
from typing import Final

from steward_otp.handlers.base import HandlerError
from steward_otp.limits import path_text_problem
from steward_otp.message import Message

__all__ = [
    "OWN_FOLDERS",
    "UnsafePath",
    "check_output_fields",
    "output_path",
    "refuse_own_folder",
    "safe_output_path",
]

OWN_FOLDERS: Final = ("etc", "var", "tmp")
"""Folders of the node's home that output methods never write into."""

_FOLDER_CACHE_SECONDS: Final = 1.0


class UnsafePath(HandlerError):
    """``directory`` or ``fileName`` would write outside the allowed folder."""


def _check_text(field: str, value: str) -> None:
    problem = path_text_problem(value)
    if problem is not None:
        raise UnsafePath(
            f'field "{field}": value {value!r} {problem}; allowed: text without control characters'
        )


def _check_relative(field: str, value: str) -> PurePosixPath:
    path = PurePosixPath(value)
    if ".." in path.parts:
        raise UnsafePath(
            f'field "{field}": value {value!r} contains "..": a relative directory must '
            "stay inside the data folder"
        )
    return path


def _check_file_name(value: str) -> str:
    if not value or "/" in value or "\\" in value or value in {".", ".."} or "\0" in value:
        raise UnsafePath(
            f'field "fileName": value {value!r} is not a plain file name (no "/", not "." or "..")'
        )
    _check_text("fileName", value)
    return value


def check_output_fields(directory: str, file_name: str) -> None:
    """Raise :class:`UnsafePath` (naming the field, the value and what is allowed) when an
    output method would refuse to write for ``directory`` and ``fileName`` whatever the node:
    the text checks of :func:`output_path`, so that a sender can refuse such a message before
    it is sent (``steward-otp cmd --directory/--file-name``)."""
    _check_file_name(file_name)
    _check_text("directory", directory)
    if not directory.startswith("/"):
        _check_relative("directory", directory)


def _fields(message: Message) -> tuple[str, str, str]:
    previous = message.previous_message
    if previous is None:
        return message.directory, message.to_node, message.file_name
    return previous.directory, previous.to_node or message.from_node, previous.file_name


def output_path(message: Message, *, data_dir: Path, home: Path) -> Path:
    """The file that an output method handling ``message`` writes to. See module docstring.

    Checks the text only (no file system access); :func:`safe_output_path` also checks
    where the path really leads.
    """
    return _resolve(*_fields(message), data_dir, home)[0]


def safe_output_path(message: Message, *, data_dir: Path, home: Path) -> Path:
    """:func:`output_path`, checked on disk against the guarantees of the module docstring.

    Resolves symbolic links (a few ``lstat`` calls, done where it is called); raises
    :class:`UnsafePath` naming the field and value.
    """
    directory, node, file_name = _fields(message)
    path, base = _resolve(directory, node, file_name, data_dir, home)
    real = Path(os.path.realpath(path))
    where = _real_folders(data_dir, home, int(time.monotonic() / _FOLDER_CACHE_SECONDS))
    if base is not None:
        real_base = where.data if base == data_dir else Path(os.path.realpath(base))
        if not real.is_relative_to(real_base):
            raise UnsafePath(
                f'field "directory": value {directory!r} leads to {real}, outside {base} '
                "(a symbolic link points out of it); allowed: a folder inside "
                f"{base} without links leading out, or an absolute directory"
            )
    _refuse_own_folder(real, where, home, "directory", directory)
    return path


def refuse_own_folder(path: Path, *, data_dir: Path, home: Path, field: str, value: str) -> None:
    """Raise :class:`UnsafePath` naming ``field`` and ``value`` when ``path`` (all links
    resolved) lies in the node's own ``etc``, ``var`` or ``tmp`` folder (see the module
    docstring): for other writes than the output methods', e.g. a copy's destination."""
    real = Path(os.path.realpath(path))
    where = _real_folders(data_dir, home, int(time.monotonic() / _FOLDER_CACHE_SECONDS))
    _refuse_own_folder(real, where, home, field, value)


def _refuse_own_folder(real: Path, where: _RealFolders, home: Path, field: str, value: str) -> None:
    for own, real_own in where.own:
        inside_data = where.data.is_relative_to(real_own) and real.is_relative_to(where.data)
        if real.is_relative_to(real_own) and not inside_data:
            raise UnsafePath(
                f'field "{field}": value {value!r} leads into {own}, the node\'s own '
                f"folder; allowed: any folder but {', '.join(str(home / n) for n in OWN_FOLDERS)}"
            )


class _RealFolders:
    def __init__(self, data_dir: Path, home: Path) -> None:
        self.data = Path(os.path.realpath(data_dir))
        self.own = [(home / name, Path(os.path.realpath(home / name))) for name in OWN_FOLDERS]


@functools.lru_cache(maxsize=16)
def _real_folders(data_dir: Path, home: Path, period: int) -> _RealFolders:
    """The real paths of the data folder and the node's own folders (kept about a second)."""
    return _RealFolders(data_dir, home)


@functools.lru_cache(maxsize=4096)
def _resolve(
    directory: str, node: str, file_name: str, data_dir: Path, home: Path
) -> tuple[Path, Path | None]:
    """The path and its base folder (None for an absolute directory), text checks only
    (memoised: a node writes to few distinct files)."""
    check_output_fields(directory, file_name)
    if directory.startswith("/"):
        return Path(directory) / file_name, None
    if directory.startswith("./"):
        return home / _check_relative("directory", directory) / file_name, home
    relative = _check_relative("directory", directory)
    if relative.is_absolute():  # pragma: no cover - handled above
        raise UnsafePath(f'field "directory": value {directory!r} must be relative')
    if not node or "/" in node or node in {".", ".."}:
        raise UnsafePath(f"node name {node!r} cannot be used as a folder name")
    return data_dir / relative / node / file_name, data_dir
