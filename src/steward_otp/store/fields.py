"""Checks and conversions of the fields of the store's operations and records.

They are attrs validators and converters. A validator raises ValueError (TypeError for a
value of the wrong kind in a collection) naming the field and the value it refused, so a bad
request fails when its record is built, before it reaches a transaction.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import attrs


def check_non_empty(owner: object, name: str, value: object) -> None:
    """ValueError unless ``value`` is a non-empty string; the text names ``name`` and ``owner``."""
    if not isinstance(value, str) or not value:
        raise ValueError(
            f"{name} must be a non-empty string, got {value!r} in {type(owner).__name__}"
        )


def non_empty_str(instance: object, attribute: attrs.Attribute[str], value: object) -> None:
    """Validator: a non-empty string."""
    check_non_empty(instance, attribute.name, value)


def optional_non_empty_str(
    instance: object, attribute: attrs.Attribute[str | None], value: object
) -> None:
    """Validator: None or a non-empty string."""
    if value is not None:
        check_non_empty(instance, attribute.name, value)


def finite(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    """Validator: a finite number (no NaN, no infinity)."""
    if not math.isfinite(value):
        raise ValueError(f"{attribute.name} must be a finite number, got {value!r}")


def optional_finite(
    instance: object, attribute: attrs.Attribute[float | None], value: float | None
) -> None:
    """Validator: None or a finite number."""
    if value is not None and not math.isfinite(value):
        raise ValueError(f"{attribute.name} must be a finite number or None, got {value!r}")


def non_negative(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    """Validator: a finite number >= 0."""
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{attribute.name} must be a finite number >= 0, got {value!r}")


def optional_float(value: float | None) -> float | None:
    """Converter: None stays None, anything else becomes a float."""
    return None if value is None else float(value)


def optional_limit(instance: object, attribute: attrs.Attribute[int | None], value: object) -> None:
    """Validator: None or a positive integer (not a bool), e.g. a row limit."""
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ValueError(f"{attribute.name} must be a positive integer or None, got {value!r}")


def id_tuple(values: Iterable[str]) -> tuple[str, ...]:
    """Converter: message ids as a tuple, in the order given."""
    return tuple(values)


def all_non_empty(
    instance: object, attribute: attrs.Attribute[tuple[str, ...]], value: tuple[object, ...]
) -> None:
    """Validator: every item is a non-empty string."""
    for item in value:
        check_non_empty(instance, attribute.name, item)
