"""The example programs run, end to end, as a user would start them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import trio

from tests.conftest import free_loopback_port

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


async def run_example(name: str, *args: str) -> str:
    result = await trio.run_process(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    return result.stdout.decode()


async def test_custom_handler_example_serves_its_method_across_two_nodes(tmp_path: Path) -> None:
    out = await run_example(
        "custom_handler_node.py", "--home", str(tmp_path), "--port", str(free_loopback_port())
    )
    assert out.startswith("ship1: total=")


async def test_simulation_example_reaches_every_ship(tmp_path: Path) -> None:
    out = await run_example(
        "simulation.py", "--home", str(tmp_path), "--ships", "3",
        "--port", str(free_loopback_port()),
    )  # fmt: skip
    lines = sorted(out.splitlines())
    assert [line.split(":")[0] for line in lines] == ["ship1", "ship2", "ship3"]
    for line, name in zip(lines, ["ship1", "ship2", "ship3"], strict=True):
        assert line.endswith(f"/{name}"), line
