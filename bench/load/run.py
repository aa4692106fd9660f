"""`make load`: banks submit payments over HTTP for LOAD_SECONDS, a settlement-agent
simulator settles them, and every payment is accounted for afterwards; the same Temporal
server runs a bare workflow of the same shape, in the same run, as the baselines: once
with regular activities, once with local ones.

Phases (one after the other, never at the same time)
    1. Baselines: bench.load.baseline's worker (its own process and task queue) and its
       closed-loop driver: `in_flight` bare cycles at a time (start, signal, result) for
       LOAD_SECONDS, then the drain; first with four regular activities, then with the
       same four as local activities.
    2. DelTran: LOAD_USERS Locust bank users (bench/load/locustfile.py, headless, in a
       subprocess so gevent never meets asyncio) keep at most `in_flight` payments in
       processing for LOAD_SECONDS. Meanwhile this process is the settlement agent: it
       reads which of this run's payments reached AWAITING_SETTLEMENT (one query on the
       database the stack uses, several times a second) and books them, a batch of entries
       per camt.054 (gross); for net payments it funds every PENDING funding instruction of
       the currency's windows (camt.054, EndToEndId = instruction reference). When the load
       stops it asks for the windows to close (admin; LOAD_CLOSE_WINDOWS=0 leaves it to
       the 60 s schedule) so the net payments settle within the drain, and again during
       the drain when a net payment joined a window after that close (it was still in
       compliance then). Then the drain.

Counting, the same for both
    cycle      a workflow/payment started during the LOAD_SECONDS
    completed  a cycle that completed before the drain ends (LOAD_DRAIN_SECONDS after the
               load stops, or earlier once every cycle has completed)
    per_s      completed / (last completion - first start): cycles per second of the run
    DelTran's completion time is the payment's COMPLETED commit (payments.updated_at).

Accounting (DelTran)
    Every attempt is journalled by the bank user before it is sent. Afterwards each one
    is looked up in the database: completed, in flight (listed with its status), rejected
    (listed with its reason), or lost (answered 202 but not in the database: must be 0).
    An attempt without a 202 (an error) that nevertheless exists counts as submitted.

Output: a table on stdout, `load.json` (bench/common.py `results_path`) (written atomically) with exactly
    {"seconds", "submitted_per_s", "completed_per_s", "p50_ms", "p95_ms", "p99_ms",
     "error_rate", "baseline_per_s", "ratio", "baseline_local_per_s", "ratio_local"}
and the accounting beside it (`load-accounting.json`). p50/p95/p99 and the error rate are
over every API call of the run: the banks' submissions and the agent's camt.054 and
clearing-window calls; an agent entry that is not MATCHED counts as an error.

Settings: the stack's own DELTRAN_* (home for the credentials, API port, database URL,
Temporal address), LOAD_SECONDS (30), LOAD_USERS (20), LOAD_IN_FLIGHT (5 per user),
LOAD_NET_SHARE (0.1), LOAD_DRAIN_SECONDS (30), LOAD_CLOSE_WINDOWS (1).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path

import httpx
from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import create_async_engine

from bench.common import results_path
from bench.load.baseline import BareCycleLocalWorkflow, BareCycleWorkflow, DriveResult, drive
from deltran.config import Settings
from deltran.iso20022.camt054 import BookingSpec, build_camt054
from deltran.temporal.client import connect

ROOT = Path(__file__).resolve().parents[2]
RESULTS = results_path("load")
KEYS = (
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
)
TICK_S = 0.1
WINDOW_TICK_S = 1.0
BATCH_MAX = 100  # entries per camt.054
LIST_MAX = 50  # in-flight payments printed


@dataclass
class Config:
    seconds: int = 30
    users: int = 20
    in_flight: int = 100
    net_share: float = 0.1
    drain_s: float = 30.0
    close_windows: bool = True
    baseline: bool = True
    results: Path = RESULTS
    api_url: str | None = None


def _env_config() -> Config:
    users = int(os.environ.get("LOAD_USERS", "20"))
    return Config(
        seconds=int(os.environ.get("LOAD_SECONDS", "30")),
        users=users,
        in_flight=int(os.environ.get("LOAD_IN_FLIGHT", str(5 * users))),
        net_share=float(os.environ.get("LOAD_NET_SHARE", "0.1")),
        drain_s=float(os.environ.get("LOAD_DRAIN_SECONDS", "30")),
        close_windows=os.environ.get("LOAD_CLOSE_WINDOWS", "1") != "0",
    )


def percentile(samples: list[float], q: float) -> float:
    if not samples:
        return 0.0
    if len(samples) == 1:
        return samples[0]
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1]


class Calls:
    """Latency and errors of every API call (the agent's here, the banks' from the journal)."""

    def __init__(self) -> None:
        self.latencies_ms: list[float] = []
        self.by_kind: dict[str, list[float]] = {}
        self.errors = 0
        self.error_kinds: Counter[str] = Counter()

    def record(self, ms: float, error: str | None, kind: str = "POST /v1/payments") -> None:
        self.latencies_ms.append(ms)
        self.by_kind.setdefault(kind, []).append(ms)
        if error:
            self.errors += 1
            self.error_kinds[error] += 1


@dataclass
class Tracked:
    payment_id: str
    e2e: str
    net: bool
    posted: bool = False
    done: bool = False
    parked_at: float = 0.0  # monotonic time it was first seen parked or processing done


@dataclass
class AgentState:
    tracked: dict[str, Tracked] = field(default_factory=dict)
    released: int = 0
    done: int = 0
    funded_refs: set[str] = field(default_factory=set)
    net_seen: bool = False


class SettlementAgent:
    """Books this run's gross payments and funds the windows its net payments are in."""

    def __init__(self, http: httpx.AsyncClient, engine, keys: dict, prefix: str, run_dir: Path, calls: Calls):
        self.http, self.engine, self.keys, self.prefix, self.run_dir, self.calls = (
            http,
            engine,
            keys,
            prefix,
            run_dir,
            calls,
        )
        self.state = AgentState()
        self._last_window_check = 0.0
        self._last_close: float | None = None

    @property
    def agent_headers(self) -> dict:
        return {"Authorization": f"Bearer {self.keys['settlement_agent']}", "Content-Type": "application/xml"}

    async def tick(self) -> None:
        s = self.state
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT p.id::text, p.end_to_end_id, p.amount, p.currency, p.status, o.settlement_mode "
                        "FROM payments p LEFT JOIN obligations o ON o.payment_id = p.id "
                        "WHERE p.status IN ('AWAITING_SETTLEMENT', 'REJECTED', 'EXPIRED')"
                        " AND p.end_to_end_id LIKE :prefix"
                    ),
                    {"prefix": self.prefix + "%"},
                )
            ).all()
            open_ids = [t.payment_id for t in s.tracked.values() if not t.done]
            finished = []
            if open_ids:
                finished = (
                    await conn.execute(
                        text(
                            "SELECT id::text, status FROM payments WHERE id = ANY(CAST(:ids AS uuid[])) "
                            "AND status IN ('COMPLETED', 'REJECTED', 'EXPIRED')"
                        ),
                        {"ids": open_ids},
                    )
                ).all()
        bookings: list[tuple[str, Decimal, str]] = []
        for pid, e2e, amount, currency, status, mode in rows:
            t = s.tracked.get(pid)
            if t is None:
                t = s.tracked[pid] = Tracked(pid, e2e, net=mode == "NET", parked_at=time.monotonic())
                s.released += 1  # processing done for now: completes, rejected, or parked in its window
                s.net_seen |= t.net
            if status == "AWAITING_SETTLEMENT" and not t.net and not t.posted:
                t.posted = True
                bookings.append((e2e, amount, currency))
            elif status in ("REJECTED", "EXPIRED") and not t.done:
                t.done = True
                s.done += 1
        for pid, _status in finished:
            t = s.tracked[pid]
            if not t.done:
                t.done = True
                s.done += 1
        self._write_released()
        for i in range(0, len(bookings), BATCH_MAX):
            await self._book(bookings[i : i + BATCH_MAX])
        if s.net_seen and time.monotonic() - self._last_window_check >= WINDOW_TICK_S:
            self._last_window_check = time.monotonic()
            await self.fund_windows("AED")

    def _write_released(self) -> None:
        partial = self.run_dir / "released.tmp"
        partial.write_text(str(self.state.released))
        os.replace(partial, self.run_dir / "released")

    async def _post(self, path: str, *, content: bytes | None = None, headers: dict, method: str = "POST"):
        kind = f"{method} {path.split('?')[0]}"
        t0 = time.perf_counter()
        try:
            response = await self.http.request(method, path, content=content, headers=headers)
        except httpx.HTTPError as exc:
            self.calls.record((time.perf_counter() - t0) * 1000, type(exc).__name__, kind)
            return None
        ok = response.status_code < 300
        self.calls.record((time.perf_counter() - t0) * 1000, None if ok else f"{kind} {response.status_code}", kind)
        return response if ok else None

    async def _book(self, bookings: list[tuple[str, Decimal, str]]) -> None:
        """One camt.054 with one booked entry per payment (the settlement bank's batch)."""
        by_currency: dict[str, list] = {}
        for b in bookings:
            by_currency.setdefault(b[2], []).append(b)
        for currency, group in by_currency.items():
            body = build_camt054(
                [
                    BookingSpec(
                        end_to_end_id=e2e,
                        amount=amount,
                        currency=currency,
                        entry_reference=f"LE{uuid.uuid4().hex[:24]}",
                        bank_reference=f"LB{uuid.uuid4().hex[:24]}",
                        booking_date=date.today(),
                    )
                    for e2e, amount, _ in group
                ],
                message_id=f"LOAD-{uuid.uuid4().hex[:24]}",
            )
            response = await self._post("/v1/notifications/camt054", content=body, headers=self.agent_headers)
            if response is not None:
                unmatched = [e for e in response.json()["entries"] if not e["matched"]]
                for e in unmatched:
                    self.calls.errors += 1
                    self.calls.error_kinds[f"camt054 entry {e['outcome']}"] += 1

    async def fund_windows(self, currency: str) -> None:
        """Fund every PENDING instruction of the currency's windows awaiting funding."""
        agent = {"Authorization": f"Bearer {self.keys['settlement_agent']}"}
        response = await self._post(f"/v1/clearing/windows?currency={currency}&limit=5", headers=agent, method="GET")
        if response is None:
            return
        due = []
        for window in response.json()["windows"]:
            if window["status"] != "AWAITING_FUNDING":
                continue
            for i in window["instructions"]:
                if i["status"] == "PENDING" and i["reference"] not in self.state.funded_refs:
                    due.append((i["reference"], Decimal(i["amount"]), window["currency"]))
        for ref, _, _ in due:
            self.state.funded_refs.add(ref)
        for i in range(0, len(due), BATCH_MAX):
            await self._book(due[i : i + BATCH_MAX])

    async def close_windows(self, currency: str) -> None:
        admin = {"Authorization": f"Bearer {self.keys['admin']}"}
        self._last_close = time.monotonic()
        await self._post(f"/v1/clearing/windows/close?currency={currency}", headers=admin)

    def parked_since_close(self) -> bool:
        """A net payment of this run joined a window after the last close (it was still in
        compliance then): that window waits for the next close, like the first."""
        if self._last_close is None or time.monotonic() - self._last_close < WINDOW_TICK_S:
            return False
        return any(t.net and not t.done and t.parked_at > self._last_close for t in self.state.tracked.values())


