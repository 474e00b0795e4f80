"""Drain progress: how fast the outbox empties toward each node (``queue ls``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from steward_otp.control.server import answer
from steward_otp.outbound.drain import WINDOW, DrainMeter
from steward_otp.tree_view import render_drain, render_queue
from tests.unit.handlers.loopback_nodes import LoopbackNet, message, wait_for


def test_the_rate_is_over_the_last_minute_and_forgets_a_quiet_node() -> None:
    meter = DrainMeter()
    for second in range(10):
        meter.delivered("ship1", 5, 1000.0 + second)
    assert meter.rate("ship1", 1010.0) == pytest.approx(5.0)
    assert meter.progress({"ship1": 100, "ghost": 3}, 1010.0) == {
        "ghost": {"held": 3, "per_second": 0.0, "eta_seconds": None},
        "ship1": {"held": 100, "per_second": 5.0, "eta_seconds": pytest.approx(20.0)},
    }
    assert meter.rate("ship1", 1010.0 + WINDOW) == 0.0  # a minute of silence
    assert meter.rate("ship1", 1010.0 + WINDOW) == 0.0
    meter.delivered("ship2", 1, 5.0)
    assert meter.rate("ship2", 5.0) == 1.0  # one message in its first second: 1/s


def test_queue_ls_shows_the_drain_below_the_messages() -> None:
    draining: dict[str, dict[str, float | None]] = {
        "ship1": {"held": 412, "per_second": 35.2, "eta_seconds": 11.7},
        "ship2": {"held": 3, "per_second": 0.0, "eta_seconds": None},
    }
    assert render_drain(draining) == (
        "ship1: 412 waiting, draining at 35.2/s, about 11s left\n"
        "ship2: 3 waiting, not draining (nothing delivered in the last minute)\n"
    )
    text = render_queue(
        [{"id": "a", "toNode": "ship2", "method": "REQPing", "state": "queued", "attempts": 1}],
        draining,
    )
    assert text.splitlines()[-2:] == render_drain(draining).splitlines()
    assert render_queue([]) == "ID  TO  METHOD  STATE  TRIES  AGE  REASON"


async def test_deliveries_feed_the_meter_and_queue_ls_reports_it(tmp_path: Path) -> None:
    net = LoopbackNet(tmp_path)
    central, ship1 = net.node("central"), net.node("ship1")
    async with central, ship1:
        await central.submit([message("REQPing", to_node="ship1") for _ in range(5)])
        await wait_for(lambda: central.outbox.stats.delivered >= 5)
        assert central.outbox.drain.rate("ship1", trio.current_time()) > 0
        await central.submit([message("REQPing", to_node="ghost") for _ in range(4)])
        central.outbox.drain.delivered("ghost", 2, trio.current_time())  # as if it came back
        listed = await answer(central, {"op": "queue.ls"})
    assert listed["ok"] is True
    ghost = listed["draining"]["ghost"]
    assert ghost["held"] == 4 and ghost["per_second"] > 0 and ghost["eta_seconds"] > 0
    assert "ship1" not in listed["draining"]  # nothing waits for it
