"""`make load-curve`'s arithmetic and its picture (bench/load/curve.py): the staged plan,
the per-step summary, the knee (highest offered rate with p95 < 500 ms, no errors and
completions keeping up) and the PNG. Its run against a live stack is what `make load-curve` does; its settlement
agent is the one the suite's load-accounting test drives."""

from __future__ import annotations

import json

from bench.load.curve import STEP_KEYS, Step, draw, knee, plan, summarise


def test_the_plan_warms_up_climbs_to_its_peak_and_cools_down():
    steps = plan([5, 10, 15], 20)
    assert [(s.phase, s.offered_per_s, s.seconds) for s in steps] == [
        ("warm-up", 5, 10),
        ("sustained", 5, 20),
        ("sustained", 10, 20),
        ("peak", 15, 20),
        ("cool-down", 5, 10),
    ]


def _step(offered: float, p95: float, error_rate: float = 0.0, completed: float | None = None) -> dict:
    return {
        "phase": "sustained", "offered_per_s": offered, "completed_per_s": offered if completed is None else completed,
        "p50_ms": p95 / 3, "p95_ms": p95, "p99_ms": p95 * 2, "error_rate": error_rate,
    }  # fmt: skip


def test_the_knee_is_the_last_ramp_step_before_the_first_that_fails():
    steps = [_step(5, 120), _step(10, 480), _step(15, 499.9, error_rate=0.01), _step(20, 900), _step(25, 300)]
    assert knee(steps) == 10  # 15/s had an error; 25/s passing after it is not a sustained rate
    assert knee([_step(5, 120), _step(10, 600)]) == 5  # p95 over 500 ms
    assert knee([_step(5, 500)]) is None  # 500 ms is not under 500 ms
    # fast answers while the backlog grows: 24/s offered, 14.7/s completed does not keep up
    assert knee([_step(16, 264, completed=15.7), _step(24, 342, completed=14.7)]) == 16
    assert knee([_step(10, 100, completed=9.0)]) == 10  # 90 % is keeping up
    warm_up = {**_step(30, 10), "phase": "warm-up"}
    assert knee([warm_up, _step(5, 100)]) == 5  # the warm-up is not a ramp step


def test_a_step_summary_has_the_contract_keys_and_its_rates():
    step = Step("sustained", 10, 20)
    for ms in (100, 200, 300, 400):
        step.calls.record(ms, None)
    step.calls.record(5000, "POST /v1/payments 503")
    step.agent.record(9000, None)  # a slow camt.054 batch: not in the banks' latency
    step.agent.record(50, "camt054 entry UNMATCHED")
    step.completed, step.arrivals, step.elapsed = 150, 190, 20.0
    summary = summarise(step)
    assert tuple(summary) == STEP_KEYS
    assert summary["completed_per_s"] == 7.5 and summary["arrivals_per_s"] == 9.5
    assert summary["error_rate"] == round(2 / 7, 4)  # one failed submission, one failed agent call, of 7
    assert summary["p50_ms"] == 300 and 400 < summary["p99_ms"] < 9000
    assert summary["agent_p95_ms"] > 5000


def test_the_curve_is_drawn_as_a_png(tmp_path):
    result = {"steps": [_step(5, 120), _step(10, 300), _step(15, 900)], "knee_per_s": 10}
    path = tmp_path / "load-curve.png"
    draw(result, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000
    json.dumps(result)  # what the JSON holds is plain data
