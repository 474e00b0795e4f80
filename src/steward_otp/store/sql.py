"""SQL building blocks shared by the store's operations: placeholder lists, ids bound in
chunks well below SQLite's variable limit, and the row type sqlite3 hands back."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

Row = tuple[Any, ...]  # what sqlite3 hands back; each reader converts it field by field


def placeholders(count: int) -> str:
    """``?, ?, ...``: ``count`` placeholders for an ``IN (...)`` list."""
    return ", ".join("?" * count)


_CHUNK = 500
"""Ids bound per statement in set-based operations (far below SQLite's variable limit)."""


def chunks(values: Iterable[str]) -> Iterator[tuple[str, ...]]:
    """``values`` in order, in tuples of at most :data:`_CHUNK` ids, one per statement."""
    items = tuple(values)
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]
