"""`make load-curve`: DelTran under an open-loop arrival rate that rises step by step
past the knee, like a staged load profile (warm-up, sustained steps, peak, cool-down).

Unlike `make load` (a closed loop: users wait for room before the next payment), the
arrivals here do not slow down when DelTran does: each step offers its rate for
LOAD_CURVE_STEP_SECONDS whatever the answers, so queueing shows up as latency and, past
the knee, as completions falling behind the offered rate. Bank payments are JSON, gross
(urgent), from the demo banks; this process is also the settlement agent (bench/load/
run.py `SettlementAgent`: it books each payment's camt.054 once it awaits settlement).

Per step: offered/s and the arrivals achieved, completed/s (this run's payments that
reached COMPLETED during the step, counted in the database as the step starts and ends),
p50/p95/p99 of the banks' submissions timed from when each was due (a client running
late adds to the latency, it is not left out), the agent's p95 apart, and the error rate
of every call of the step, the agent's included. The knee is the offered rate of the last
ramp step before the first that failed: p95 at or over 500 ms, an error, or completions
under 90 % of the offered rate.

Output: a table on stdout, `load-curve.json` (bench/common.py `results_path`)
    {"steps": [{"phase", "offered_per_s", "completed_per_s", "p50_ms", "p95_ms", "p99_ms",
                "error_rate", "arrivals_per_s", "agent_p95_ms"}], "knee_per_s",
     "accounting": {"submitted", "completed", "rejected_or_expired", "unfinished",
                    "agent_failures"}}
and `load-curve.png` beside it (matplotlib). After the cool-down the agent keeps settling
for up to LOAD_CURVE_DRAIN_SECONDS (60) so that the run's payments finish; those that do
not are counted as unfinished.

Settings: the stack's own DELTRAN_* (as `make load`), LOAD_CURVE_STEPS (offered rates of
the sustained steps, "4,8,12,16,20,24,28"), LOAD_CURVE_STEP_SECONDS (20); the warm-up and
the cool-down run at the first rate for half a step.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bench.common import results_path
from bench.load.run import TICK_S, Calls, SettlementAgent, percentile
from cli.demo import DEMO_BICS, party
from deltran.config import Settings

RESULTS = results_path("load-curve")
KNEE_P95_MS = 500.0
KEEPS_UP = 0.9  # completed/offered at or above which a step keeps up
STEP_KEYS = (
    "phase", "offered_per_s", "completed_per_s", "p50_ms", "p95_ms", "p99_ms", "error_rate", "arrivals_per_s",
    "agent_p95_ms",
)  # fmt: skip


@dataclass
class Step:
    phase: str
    offered_per_s: float
    seconds: float
    calls: Calls = field(default_factory=Calls)  # the banks' submissions, timed from their due time
    agent: Calls = field(default_factory=Calls)  # the settlement agent's camt.054 and window calls
    arrivals: int = 0
    elapsed: float = 0.0
    completed: int = 0


def plan(rates: list[float], step_s: float) -> list[Step]:
    """Warm-up at the first rate, each sustained rate (the last is the peak), cool-down."""
    steps = [Step("warm-up", rates[0], step_s / 2)]
    steps += [Step("peak" if i == len(rates) - 1 else "sustained", r, step_s) for i, r in enumerate(rates)]
    steps.append(Step("cool-down", rates[0], step_s / 2))
    return steps


def knee(steps: list[dict]) -> float | None:
    """The offered rate of the last ramp step (sustained or peak) before the first one that
    failed: p95 at or over 500 ms, an error, or completions that did not keep up (under
    90 % of the offered rate). Past that, the API may still answer fast while the backlog
    grows behind it: not a rate DelTran sustains."""
    best = None
    for s in steps:
        if s["phase"] not in ("sustained", "peak"):
            continue
        if s["p95_ms"] >= KNEE_P95_MS or s["error_rate"] > 0 or s["completed_per_s"] < KEEPS_UP * s["offered_per_s"]:
            break
        best = s["offered_per_s"]
    return best


def summarise(step: Step) -> dict:
    """Latency: the banks' submissions, from when each was due (a late client adds to it,
    it is not left out). Errors: every call of the step, the agent's included."""
    lat = step.calls.latencies_ms
    calls = len(lat) + len(step.agent.latencies_ms)
    elapsed = step.elapsed or step.seconds
    return {
        "phase": step.phase,
        "offered_per_s": step.offered_per_s,
        "completed_per_s": round(step.completed / elapsed, 2),
        "p50_ms": round(percentile(lat, 50), 1),
        "p95_ms": round(percentile(lat, 95), 1),
        "p99_ms": round(percentile(lat, 99), 1),
        "error_rate": round(min(1.0, (step.calls.errors + step.agent.errors) / calls), 4) if calls else 0.0,
        "arrivals_per_s": round(step.arrivals / elapsed, 2),
        "agent_p95_ms": round(percentile(step.agent.latencies_ms, 95), 1),
    }


