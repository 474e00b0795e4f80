"""Chunk planning and the receiver's pull window of the file-copy protocol (pure).

:class:`ChunkPlan` cuts a file into chunks; :class:`PullWindow` is the destination's small
state machine deciding which chunks to ask the source for next. No I/O here: both are
property-tested with hypothesis.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Final

import attrs

WINDOW_BYTES: Final = 8 * 1024 * 1024
"""Roughly how many chunk bytes may be on their way at once (bounds memory on both sides)."""
MIN_WINDOW: Final = 2
MAX_WINDOW: Final = 64


def window_for(chunk_size: int) -> int:
    """How many chunks the destination asks for at once: about :data:`WINDOW_BYTES` worth."""
    return max(MIN_WINDOW, min(MAX_WINDOW, WINDOW_BYTES // max(chunk_size, 1)))


@attrs.frozen
class ChunkPlan:
    """How a file of ``size`` bytes is cut into chunks of ``chunk_size`` (the last shorter).

    An empty file has no chunks. Chunk ``i`` covers ``[i * chunk_size, ...)``.
    """

    size: int = attrs.field(validator=attrs.validators.ge(0))
    chunk_size: int = attrs.field(validator=attrs.validators.ge(1))

    @property
    def count(self) -> int:
        """Number of chunks."""
        return -(-self.size // self.chunk_size)

    def span(self, index: int) -> tuple[int, int]:
        """``(offset, length)`` of chunk ``index``; IndexError outside ``range(count)``."""
        if not 0 <= index < self.count:
            raise IndexError(f"chunk {index} is outside 0..{self.count - 1}")
        offset = index * self.chunk_size
        return offset, min(self.chunk_size, self.size - offset)


def chunk_digest(data: bytes) -> str:
    """SHA-256 of ``data`` as 64 lowercase hex digits."""
    return hashlib.sha256(data).hexdigest()


def chunk_is_intact(plan: ChunkPlan, index: int, data: bytes, digest: str) -> bool:
    """True when ``data`` is chunk ``index`` of ``plan`` as the sender hashed it."""
    if not 0 <= index < plan.count:
        return False
    return len(data) == plan.span(index)[1] and chunk_digest(data) == digest


class PullWindow:
    """The destination's view of a copy: which chunks it has, which it asked for, what next.

    It asks for the lowest missing chunks first and never has more than ``window`` requests
    outstanding. Every method is idempotent: a duplicate or late chunk changes nothing, a
    rejected (corrupted) chunk is asked for again, and :meth:`forget_outstanding` (after a
    stall or a restart) makes every missing chunk eligible again.
    """

    def __init__(self, count: int, window: int, have: Iterable[int] = ()) -> None:
        if count < 0 or window < 1:
            raise ValueError(f"count must be >= 0 and window >= 1, got {count}, {window}")
        self.count = count
        self.window = window
        self.have: set[int] = {i for i in have if 0 <= i < count}
        self.outstanding: set[int] = set()
        self._low = 0  # every index below it is in ``have``

    @property
    def complete(self) -> bool:
        """True when every chunk is here."""
        return len(self.have) == self.count

    def next_requests(self) -> list[int]:
        """Chunks to ask for now (possibly none); they count as outstanding from now on."""
        while self._low < self.count and self._low in self.have:
            self._low += 1
        room = self.window - len(self.outstanding)
        wanted: list[int] = []
        index = self._low
        while room > 0 and index < self.count:
            if index not in self.have and index not in self.outstanding:
                wanted.append(index)
                room -= 1
            index += 1
        self.outstanding.update(wanted)
        return wanted

    def received(self, index: int) -> bool:
        """Chunk ``index`` arrived intact; True when it is new."""
        if not 0 <= index < self.count:
            return False
        self.outstanding.discard(index)
        if index in self.have:
            return False
        self.have.add(index)
        return True

    def rejected(self, index: int) -> None:
        """Chunk ``index`` arrived damaged: it will be asked for again."""
        if 0 <= index < self.count and index not in self.have:
            self.outstanding.discard(index)

    def lost(self, indices: Iterable[int]) -> None:
        """Chunks once here turned out bad (checked again before assembly): fetch them again."""
        for index in indices:
            self.have.discard(index)
            self.outstanding.discard(index)
            self._low = min(self._low, max(index, 0))

    def forget_outstanding(self) -> None:
        """Treat every request as lost: the next call asks again for what is missing."""
        self.outstanding.clear()