# -- DelTran phase -----------------------------------------------------------------------------


def _read_journal(run_dir: Path) -> tuple[dict[str, dict], list[dict]]:
    attempts: dict[str, dict] = {}
    answers: list[dict] = []
    for path in sorted(run_dir.glob("journal-*.jsonl")):
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            if "s" in record:
                answers.append(record)
                attempts.setdefault(record["e"], {}).update(record)
            else:
                attempts.setdefault(record["e"], {}).update(sent=record["t"], bic=record["b"])
    return attempts, answers


async def run_deltran(cfg: Config, settings: Settings, keys: dict, api_url: str) -> dict:
    run_dir = Path(tempfile.mkdtemp(prefix="deltran-load-"))
    prefix = f"LD{uuid.uuid4().hex[:8].upper()}-"
    (run_dir / "released").write_text("0")
    engine = create_async_engine(settings.effective_database_url, pool_size=2)
    calls = Calls()
    env = {
        **os.environ,
        "LOAD_RUN_DIR": str(run_dir),
        "LOAD_PREFIX": prefix,
        "LOAD_IN_FLIGHT": str(cfg.in_flight),
        "LOAD_NET_SHARE": str(cfg.net_share),
        "LOAD_CREDENTIALS": str(settings.credentials_path),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    locust_log = (run_dir / "locust.log").open("wb")
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(Path(__file__).with_name("locustfile.py")),
        "--headless",
        "-u",
        str(cfg.users),
        "-r",
        str(cfg.users),
        "-t",
        f"{cfg.seconds}s",
        "--stop-timeout",
        "10",
        "-H",
        api_url,
        "--only-summary",
        "--loglevel",
        "WARNING",
        "--exit-code-on-error",
        "0",
    ]
    try:
        async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
            agent = SettlementAgent(http, engine, keys, prefix, run_dir, calls)
            proc = await asyncio.create_subprocess_exec(
                *command, env=env, cwd=ROOT, stdout=locust_log, stderr=locust_log
            )
            # Bounded: Locust stops itself after the run time and the stop timeout.
            hard_stop = time.monotonic() + cfg.seconds + 60
            while proc.returncode is None and time.monotonic() < hard_stop:
                await agent.tick()
                try:
                    await asyncio.wait_for(proc.wait(), timeout=TICK_S)
                except TimeoutError:
                    pass
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            load_stopped = time.time()
            attempts, answers = _read_journal(run_dir)
            accepted = sum(1 for a in answers if a["s"] == 202)
            if agent.state.net_seen and cfg.close_windows:
                await agent.close_windows("AED")
            drain_until = time.monotonic() + cfg.drain_s
            while time.monotonic() < drain_until and agent.state.done < accepted:
                await agent.tick()
                if cfg.close_windows and agent.parked_since_close():
                    await agent.close_windows("AED")
                await asyncio.sleep(TICK_S)
            if agent.state.net_seen:
                await agent.fund_windows("AED")
            drain_end = time.time()
            accounting = await account(engine, attempts, drain_end)
    finally:
        locust_log.close()
        await engine.dispose()
    for a in answers:
        calls.record(a["ms"], None if a["s"] == 202 else f"POST /v1/payments {a['s'] or 'no answer'}")
    sent = [a["sent"] for a in attempts.values() if "sent" in a]
    last_answer = max((a["t"] for a in answers), default=load_stopped)
    span_s = max(last_answer - min(sent), 1e-9) if sent else float(cfg.seconds)
    first = min(sent) if sent else load_stopped
    last_completion = accounting.pop("_last_completion")
    completed = accounting["completed"]
    return {
        "submitted": accounting["submitted"],
        "submitted_per_s": accounting["submitted"] / span_s,
        "completed": completed,
        "completed_per_s": completed / max(last_completion - first, 1e-9) if completed else 0.0,
        "calls": calls,
        "accounting": accounting,
        "load_stopped": load_stopped,
        "run_dir": str(run_dir),
        "prefix": prefix,
    }