async def _submit(http: httpx.AsyncClient, keys: dict, n: int, prefix: str, due: float, calls: Calls) -> None:
    debtor, creditor = DEMO_BICS[n % len(DEMO_BICS)], DEMO_BICS[(n + 1) % len(DEMO_BICS)]
    body = {
        "end_to_end_id": f"{prefix}{n}",
        "amount": f"{1000 + n % 9000}.00",
        "currency": "AED",
        "debtor": party(debtor, "Load Curve Debtor LLC"),
        "creditor": party(creditor, "Load Curve Creditor Ltd"),
        "urgent": True,
    }
    try:
        response = await http.post(
            "/v1/payments", json=body, headers={"Authorization": f"Bearer {keys['banks'][debtor]}"}
        )
        error = None if response.status_code == 202 else f"POST /v1/payments {response.status_code}"
    except httpx.HTTPError as exc:
        error = type(exc).__name__
    calls.record((time.monotonic() - due) * 1000, error)


async def run(settings: Settings, steps: list[Step], api_url: str, drain_s: float) -> tuple[list[dict], dict]:
    keys = json.loads(settings.credentials_path.read_text())
    prefix = f"LC{uuid.uuid4().hex[:8].upper()}-"
    engine = create_async_engine(settings.effective_database_url, pool_size=2)
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=100)
    run_dir = Path(tempfile.mkdtemp(prefix="deltran-curve-"))
    agent_failures: list[str] = []
    async with httpx.AsyncClient(base_url=api_url, timeout=30, limits=limits) as http:
        agent = SettlementAgent(http, engine, keys, prefix, run_dir, steps[0].agent)
        stop = asyncio.Event()

        async def settle() -> None:
            while not stop.is_set():
                try:
                    await agent.tick()
                except Exception as exc:  # a tick that failed is counted, and the next one runs
                    agent_failures.append(f"{type(exc).__name__}: {exc}"[:200])
                await asyncio.sleep(TICK_S)

        async def count(statuses: str) -> int:
            async with engine.connect() as conn:
                found = await conn.scalar(
                    text(f"SELECT count(*) FROM payments WHERE end_to_end_id LIKE :p AND status IN ({statuses})"),
                    {"p": prefix + "%"},
                )
            return int(found or 0)

        settler = asyncio.create_task(settle())
        submissions: set[asyncio.Task] = set()
        n = 0
        for step in steps:
            agent.calls = step.agent  # the agent's calls count in the step they are made in
            started = time.monotonic()
            done_before = await count("'COMPLETED'")
            for k in range(int(step.offered_per_s * step.seconds)):
                # Open loop: the k-th arrival of the step is due at k / rate, answered or not.
                due = started + k / step.offered_per_s
                if (delay := due - time.monotonic()) > 0:
                    await asyncio.sleep(delay)
                else:
                    await asyncio.sleep(0)  # behind schedule: let answers and the agent run
                task = asyncio.create_task(_submit(http, keys, n, prefix, due, step.calls))
                submissions.add(task)
                task.add_done_callback(submissions.discard)
                step.arrivals += 1
                n += 1
            await asyncio.sleep(max(0.0, started + step.seconds - time.monotonic()))
            step.elapsed = time.monotonic() - started
            step.completed = await count("'COMPLETED'") - done_before
            print(f"[load-curve] {step.phase} {step.offered_per_s:g}/s: {step.completed} completed", flush=True)
            if settler.done():
                raise RuntimeError(f"the settlement agent stopped: {settler.exception()!r}")
        await asyncio.gather(*submissions)
        # Drain: every payment of the run settles (or is counted as unfinished).
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline:
            if await count("'COMPLETED', 'REJECTED', 'EXPIRED'") >= n:
                break
            await asyncio.sleep(0.5)
        stop.set()
        await settler
        accounting = {
            "submitted": n,
            "completed": await count("'COMPLETED'"),
            "rejected_or_expired": await count("'REJECTED', 'EXPIRED'"),
            "agent_failures": len(agent_failures),
        }
        accounting["unfinished"] = n - accounting["completed"] - accounting["rejected_or_expired"]
    await engine.dispose()
    shutil.rmtree(run_dir, ignore_errors=True)
    return [summarise(s) for s in steps], accounting


