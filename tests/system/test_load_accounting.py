"""The load harness's accounting: a short `make load` run against the suite's own stack
counts every payment it submitted (completed + in flight + rejected == submitted, none
lost), and bench-results/load.json keeps exactly the contract keys.

The harness runs as a subprocess (Locust is gevent; the suite's API and worker run in
this event loop, which must keep serving while the harness drives them).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KEYS = [
    "seconds",
    "submitted_per_s",
    "completed_per_s",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "error_rate",
    "baseline_per_s",
    "ratio",
    "baseline_local_per_s",
    "ratio_local",
]


@pytest.mark.slow
async def test_a_short_load_run_accounts_for_every_payment(api_url, credentials, settings, tmp_path):
    results = tmp_path / "load.json"
    env = {
        **os.environ,
        "DELTRAN_HOME": str(settings.home),
        "DELTRAN_DATABASE_URL": settings.effective_database_url,
        "DELTRAN_TEMPORAL_ADDRESS": settings.effective_temporal_address,
        "PYTHONPATH": str(ROOT),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.load",
        "--seconds",
        "1",
        "--users",
        "2",
        "--in-flight",
        "6",
        "--net-share",
        "0",
        "--drain-seconds",
        "8",
        "--results",
        str(results),
        "--api-url",
        api_url,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(proc.communicate(), timeout=90)
    text = output.decode(errors="replace")
    assert proc.returncode == 0, text

    result = json.loads(results.read_text())
    assert list(result) == KEYS
    assert result["seconds"] == 1

    details = json.loads((tmp_path / "load-accounting.json").read_text())
    accounting = details["accounting"]
    assert accounting["submitted"] > 0, text
    assert accounting["lost"] == 0, accounting["lost_payments"]
    assert accounting["rejected"] == 0, accounting["rejected_payments"]
    assert accounting["completed"] + accounting["in_flight"] == accounting["submitted"]
    assert len(accounting["in_flight_payments"]) == accounting["in_flight"]
    # Every payment the journal saw accepted is one the database knows.
    assert accounting["submitted"] >= accounting["attempted"] - details["errors"]
    assert details["baseline"]["started"] > 0 and details["baseline_local"]["started"] > 0
    # Each baseline's rate is over the cycles it completed, its ratio DelTran's rate over it,
    # computed before the rates were rounded to two decimals and itself rounded to three:
    # within what those roundings allow (a 1 % tolerance failed on a slow, loaded machine,
    # where 0.67/s rounded is 0.7 % off).
    completed = result["completed_per_s"]
    for rate, ratio in (("baseline_per_s", "ratio"), ("baseline_local_per_s", "ratio_local")):
        assert result[rate] > 0.005, details
        lowest = max(completed - 0.005, 0) / (result[rate] + 0.005) - 0.0005
        highest = (completed + 0.005) / (result[rate] - 0.005) + 0.0005
        assert lowest <= result[ratio] <= highest, (ratio, result)
    # The latency of every call, split by kind: the banks' submissions (one per attempt)
    # and the agent's camt.054 bookings, which make up the tail when they are large.
    by_call = details["latency_by_call"]
    assert by_call["POST /v1/payments"]["calls"] == accounting["attempted"]
    assert by_call["POST /v1/notifications/camt054"]["calls"] > 0
    assert sum(kind["calls"] for kind in by_call.values()) == details["api_calls"]
