"""Restart strategies, and which siblings each one takes down with a failed child."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import TypeVar

__all__ = ["Strategy", "restart_group"]

T = TypeVar("T")


class Strategy(enum.Enum):
    """What a supervisor restarts when one child must be restarted (OTP strategies)."""

    ONE_FOR_ONE = "one_for_one"
    """Only the child that exited."""
    ONE_FOR_ALL = "one_for_all"
    """Every child: the others are stopped in reverse start order, then all are started
    again in start order."""
    REST_FOR_ONE = "rest_for_one"
    """The child that exited and every child started after it."""


def restart_group(strategy: Strategy, children: Sequence[T], index: int) -> list[T]:
    """The children, in start order, restarted together when ``children[index]`` must be
    restarted under ``strategy``. Pure; raises ``IndexError`` for an index out of range."""
    if not 0 <= index < len(children):
        raise IndexError(f"child index {index} out of range for {len(children)} children")
    if strategy is Strategy.ONE_FOR_ONE:
        return [children[index]]
    if strategy is Strategy.ONE_FOR_ALL:
        return list(children)
    return list(children[index:])