def draw(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: write the file
    import matplotlib.pyplot as plt

    steps = result["steps"]
    x = range(len(steps))
    labels = [f"{s['phase']}\n{s['offered_per_s']:g}/s" for s in steps]
    fig, rate_axis = plt.subplots(figsize=(10, 5.5))
    rate_axis.plot(x, [s["offered_per_s"] for s in steps], "o--", color="grey", label="offered/s")
    rate_axis.plot(x, [s["completed_per_s"] for s in steps], "o-", color="tab:blue", label="completed/s")
    rate_axis.set_ylabel("payments per second")
    rate_axis.set_ylim(bottom=0)
    rate_axis.set_xticks(list(x), labels, fontsize=8)
    latency_axis = rate_axis.twinx()
    for key, style in (("p50_ms", "tab:green"), ("p95_ms", "tab:orange"), ("p99_ms", "tab:red")):
        latency_axis.plot(x, [s[key] for s in steps], "s:", color=style, label=key.replace("_ms", " ms"))
    latency_axis.axhline(KNEE_P95_MS, color="tab:orange", linewidth=0.8, alpha=0.6, label="p95 limit (500 ms)")
    latency_axis.set_ylabel("API latency, ms")
    latency_axis.set_yscale("log")
    if result["knee_per_s"] is not None:
        at = max(
            i for i, s in enumerate(steps) if s["offered_per_s"] == result["knee_per_s"] and s["phase"] != "cool-down"
        )
        rate_axis.axvline(at, color="black", linewidth=1)
        rate_axis.annotate(f"knee {result['knee_per_s']:g}/s", (at, result["knee_per_s"]), xytext=(5, 10),
                           textcoords="offset points")  # fmt: skip
    handles = rate_axis.get_legend_handles_labels()[0] + latency_axis.get_legend_handles_labels()[0]
    rate_axis.legend(handles=handles, loc="upper left", fontsize=8)
    fig.suptitle("DelTran load curve (make load-curve): open-loop arrivals, gross JSON payments")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(partial, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default=os.environ.get("LOAD_CURVE_STEPS", "4,8,12,16,20,24,28"))
    parser.add_argument("--step-seconds", type=float, default=float(os.environ.get("LOAD_CURVE_STEP_SECONDS", "20")))
    parser.add_argument("--drain-seconds", type=float, default=float(os.environ.get("LOAD_CURVE_DRAIN_SECONDS", "60")))
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--api-url", default=None)
    args = parser.parse_args(argv)
    rates = [float(r) for r in args.steps.split(",") if r.strip()]
    if not rates or any(r <= 0 for r in rates) or args.step_seconds <= 0:
        parser.error("--steps needs positive rates and --step-seconds a positive duration")
    settings = Settings()
    api_url = args.api_url or f"http://{settings.api_host}:{settings.api_port}"
    steps, accounting = asyncio.run(run(settings, plan(rates, args.step_seconds), api_url, args.drain_seconds))
    result = {"steps": steps, "knee_per_s": knee(steps), "accounting": accounting}
    _write(args.results, result)
    draw(result, args.results.with_suffix(".png"))
    print("\nphase     | offered/s | completed/s | p50 ms | p95 ms | p99 ms | error rate")
    print("----------+-----------+-------------+--------+--------+--------+-----------")
    for s in steps:
        print(
            f"{s['phase']:<9} | {s['offered_per_s']:>9g} | {s['completed_per_s']:>11.1f} | {s['p50_ms']:>6.0f} | "
            f"{s['p95_ms']:>6.0f} | {s['p99_ms']:>6.0f} | {s['error_rate']:>10.2%}"
        )
    knee_text = (
        "none (no step kept p95 < 500 ms without errors)"
        if result["knee_per_s"] is None
        else f"{result['knee_per_s']:g}/s"
    )
    print(f"\nknee: {knee_text}")
    acc = accounting
    print(
        f"accounting: {acc['submitted']} submitted = {acc['completed']} completed + {acc['rejected_or_expired']}"
        f" rejected or expired + {acc['unfinished']} unfinished after the drain;"
        f" {acc['agent_failures']} failed agent ticks"
    )
    print(f"Wrote {args.results} and {args.results.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
