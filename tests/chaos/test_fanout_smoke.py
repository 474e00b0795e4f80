"""``bench/fanout.py`` still runs end to end (a small fleet) and reports its figures.

No speed is asserted: the benchmark itself reports against its target.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

BENCH = Path(__file__).resolve().parents[2] / "bench" / "fanout.py"


def test_fanout_bench_runs_with_real_and_simulated_nodes() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH), "--nodes", "24", "--real-nodes", "6", "--real-per-process",
         "3", "--sim-processes", "2", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert (figures["nodes"], figures["real_nodes"], figures["simulated_nodes"]) == (24, 6, 18)
    for key in ("seconds_to_all_replies", "central_rss_mb", "central_cpu_seconds"):
        assert isinstance(figures[key], int | float) and figures[key] > 0, (key, figures)
    assert "all replies on central's disk" in result.stderr
