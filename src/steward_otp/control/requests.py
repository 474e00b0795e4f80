"""A control request: the node it inspects, how its fields are read, how it is refused.

:class:`Inspectable` is what every operation needs from a node; :data:`Operation` and
:data:`Stream` are the two shapes of an operation (one answer, or a stream of events). The
``*_field`` functions read one field of a decoded request and raise :class:`RequestError`,
whose text names the field, the value and what is allowed, when it is not acceptable.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol

from steward_otp.limits import node_name_problem
from steward_otp.methods import MethodTable
from steward_otp.store import Store
from steward_otp.supervisors import ProcessSnapshot


class Inspectable(Protocol):
    """What the control server needs from a node."""

    @property
    def node_name(self) -> str: ...

    @property
    def url(self) -> str: ...

    @property
    def store(self) -> Store: ...

    @property
    def table(self) -> MethodTable: ...

    def snapshot(self) -> ProcessSnapshot: ...

    def connection_state(self) -> str: ...

    def last_hellos(self) -> Mapping[str, float]: ...

    def posture(self) -> Mapping[str, Any]:
        """How the node delivers and what it checks (``delivery``, ``security``)."""
        ...


Operation = Callable[[Inspectable, Mapping[str, Any]], Awaitable[dict[str, Any]]]
Stream = Callable[[Inspectable, Mapping[str, Any]], Awaitable[AsyncIterator[dict[str, Any]]]]
"""A streaming operation: checks the request (raising RequestError), then returns the
events to send, one line each."""


class RequestError(Exception):
    """A control request that cannot be served; its text goes back to the client."""


def text_field(request: Mapping[str, Any], key: str, *, required: bool) -> str | None:
    """``request[key]`` as a non-empty string; None when absent and not ``required``."""
    value = request.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise RequestError(f'field "{key}": value {value!r}; allowed: a non-empty string')
    return value


def count_field(request: Mapping[str, Any], key: str, default: int, most: int) -> int:
    """``request[key]`` (``default`` when absent) as an integer from 1 to ``most``."""
    value = request.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise RequestError(f'field "{key}": value {value!r}; allowed: an integer from 1 to {most}')
    return value


def node_name_field(request: Mapping[str, Any]) -> str | None:
    """The ``toNode`` field as a node name; None when absent."""
    name = text_field(request, "toNode", required=False)
    problem = node_name_problem(name) if name is not None else None
    if problem is not None:
        raise RequestError(f'field "toNode": value {name!r} {problem}; allowed: a node name')
    return name


def seconds_field(request: Mapping[str, Any], key: str) -> float | None:
    """``request[key]`` as seconds: a finite number >= 0, or None when absent."""
    value = request.get(key)
    if value is None:
        return None
    seconds = math.nan
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:  # an int too large for a float
            seconds = math.inf
    if not (math.isfinite(seconds) and seconds >= 0):
        raise RequestError(
            f'field "{key}": value {value!r}; allowed: seconds (a finite number >= 0)'
        )
    return seconds


def ids_field(request: Mapping[str, Any], key: str, *, required: bool) -> list[str]:
    """``request[key]`` as a list of message ids; empty when absent and not ``required``."""
    value = request.get(key)
    if value is None and not required:
        return []
    if (
        not isinstance(value, list)
        or not all(isinstance(v, str) and v for v in value)
        or len(value) > 100_000
    ):
        raise RequestError(
            f'field "{key}": value {value!r}; allowed: a list of message ids (non-empty strings)'
        )
    return value
