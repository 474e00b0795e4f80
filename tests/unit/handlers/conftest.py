"""Fixtures for the handler tests: an in-memory network of real nodes."""

from __future__ import annotations

from pathlib import Path

import pytest

from steward_otp.node import Node
from tests.unit.handlers.loopback_nodes import LoopbackNet


@pytest.fixture
def net(tmp_path: Path) -> LoopbackNet:
    """A fresh in-memory broker; nodes made on it live under ``tmp_path``."""
    return LoopbackNet(tmp_path)


@pytest.fixture
def pair(net: LoopbackNet) -> tuple[Node, Node]:
    """``central`` and ``ship1`` on ``net``, not started: ``async with central, ship1:``."""
    return net.node("central"), net.node("ship1")
