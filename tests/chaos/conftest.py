"""Chaos tests: long runs are marked ``slow`` and run only when asked for.

``pytest tests/chaos`` runs the short variants (the folder in about a minute);
``pytest -m slow tests/chaos`` runs the long ones (a minute or more each). A test marked
``slow`` is skipped unless the ``-m`` expression names ``slow``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "slow" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="long chaos run: select it with -m slow")
    for item in items:
        if item.path.is_relative_to(HERE) and item.get_closest_marker("slow") is not None:
            item.add_marker(skip)
