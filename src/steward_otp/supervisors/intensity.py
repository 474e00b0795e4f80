"""Restart intensity: the pure bookkeeping behind "at most N restarts in T seconds"."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import attrs

__all__ = ["RestartIntensity", "restarts_in_window"]


def restarts_in_window(restarts: Iterable[float], now: float, period: float) -> list[float]:
    """The restart times that still count at ``now``: those at most ``period`` seconds old.

    Same rule as OTP's supervisor: a restart at ``t`` counts while ``now - t <= period``.
    """
    return [t for t in restarts if now - t <= period]


def _check_intensity(_instance: object, _attribute: object, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"intensity must be an integer >= 0, got {value!r}")


def _check_period(_instance: object, _attribute: object, value: Any) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not value > 0
        or math.isinf(value)
    ):
        raise ValueError(f"period must be a finite number of seconds > 0, got {value!r}")


@attrs.define
class RestartIntensity:
    """The restart history of one supervisor, shared by all its children.

    A supervisor may restart children at most ``intensity`` times within any ``period``
    seconds; the restart that would make it ``intensity + 1`` makes it give up. With
    ``intensity=0`` the first restart already gives up. Times are whatever clock the caller
    uses (supervisors pass ``trio.current_time()``), and must not go backwards.

    Raises:
        ValueError: from the constructor, for a negative intensity or a period that is not
            a positive finite number.
    """

    intensity: int = attrs.field(validator=_check_intensity)
    period: float = attrs.field(validator=_check_period)
    _restarts: list[float] = attrs.field(factory=list, init=False)

    def record(self, now: float) -> bool:
        """Record a restart at ``now``. Return ``True`` if it is allowed, ``False`` if it
        exceeds the intensity (the supervisor must give up)."""
        self._restarts = restarts_in_window(self._restarts, now, self.period)
        self._restarts.append(now)
        return len(self._restarts) <= self.intensity

    def recent(self, now: float) -> int:
        """How many recorded restarts still count at ``now``."""
        return len(restarts_in_window(self._restarts, now, self.period))

    def reset(self) -> None:
        """Forget every recorded restart (a supervisor does this each time it starts)."""
        self._restarts.clear()
