"""Steward's human timestamp, used at the start of result and error-log lines."""

from __future__ import annotations

import time


def steward_timestamp(at: float | None = None) -> str:
    """Local time like ``Mon Jan  2 15:04:05 2006`` (C ``asctime`` style, day padded)."""
    return time.strftime("%a %b %e %H:%M:%S %Y", time.localtime(at))
