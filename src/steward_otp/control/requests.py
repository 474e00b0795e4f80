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

from steward_otp.limits import node_name_problem, text_problem
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


MAX_SEQ = 2**63 - 1
"""Largest sequence number a request may give (SQLite's and JetStream's 64-bit integers)."""


def text_field(request: Mapping[str, Any], key: str, *, required: bool) -> str | None:
    """``request[key]`` as a non-empty string of valid Unicode text (no lone surrogate); None
    when absent and not ``required``."""
    value = request.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise RequestError(f'field "{key}": value {value!r}; allowed: a non-empty string')
    problem = text_problem(value)
    if problem is not None:
        raise RequestError(
            f'field "{key}": value {value!r} {problem}; allowed: a non-empty string of valid text'
        )
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


def finite_number(value: object) -> float | None:
    """``value`` as a finite float when it is a JSON number (not a bool) a float can hold;
    None otherwise (an int too large for a float, NaN, an infinity, anything else)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        return None
    return number if math.isfinite(number) else None


def seconds_field(request: Mapping[str, Any], key: str) -> float | None:
    """``request[key]`` as seconds: a finite number >= 0, or None when absent."""
    value = request.get(key)
    if value is None:
        return None
    seconds = finite_number(value)
    if seconds is None or seconds < 0:
        raise RequestError(
            f'field "{key}": value {value!r}; allowed: seconds (a finite number >= 0)'
        )
    return seconds


def seq_field(request: Mapping[str, Any], key: str, allowed: str) -> int | None:
    """``request[key]`` as a sequence number from 0 to :data:`MAX_SEQ`; None when absent.
    ``allowed`` says where such a number comes from, for the error text."""
    value = request.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEQ:
        raise RequestError(
            f'field "{key}": value {value!r}; allowed: {allowed} (an integer from 0 to {MAX_SEQ})'
        )
    return value


def ids_field(request: Mapping[str, Any], key: str, *, required: bool) -> list[str]:
    """``request[key]`` as a list of message ids (non-empty strings of valid Unicode text);
    empty when absent and not ``required``."""
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
    for index, msg_id in enumerate(value):
        problem = text_problem(msg_id)
        if problem is not None:
            raise RequestError(
                f'field "{key}[{index}]": value {msg_id!r} {problem}; allowed: a message id '
                "(a non-empty string of valid text)"
            )
    return value