async def account(engine, attempts: dict[str, dict], drain_end: float) -> dict:
    """Every attempt looked up in the database: completed / in flight / rejected / lost."""
    e2es = sorted(attempts)
    found: dict[str, tuple] = {}
    async with engine.connect() as conn:
        for i in range(0, len(e2es), 5000):
            rows = (
                await conn.execute(
                    text(
                        "SELECT end_to_end_id, id::text, status, rejection_code, "
                        "extract(epoch FROM updated_at)::float8 FROM payments "
                        "WHERE end_to_end_id IN :e2es"
                    ).bindparams(bindparam("e2es", expanding=True)),
                    {"e2es": e2es[i : i + 5000]},
                )
            ).all()
            for e2e, pid, status, code, updated in rows:
                found[e2e] = (pid, status, code, updated)
    completed = in_flight = rejected = lost = unanswered = late = 0
    in_flight_list, rejected_list, lost_list = [], [], []
    last_completion = 0.0
    for e2e in e2es:
        a = attempts[e2e]
        answered_202 = a.get("s") == 202
        row = found.get(e2e)
        if row is None:
            if answered_202:
                lost += 1
                lost_list.append({"end_to_end_id": e2e, "payment_id": a.get("p")})
            continue  # never accepted: an error, not a payment
        if not answered_202:
            unanswered += 1
        pid, status, code, updated = row
        if status == "COMPLETED" and updated <= drain_end:
            completed += 1
            last_completion = max(last_completion, updated)
        elif status in ("REJECTED", "EXPIRED"):
            rejected += 1
            rejected_list.append({"end_to_end_id": e2e, "payment_id": pid, "status": status, "code": code})
        else:
            if status == "COMPLETED":
                late += 1  # completed after the drain: in flight as far as the run goes
            in_flight += 1
            in_flight_list.append({"end_to_end_id": e2e, "payment_id": pid, "status": status})
    submitted = completed + in_flight + rejected + lost
    return {
        "attempted": len(e2es),
        "submitted": submitted,
        "completed": completed,
        "in_flight": in_flight,
        "rejected": rejected,
        "lost": lost,
        "accepted_without_answer": unanswered,
        "completed_after_drain": late,
        "in_flight_payments": in_flight_list,
        "rejected_payments": rejected_list,
        "lost_payments": lost_list,
        "_last_completion": last_completion,
    }


