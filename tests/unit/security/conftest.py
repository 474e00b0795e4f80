"""Fixtures for the security tests: an in-memory network of real nodes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.handlers.loopback_nodes import LoopbackNet


@pytest.fixture
def net(tmp_path: Path) -> LoopbackNet:
    """A fresh in-memory broker; nodes made on it live under ``tmp_path``."""
    return LoopbackNet(tmp_path)
