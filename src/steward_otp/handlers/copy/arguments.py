"""The operator's side of a file copy, without I/O: REQCopySrc's arguments and copy paths.

:func:`parse_copy_args` checks REQCopySrc's ``methodArgs`` and fills in the defaults;
:func:`resolve_copy_path` says where a copy path points on its node, refusing ``..`` so a
relative path stays inside the node's data folder. Both raise :class:`CopyArgsError`, whose
text names the field, the value and what is allowed; it is a :class:`HandlerError`, so a
handler that lets one through answers the operator with it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Final

import attrs

from steward_otp.handlers.base import HandlerError
from steward_otp.handlers.copy.protocol import MAX_CHUNK_SIZE

DEFAULT_CHUNK_SIZE: Final = 100_000
"""Bytes per chunk when ``methodArgs[3]`` is absent (Steward's default)."""
DEFAULT_FOLDER_PERMISSION: Final = 0o755
"""Mode of destination folders the copy creates, when ``methodArgs[5]`` is absent."""
_ARG_NAMES: Final = (
    "srcPath",
    "dstNode",
    "dstPath",
    "chunkSize",
    "maxTotalCopyTime",
    "folderPermission",
)


class CopyArgsError(HandlerError):
    """The operator's ``methodArgs`` for REQCopySrc are not usable; the text says why."""


@attrs.frozen
class CopyRequest:
    """REQCopySrc's arguments, checked. ``max_time`` 0 means no time limit."""

    src_path: str
    dst_node: str
    dst_path: str
    chunk_size: int = DEFAULT_CHUNK_SIZE
    max_time: int = 0
    folder_permission: int = DEFAULT_FOLDER_PERMISSION


def _arg_error(index: int, value: str, allowed: str) -> CopyArgsError:
    return CopyArgsError(
        f'field "methodArgs[{index}]" ({_ARG_NAMES[index]}): value {value!r} is not allowed; '
        f"allowed: {allowed}"
    )


def _int_arg(args: Sequence[str], index: int, low: int, high: int, allowed: str) -> int | None:
    if index >= len(args) or not args[index].strip():
        return None
    text = args[index].strip()
    try:
        value = int(text, 10)
    except ValueError:
        raise _arg_error(index, text, allowed) from None
    if not low <= value <= high:
        raise _arg_error(index, text, allowed)
    return value


def parse_copy_args(args: Sequence[str], *, method_seconds: float) -> CopyRequest:
    """Check REQCopySrc's ``methodArgs``; ``method_seconds`` is the request's time budget.

    ``[srcPath, dstNode, dstPath, chunkSize?, maxTotalCopyTime?, folderPermission?]``. An
    empty optional argument means its default: chunkSize 100000 (1 to 1000000 allowed),
    maxTotalCopyTime = ``method_seconds`` rounded up (``-1`` or an infinite budget: no
    limit), folderPermission ``0755`` (octal, up to ``7777``). Raises CopyArgsError.
    """
    if len(args) < 3:
        raise CopyArgsError(
            f'field "methodArgs": value {list(args)!r} has {len(args)} entries; allowed: '
            "[srcPath, dstNode, dstPath, chunkSize?, maxTotalCopyTime?, folderPermission?]"
        )
    if len(args) > len(_ARG_NAMES):
        raise CopyArgsError(
            f'field "methodArgs": value {list(args)!r} has {len(args)} entries; allowed: '
            f"at most {len(_ARG_NAMES)} ({', '.join(_ARG_NAMES)})"
        )
    for index in range(3):
        if not args[index].strip():
            raise _arg_error(index, args[index], "a non-empty text")
    dst_node = args[1].strip()
    if not re.fullmatch(r"[A-Za-z0-9_\-.]+", dst_node):
        raise _arg_error(1, dst_node, "a node name (letters, digits, '_', '-', '.')")
    chunk_size = _int_arg(
        args, 3, 1, MAX_CHUNK_SIZE, f"an integer number of bytes from 1 to {MAX_CHUNK_SIZE}"
    )
    max_time = _int_arg(
        args, 4, -1, 10**9, "a positive integer number of seconds, or -1 for no limit"
    )
    if max_time == 0:
        raise _arg_error(4, "0", "a positive integer number of seconds, or -1 for no limit")
    if max_time is None:
        max_time = 0 if math.isinf(method_seconds) else max(1, math.ceil(method_seconds))
    permission = DEFAULT_FOLDER_PERMISSION
    if len(args) > 5 and args[5].strip():
        text = args[5].strip()
        try:
            permission = int(text.removeprefix("0o"), 8)
        except ValueError:
            raise _arg_error(5, text, "an octal mode from 0 to 7777, e.g. 0755") from None
        if not 0 <= permission <= 0o7777:
            raise _arg_error(5, text, "an octal mode from 0 to 7777, e.g. 0755")
    return CopyRequest(
        src_path=args[0],
        dst_node=dst_node,
        dst_path=args[2],
        chunk_size=chunk_size or DEFAULT_CHUNK_SIZE,
        max_time=max(max_time, 0),
        folder_permission=permission,
    )


def resolve_copy_path(value: str, base: Path, field: str) -> Path:
    """Where a copy path points on its node: absolute as given, relative under ``base``.

    ``base`` is the node's data folder. A relative path may not leave it: ``..`` components
    are refused (in absolute paths too, so the path means what it says). Raises
    CopyArgsError naming ``field``.
    """
    if not value or "\0" in value:
        raise CopyArgsError(f'field "{field}": value {value!r} is not a usable path')
    path = PurePosixPath(value)
    if ".." in path.parts:
        raise CopyArgsError(
            f'field "{field}": value {value!r} contains ".."; allowed: an absolute path, or '
            "a path relative to the node's data folder that stays inside it"
        )
    if path.is_absolute():
        return Path(path)
    if not path.parts or path.parts == (".",):
        raise CopyArgsError(f'field "{field}": value {value!r} names no file')
    return base / path
