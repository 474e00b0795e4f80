"""``bench/throughput.py --quick --json`` runs end to end and reports every figure.

No speed is asserted: only that the benchmark still works (real nats-server, bench nodes, a
real ``steward-otp run``) and prints one JSON object with a number for each figure.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

BENCH = Path(__file__).resolve().parents[2] / "bench" / "throughput.py"

KEYS = (
    "raw_rr_per_s",
    "two_leg_per_s",
    "two_leg_ratio",
    "one_leg_per_s",
    "one_leg_ratio",
    "drain_per_s",
    "idle_rss_mb",
    "loaded_rss_mb",
    "ready_s",
    "two_leg_cpu_us_a",
    "two_leg_cpu_us_b",
    "one_leg_cpu_us_sender",
    "one_leg_cpu_us_receiver",
    "drain_cpu_us_sender",
    "drain_cpu_us_receiver",
    "raw_cpu_us_per_rt",
    "two_leg_cpu_us_broker",
    "two_leg_cpu_us_bench",
    "two_leg_cpu_us_all",
    "two_leg_cpu_us_allowed",
    "one_leg_cpu_us_broker",
    "one_leg_cpu_us_bench",
    "one_leg_cpu_us_all",
    "one_leg_cpu_us_allowed",
)


def test_quick_bench_prints_every_figure_as_a_number() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert isinstance(figures, dict)
    for key in KEYS:
        value = figures[key]
        assert isinstance(value, int | float) and not isinstance(value, bool), (key, value)
        # The broker and the bench itself may use less than one clock tick of CPU in a
        # quick run: zero is a reading there.
        least = value >= 0 if key.endswith(("_broker", "_bench")) else value > 0
        assert math.isfinite(value) and least, (key, value)
    for phase, parts in (("two_leg", ("a", "b")), ("one_leg", ("sender", "receiver"))):
        each = [figures[f"{phase}_cpu_us_{part}"] for part in (*parts, "broker", "bench")]
        assert figures[f"{phase}_cpu_us_all"] == pytest.approx(sum(each))
    assert "target" in result.stderr  # the human-readable table went to stderr
