"""disabled_methods: the methods a node does not serve have no subscriber; a name the node
does not know stops the start (a typo must not leave the method it meant served)."""

from __future__ import annotations

from pathlib import Path

import pytest

from steward_otp.config import ConfigError
from tests.unit.handlers.loopback_nodes import LoopbackNet


async def test_a_disabled_method_has_no_subscriber(tmp_path: Path) -> None:
    net = LoopbackNet(tmp_path)
    ship1 = net.node("ship1", disabled_methods="REQCliCommand,REQCliCommandCont")
    async with ship1:
        served = {c.id for c in ship1.snapshot().walk() if c.path.startswith("node/inbound/")}
    assert "REQCliCommand" not in served and "REQCliCommandCont" not in served
    assert {"REQPing", "REQToFileAppend"} <= served
    assert "REQCliCommand" not in ship1.served_methods()


def test_a_method_the_node_does_not_serve_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"disabled_methods names 'REQCliComand'") as caught:
        LoopbackNet(tmp_path).node("ship1", disabled_methods="REQCliComand")
    assert caught.value.field == "disabled_methods"
    assert "REQCliCommand" in str(caught.value)