# -- baseline phase ----------------------------------------------------------------------------


async def run_baseline(cfg: Config, settings: Settings) -> tuple[DriveResult, DriveResult]:
    """The bare cycle with regular activities, then with local ones: one after the other,
    on the same server, each for `seconds` (and its drain)."""
    task_queue = f"bench-bare-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.update(
        {
            "DELTRAN_TEMPORAL_ADDRESS": settings.effective_temporal_address,
            "DELTRAN_TEMPORAL_NAMESPACE": settings.temporal_namespace,
        }
    )
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.load.baseline",
        "--task-queue",
        task_queue,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert worker.stdout is not None
        line = await asyncio.wait_for(worker.stdout.readline(), timeout=30)
        if line.strip() != b"ready":
            raise RuntimeError("the baseline worker did not start")
        client = await connect(settings)
        regular = await drive(client, task_queue, cfg.seconds, cfg.in_flight, cfg.drain_s, BareCycleWorkflow)
        local = await drive(client, task_queue, cfg.seconds, cfg.in_flight, cfg.drain_s, BareCycleLocalWorkflow)
        return regular, local
    finally:
        if worker.returncode is None:
            worker.terminate()
            try:
                await asyncio.wait_for(worker.wait(), timeout=15)
            except TimeoutError:
                worker.kill()
                await worker.wait()


