"""Where output methods write: Steward's output-path rule (spec 5.0), made safe.

* ``directory`` starting with ``/``: that folder, as given (the operator chose an absolute
  place on the target node).
* ``directory`` starting with ``./``: that folder relative to the node's home.
* otherwise ``<data>/<directory>/<node>/<fileName>``, where for a reply ``directory``,
  ``node`` and ``fileName`` come from the request it answers (``node`` = the node that ran
  the request, or the reply's ``fromNode`` when that is unknown).

A relative ``directory`` may never leave its base folder: ``..`` components are refused, and
``fileName`` must be a plain file name. Violations raise :class:`UnsafePath`, whose text
names the field and the value.
"""

from __future__ import annotations

import functools
from pathlib import Path, PurePosixPath

from steward_otp.handlers.base import HandlerError
from steward_otp.message import Message


class UnsafePath(HandlerError):
    """``directory`` or ``fileName`` would write outside the allowed folder."""


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
    return value


def output_path(message: Message, *, data_dir: Path, home: Path) -> Path:
    """The file that an output method handling ``message`` writes to. See module docstring."""
    previous = message.previous_message
    if previous is None:
        directory, node, file_name = message.directory, message.to_node, message.file_name
    else:
        directory = previous.directory
        node = previous.to_node or message.from_node
        file_name = previous.file_name
    return _resolve(directory, node, file_name, data_dir, home)


@functools.lru_cache(maxsize=4096)
def _resolve(directory: str, node: str, file_name: str, data_dir: Path, home: Path) -> Path:
    """:func:`output_path` for its inputs (memoised: a node writes to few distinct files)."""
    file_name = _check_file_name(file_name)
    if directory.startswith("/"):
        return Path(directory) / file_name
    if directory.startswith("./"):
        return home / _check_relative("directory", directory) / file_name
    relative = _check_relative("directory", directory)
    if relative.is_absolute():  # pragma: no cover - handled above
        raise UnsafePath(f'field "directory": value {directory!r} must be relative')
    if not node or "/" in node or node in {".", ".."}:
        raise UnsafePath(f"node name {node!r} cannot be used as a folder name")
    return data_dir / relative / node / file_name
