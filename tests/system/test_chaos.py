"""The chaos harness, small: 40 payments in 8 s, one worker SIGKILL, a duplicate storm and
repeated camt.054s, on a stack of its own; then the independent checks (plain SQL and
Temporal visibility). `make chaos` is the full run (1,000 payments, Temporal and
PostgreSQL restarted too)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_small_chaos_run_loses_and_doubles_nothing(tmp_path):
    report = tmp_path / "chaos.json"
    env = {
        **os.environ,
        "CHAOS_PAYMENTS": "40",
        "CHAOS_WORKER_KILLS": "1",
        "CHAOS_SERVER_RESTARTS": "0",
        "CHAOS_LOAD_SECONDS": "8",
        # Windows close every 4 s: more netting cycles under the kill, and a shorter drain.
        "CHAOS_CLEARING_INTERVAL_S": "4",
        # A plan with duplicate storms (5 payments sent 3x at once) and sanctioned parties
        # (2): at 40 payments a random seed has no duplicate one run in eight.
        "CHAOS_SEED": "32",
        "CHAOS_DRAIN_SECONDS": "30",
        "CHAOS_RESULTS": str(report),
    }
    run = subprocess.run(
        [sys.executable, "-m", "bench.chaos"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=400
    )
    assert report.exists(), run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(report.read_text())
    assert set(result) == {
        "payments",
        "completed",
        "rejected",
        "in_flight",
        "lost",
        "duplicate_workflows",
        "duplicate_tokens",
        "invariant_violations",
        "faults",
    }
    assert result["payments"] == 40
    assert result["lost"] == 0 and result["duplicate_workflows"] == 0 and result["duplicate_tokens"] == 0
    assert result["invariant_violations"] == [], result["invariant_violations"]
    assert result["completed"] + result["rejected"] + result["in_flight"] == result["payments"]
    assert [f["fault"] for f in result["faults"]] == ["worker_sigkill"]
    details = json.loads((tmp_path / "chaos-details.json").read_text())
    assert details["duplicate_submissions"] >= 3 and details["sanctioned_submitted"] >= 2, details
    assert details["camt054"]["posted_twice"] + details["camt054"]["posted_concurrently"] > 0, details["camt054"]
    assert run.returncode == 0, run.stdout[-3000:]