# -- the run -----------------------------------------------------------------------------------


async def run(cfg: Config, settings: Settings) -> dict:
    keys = json.loads(settings.credentials_path.read_text())
    api_url = cfg.api_url or f"http://{settings.api_host}:{settings.api_port}"
    baseline, baseline_local = await run_baseline(cfg, settings) if cfg.baseline else (DriveResult(), DriveResult())
    deltran = await run_deltran(cfg, settings, keys, api_url)
    calls: Calls = deltran["calls"]
    total_calls = len(calls.latencies_ms)
    result = {
        "seconds": cfg.seconds,
        "submitted_per_s": round(deltran["submitted_per_s"], 2),
        "completed_per_s": round(deltran["completed_per_s"], 2),
        "p50_ms": round(percentile(calls.latencies_ms, 50), 1),
        "p95_ms": round(percentile(calls.latencies_ms, 95), 1),
        "p99_ms": round(percentile(calls.latencies_ms, 99), 1),
        "error_rate": round(calls.errors / total_calls, 4) if total_calls else 0.0,
        "baseline_per_s": round(baseline.per_s, 2),
        "ratio": round(deltran["completed_per_s"] / baseline.per_s, 3) if baseline.per_s else 0.0,
        "baseline_local_per_s": round(baseline_local.per_s, 2),
        "ratio_local": round(deltran["completed_per_s"] / baseline_local.per_s, 3) if baseline_local.per_s else 0.0,
    }
    assert tuple(result) == KEYS
    details = {
        "result": result,
        "config": {
            "users": cfg.users,
            "in_flight": cfg.in_flight,
            "net_share": cfg.net_share,
            "drain_s": cfg.drain_s,
            "close_windows": cfg.close_windows,
            "api_url": api_url,
            "temporal": settings.effective_temporal_address,
        },
        "api_calls": total_calls,
        "errors": calls.errors,
        "error_kinds": dict(calls.error_kinds),
        # Which calls make the tail: the banks' submissions, or the agent's camt.054 batches.
        "latency_by_call": {
            kind: {
                "calls": len(ms),
                "p50_ms": round(percentile(ms, 50), 1),
                "p95_ms": round(percentile(ms, 95), 1),
                "p99_ms": round(percentile(ms, 99), 1),
                "max_ms": round(max(ms), 1),
            }
            for kind, ms in sorted(calls.by_kind.items())
        },
        "baseline": _drive_details(baseline),
        "baseline_local": _drive_details(baseline_local),
        "accounting": deltran["accounting"],
        "e2e_prefix": deltran["prefix"],
        "run_dir": deltran["run_dir"],
        "result_path": str(cfg.results),
    }
    _write(cfg.results, result)
    _write(cfg.results.with_name(cfg.results.stem + "-accounting.json"), details)
    _print(result, details)
    return details


def _drive_details(drive_result: DriveResult) -> dict:
    return {
        "started": drive_result.started,
        "completed": drive_result.completed,
        "errors": drive_result.errors,
        "in_flight": drive_result.in_flight,
    }


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".tmp")
    partial.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(partial, path)


def _print(result: dict, details: dict) -> None:
    acc = details["accounting"]
    cfg = details["config"]
    print(
        f"\nmake load: {result['seconds']} s, {cfg['users']} bank users, {cfg['in_flight']} in flight, "
        f"net share {cfg['net_share']:.0%}, drain ≤ {cfg['drain_s']:.0f} s"
    )
    print()
    print(
        "submitted/s | completed/s | p50 ms | p95 ms | p99 ms | error rate | baseline/s | ratio"
        " | local baseline/s | ratio local"
    )
    print(
        "------------+-------------+--------+--------+--------+------------+------------+------"
        "+------------------+------------"
    )
    print(
        f"{result['submitted_per_s']:>11.1f} | {result['completed_per_s']:>11.1f} | {result['p50_ms']:>6.0f} | "
        f"{result['p95_ms']:>6.0f} | {result['p99_ms']:>6.0f} | {result['error_rate']:>10.2%} | "
        f"{result['baseline_per_s']:>10.1f} | {result['ratio']:>5.2f} | "
        f"{result['baseline_local_per_s']:>16.1f} | {result['ratio_local']:>11.2f}"
    )
    print()
    print(
        f"accounting: {acc['submitted']} submitted = {acc['completed']} completed + {acc['in_flight']} in flight"
        f" + {acc['rejected']} rejected + {acc['lost']} lost   ({details['api_calls']} API calls, "
        f"{details['errors']} errors{': ' + str(details['error_kinds']) if details['error_kinds'] else ''})"
    )
    for kind, lat in details["latency_by_call"].items():
        print(
            f"  {kind:<34} {lat['calls']:>5} calls  p50 {lat['p50_ms']:>6.0f}  p95 {lat['p95_ms']:>6.0f}"
            f"  p99 {lat['p99_ms']:>6.0f}  max {lat['max_ms']:>6.0f} ms"
        )
    for label, key in (("baseline:  ", "baseline"), ("local:     ", "baseline_local")):
        b = details[key]
        print(f"{label} {b['completed']} of {b['started']} bare cycles completed, {b['errors']} errors")
    for p in acc["in_flight_payments"][:LIST_MAX]:
        print(f"  in flight  {p['end_to_end_id']}  {p['payment_id']}  {p['status']}")
    if acc["in_flight"] > LIST_MAX:
        print(f"  … {acc['in_flight'] - LIST_MAX} more in flight (all listed in the accounting file)")
    for p in acc["rejected_payments"][:LIST_MAX]:
        print(f"  rejected   {p['end_to_end_id']}  {p['payment_id']}  {p['status']} {p['code']}")
    for p in acc["lost_payments"]:
        print(f"  LOST       {p['end_to_end_id']}  {p['payment_id']}")
    path = Path(details["result_path"])
    print(f"\nWrote {path} (and {path.stem}-accounting.json beside it)")


def main(argv: list[str] | None = None) -> int:
    env = _env_config()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=env.seconds)
    parser.add_argument("--users", type=int, default=env.users)
    parser.add_argument("--in-flight", type=int, default=None)
    parser.add_argument("--net-share", type=float, default=env.net_share)
    parser.add_argument("--drain-seconds", type=float, default=env.drain_s)
    parser.add_argument("--no-close-windows", action="store_true", default=not env.close_windows)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--api-url", default=None)
    args = parser.parse_args(argv)
    in_flight = args.in_flight or (env.in_flight if args.users == env.users else 5 * args.users)
    cfg = Config(
        seconds=args.seconds,
        users=args.users,
        in_flight=in_flight,
        net_share=args.net_share,
        drain_s=args.drain_seconds,
        close_windows=not args.no_close_windows,
        baseline=not args.no_baseline,
        results=args.results,
        api_url=args.api_url,
    )
    details = asyncio.run(run(cfg, Settings()))
    sys.stdout.flush()
    # sdk-python #300: skip the interpreter teardown that can abort after the work succeeded.
    os._exit(0 if details["accounting"]["lost"] == 0 else 1)
