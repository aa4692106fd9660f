"""`make chaos`: payments under injected faults, then independent checks.

Starts its own stack in a temporary DELTRAN_HOME on free loopback ports (durable
PostgreSQL, a Temporal dev server with a db file so it survives its restart, the worker
and the API as child processes), then drives CHAOS_PAYMENTS payments over HTTP:
gross (urgent) in AED/USD, net in EUR/INR, a few with a sanctioned party, some submitted
several times concurrently. A settlement-agent task books each gross payment's camt.054
once it is AWAITING_SETTLEMENT (some posted twice, some twice concurrently) and funds the
net windows' instructions; every client retries 503/429/connection errors (bounded).

Meanwhile a timeline of faults: the worker SIGKILLed CHAOS_WORKER_KILLS times (and
restarted), the Temporal server stopped and started once, PostgreSQL once.

After a bounded drain, bench/chaos_invariants.py checks with plain SQL and the Temporal
visibility API. Output: a report on stdout and `chaos.json` in the results folder (bench/common.py `results_path`)
{"payments", "completed", "rejected", "in_flight", "lost", "duplicate_workflows",
 "duplicate_tokens", "invariant_violations", "faults"} (details beside it in
`chaos-details.json`). Exit code 0 when nothing is lost or duplicated and no invariant
is violated.

Settings: CHAOS_PAYMENTS (1000), CHAOS_WORKER_KILLS (3), CHAOS_SERVER_RESTARTS (1; 0 skips
the Temporal and PostgreSQL restarts, as the suite's small run does), CHAOS_LOAD_SECONDS (pace of the
submissions; default max(60, payments / 8)), CHAOS_DRAIN_SECONDS (90), CHAOS_STICKY_TIMEOUT_S
(2: how soon a killed worker's workflows move on), CHAOS_WORKFLOW_TASK_TIMEOUT_S (5: how
soon a step a killed worker was running runs again), CHAOS_SEED,
CHAOS_KEEP_HOME=1 keeps the temporary state directory.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from datetime import date
from decimal import Decimal
from pathlib import Path

import httpx

from bench.common import results_path
from bench.stack import Stack

# CHAOS_RESULTS moves the report (the suite's small run writes to a temporary file).
RESULTS = Path(os.environ["CHAOS_RESULTS"]) if os.environ.get("CHAOS_RESULTS") else results_path("chaos")
KEYS = (
    "payments",
    "completed",
    "rejected",
    "in_flight",
    "lost",
    "duplicate_workflows",
    "duplicate_tokens",
    "invariant_violations",
    "faults",
)
GROSS_CURRENCIES = ("AED", "USD")
NET_CURRENCIES = ("EUR", "INR")
SANCTIONED_NAME = "Viktor Blacklistov"
RETRY_STATUSES = {429, 500, 502, 503, 504}
REQUEST_BUDGET_S = 90.0  # one request retried at most this long


def log(msg: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# The chaos run's timeouts: short, so killed processes' work moves on within the run.
CHAOS_ENV = {
    "DELTRAN_CLEARING_INTERVAL_S": os.environ.get("CHAOS_CLEARING_INTERVAL_S", "10"),
    "DELTRAN_WINDOW_FUNDING_TIMEOUT_S": os.environ.get("CHAOS_FUNDING_TIMEOUT_S", "20"),
    "DELTRAN_ACTIVITY_TIMEOUT_S": os.environ.get("CHAOS_ACTIVITY_TIMEOUT_S", "5"),
    # The steps run inside workflow tasks: a killed worker's step runs again after this.
    "DELTRAN_WORKFLOW_TASK_TIMEOUT_S": os.environ.get("CHAOS_WORKFLOW_TASK_TIMEOUT_S", "5"),
    # A killed worker's workflows move to the restarted one after this (SDK default 10 s).
    "DELTRAN_WORKER_STICKY_TIMEOUT_S": os.environ.get("CHAOS_STICKY_TIMEOUT_S", "2"),
    "DELTRAN_RECONCILIATION_INTERVAL_S": "30",
}


# -- payments ---------------------------------------------------------------------------------


def _plan(n: int, rng: random.Random, prefix: str):
    from bench.chaos_invariants import Submitted
    from cli.demo import DEMO_BICS

    plan = []
    for i in range(n):
        payer, payee = rng.sample(DEMO_BICS, 2)
        gross = i % 2 == 0
        currency = rng.choice(GROSS_CURRENCIES if gross else NET_CURRENCIES)
        sanctioned = rng.random() < 0.03
        copies = 3 if rng.random() < 0.05 else 1
        amount = f"{rng.randint(100, 50000)}.00"
        plan.append(
            Submitted(
                e2e=f"{prefix}{i:05d}",
                bic=payer,
                currency=currency,
                amount=amount,
                gross=gross,
                sanctioned=sanctioned,
                copies=copies,
            )
        )
        plan[-1].payee = payee  # type: ignore[attr-defined]
    return plan


class Driver:
    def __init__(self, stack: Stack, keys: dict, rng: random.Random, prefix: str, t0: float):
        self.stack, self.keys, self.rng, self.prefix, self.t0 = stack, keys, rng, prefix, t0
        self.submitted: dict = {}
        self.acked: list = []
        self.camt_stats = {
            "messages_posted": 0,
            "posted_twice": 0,
            "posted_concurrently": 0,
            "retries": 0,
            "given_up": 0,
            "unmatched_entries": 0,
        }
        self.booked_e2e: set[str] = set()
        self.funded_refs: set[str] = set()
        self.stop_agent = asyncio.Event()
        self.submit_errors = 0

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 2)

    async def request(self, http: httpx.AsyncClient, method: str, path: str, **kw) -> tuple[int, httpx.Response | None]:
        """Retried on 503/429/5xx and connection errors, with backoff, for REQUEST_BUDGET_S."""
        deadline = time.monotonic() + REQUEST_BUDGET_S
        delay = 0.2
        while True:
            try:
                r = await http.request(method, path, **kw)
                if r.status_code not in RETRY_STATUSES:
                    return r.status_code, r
                code = r.status_code
                wait = min(float(r.headers.get("retry-after", delay) or delay), 3.0)
            except httpx.HTTPError:
                code, r, wait = 0, None, delay
            if time.monotonic() + wait > deadline:
                return code, r
            await asyncio.sleep(wait + self.rng.random() * 0.2)
            delay = min(delay * 2, 3.0)

    # -- banks --------------------------------------------------------------------------------

    async def submit_one(self, http: httpx.AsyncClient, s) -> None:
        from cli.demo import party

        debtor = party(s.bic, "Al Noor Trading LLC")
        creditor = party(s.payee, SANCTIONED_NAME if s.sanctioned else "Ganesh Textiles Pvt Ltd")
        body = {
            "end_to_end_id": s.e2e,
            "amount": s.amount,
            "currency": s.currency,
            "debtor": debtor,
            "creditor": creditor,
            "remittance_info": "chaos",
            "urgent": s.gross,
        }
        headers = {"Authorization": f"Bearer {self.keys['banks'][s.bic]}"}

        async def once():
            code, r = await self.request(http, "POST", "/v1/payments", json=body, headers=headers)
            s.answers.append(code)
            if code == 202 and r is not None:
                s.payment_ids.add(r.json()["payment_id"])
            elif code != 202:
                self.submit_errors += 1

        await asyncio.gather(*(once() for _ in range(s.copies)))

    async def banks(self, http: httpx.AsyncClient, plan: list, load_s: float) -> None:
        sem = asyncio.Semaphore(32)
        interval = load_s / max(len(plan), 1)

        async def run(s):
            async with sem:
                await self.submit_one(http, s)

        tasks = []
        start = time.monotonic()
        for i, s in enumerate(plan):
            self.submitted[s.e2e] = s
            tasks.append(asyncio.create_task(run(s)))
            pause = start + (i + 1) * interval - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
        await asyncio.gather(*tasks)

    # -- settlement agent ---------------------------------------------------------------------

    async def post_camt(self, http: httpx.AsyncClient, bookings: list[tuple[str, str, str]], tag: str) -> None:
        """One camt.054 for bookings [(e2e, amount, currency)] of one currency; sometimes
        posted twice in a row, sometimes twice concurrently; re-posted on 503."""
        from bench.chaos_invariants import AckedEntry
        from deltran.iso20022.camt054 import BookingSpec, build_camt054

        message_id = f"{tag}{uuid.uuid4().hex[:20]}"
        body = build_camt054(
            [
                BookingSpec(
                    end_to_end_id=e2e,
                    amount=Decimal(amount),
                    currency=cur,
                    entry_reference=f"CE{uuid.uuid4().hex[:24]}",
                    bank_reference=f"CB{uuid.uuid4().hex[:24]}",
                    booking_date=date.today(),
                )
                for e2e, amount, cur in bookings
            ],
            message_id=message_id,
        )
        headers = {"Authorization": f"Bearer {self.keys['settlement_agent']}", "Content-Type": "application/xml"}

        async def post_once():
            self.camt_stats["messages_posted"] += 1
            code, r = await self.request(http, "POST", "/v1/notifications/camt054", content=body, headers=headers)
            if code == 200 and r is not None:
                for e in r.json()["entries"]:
                    self.acked.append(
                        AckedEntry(message_id, e["entry_reference"], e.get("end_to_end_id") or "", e["outcome"])
                    )
                    if not e["matched"]:
                        self.camt_stats["unmatched_entries"] += 1
                return True
            self.camt_stats["given_up"] += 1
            return False

        roll = self.rng.random()
        if roll < 0.15:
            self.camt_stats["posted_concurrently"] += 1
            ok = any(await asyncio.gather(post_once(), post_once()))
        elif roll < 0.30:
            self.camt_stats["posted_twice"] += 1
            ok = await post_once()
            ok = await post_once() or ok
        else:
            ok = await post_once()
        if not ok:
            raise RuntimeError("camt.054 not acknowledged")

    async def agent(self, http: httpx.AsyncClient) -> None:
        import asyncpg

        from bench.chaos_invariants import plain_dsn

        dsn = plain_dsn(self.stack.settings.effective_database_url)
        agent_headers = {"Authorization": f"Bearer {self.keys['settlement_agent']}"}
        last_windows = 0.0
        pending: set[asyncio.Task] = set()
        while not self.stop_agent.is_set():
            try:
                conn = await asyncpg.connect(dsn, timeout=3)
                try:
                    rows = await conn.fetch(
                        "SELECT p.end_to_end_id, p.amount::text AS amount, p.currency FROM payments p"
                        " JOIN obligations o ON o.payment_id = p.id"
                        " WHERE p.status = 'AWAITING_SETTLEMENT' AND o.settlement_mode = 'GROSS'"
                        " AND p.end_to_end_id LIKE $1",
                        self.prefix + "%",
                    )
                finally:
                    await conn.close()
            except (TimeoutError, OSError, asyncpg.PostgresError):
                rows = []  # PostgreSQL restarting
            due: dict[str, list] = {}
            for r in rows:
                if r["end_to_end_id"] not in self.booked_e2e:
                    self.booked_e2e.add(r["end_to_end_id"])
                    due.setdefault(r["currency"], []).append((r["end_to_end_id"], r["amount"], r["currency"]))
            for group in due.values():
                for i in range(0, len(group), 20):
                    batch = group[i : i + 20]
                    pending.add(asyncio.create_task(self._book(http, batch, "CHG", self.booked_e2e)))
            if time.monotonic() - last_windows >= 1.0:
                last_windows = time.monotonic()
                for cur in NET_CURRENCIES:
                    code, r = await self.request(
                        http, "GET", f"/v1/clearing/windows?currency={cur}&limit=10", headers=agent_headers
                    )
                    if code != 200 or r is None:
                        continue
                    fund = []
                    for w in r.json()["windows"]:
                        if w["status"] != "AWAITING_FUNDING":
                            continue
                        for ins in w["instructions"]:
                            if ins["status"] == "PENDING" and ins["reference"] not in self.funded_refs:
                                self.funded_refs.add(ins["reference"])
                                fund.append((ins["reference"], ins["amount"], cur))
                    if fund:
                        pending.add(asyncio.create_task(self._book(http, fund, "CHF", self.funded_refs)))
            pending = {t for t in pending if not t.done()}
            await asyncio.sleep(0.5)
        if pending:
            await asyncio.wait(pending, timeout=REQUEST_BUDGET_S + 5)

    async def _book(self, http, batch, tag, done_set: set[str]) -> None:
        try:
            await self.post_camt(http, batch, tag)
        except Exception as exc:  # not acknowledged: the next tick books them again
            self.camt_stats["retries"] += 1
            log(f"camt.054 of {len(batch)} entries not acknowledged ({exc!r}); will re-book")
            for e2e, _, _ in batch:
                done_set.discard(e2e)

    # -- progress ----------------------------------------------------------------------------

    async def unfinished(self) -> int | None:
        import asyncpg

        from bench.chaos_invariants import plain_dsn

        try:
            conn = await asyncpg.connect(plain_dsn(self.stack.settings.effective_database_url), timeout=3)
            try:
                return await conn.fetchval(
                    "SELECT count(*) FROM payments WHERE end_to_end_id LIKE $1"
                    " AND status NOT IN ('COMPLETED', 'REJECTED', 'EXPIRED')",
                    self.prefix + "%",
                )
            finally:
                await conn.close()
        except (TimeoutError, OSError, asyncpg.PostgresError):
            return None


# -- faults -----------------------------------------------------------------------------------


class Faults:
    def __init__(self, stack: Stack, t0: float, rng: random.Random):
        self.stack, self.t0, self.rng = stack, t0, rng
        self.log: list[dict] = []
        self.watch_stop = asyncio.Event()
        self._busy = asyncio.Lock()

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 2)

    def record(self, fault: str, at: float, **detail) -> None:
        entry = {"fault": fault, "at_s": at, **detail}
        self.log.append(entry)
        log(f"fault: {entry}")

    def timeline(self, load_s: float, kills: int, server_restarts: bool = True) -> list[tuple[float, str]]:
        events = ["worker_sigkill"] * kills + (["temporal_restart", "postgres_restart"] if server_restarts else [])
        self.rng.shuffle(events)
        # Spread over the load: one random moment in each equal slot, so they never pile up.
        lo, hi = 3.0, max(load_s - 3.0, 4.0)
        slot = (hi - lo) / len(events)
        return [(lo + i * slot + self.rng.uniform(0.1, 0.8) * slot, e) for i, e in enumerate(events)]

    async def run(self, plan: list[tuple[float, str]]) -> None:
        for at, what in plan:
            wait = at - (time.monotonic() - self.t0)
            if wait > 0:
                await asyncio.sleep(wait)
            async with self._busy:
                try:
                    await getattr(self, what)()
                except Exception as exc:
                    self.record(what + "_failed", self.now(), error=repr(exc))

    async def worker_sigkill(self) -> None:
        at = self.now()
        pid = await asyncio.to_thread(self.stack.kill_worker)
        down = self.rng.uniform(0.5, 4.0)
        await asyncio.sleep(down)
        await asyncio.to_thread(self.stack.start_worker)
        self.record("worker_sigkill", at, pid=pid, restarted_at_s=self.now(), new_pid=self.stack.worker.pid)

    async def temporal_restart(self) -> None:
        at = self.now()
        await asyncio.to_thread(self.stack.temporal.stop)
        stopped = self.now()
        await asyncio.sleep(self.rng.uniform(2.0, 5.0))
        await asyncio.to_thread(self.stack.temporal.start)
        self.record("temporal_restart", at, stopped_at_s=stopped, up_at_s=self.now())

    async def postgres_restart(self) -> None:
        at = self.now()
        await asyncio.to_thread(self.stack.postgres.stop)
        stopped = self.now()
        await asyncio.sleep(self.rng.uniform(2.0, 5.0))
        await asyncio.to_thread(self.stack.postgres.start)
        self.record("postgres_restart", at, stopped_at_s=stopped, up_at_s=self.now())

    async def watchdog(self) -> None:
        """A worker or API that dies on its own (not by our SIGKILL) is recorded and restarted."""
        while not self.watch_stop.is_set():
            await asyncio.sleep(1.0)
            if self._busy.locked():
                continue
            for role in ("worker", "api"):
                proc = getattr(self.stack, role)
                if proc is not None and proc.poll() is not None:
                    self.record(f"{role}_exited_by_itself", self.now(), returncode=proc.returncode)
                    try:
                        await asyncio.to_thread(self.stack.start_worker if role == "worker" else self.stack.start_api)
                    except Exception as exc:
                        self.record(f"{role}_restart_failed", self.now(), error=repr(exc))


# -- the run ----------------------------------------------------------------------------------


async def drive(stack: Stack, n: int, kills: int, load_s: float, drain_s: float, rng: random.Random) -> dict:
    from bench.chaos_invariants import check, plain_dsn
    from deltran.temporal.client import connect

    keys = json.loads(stack.settings.credentials_path.read_text())
    prefix = f"CH{uuid.uuid4().hex[:6].upper()}-"
    t0 = time.monotonic()
    driver = Driver(stack, keys, rng, prefix, t0)
    faults = Faults(stack, t0, rng)
    plan = _plan(n, rng, prefix)
    timeline = faults.timeline(load_s, kills, os.environ.get("CHAOS_SERVER_RESTARTS", "1") != "0")
    log(
        f"{n} payments over ~{load_s:.0f}s, prefix {prefix}; faults at "
        + ", ".join(f"{what}@{at:.1f}s" for at, what in timeline)
    )
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=15, limits=limits) as http:
        agent = asyncio.create_task(driver.agent(http))
        watchdog = asyncio.create_task(faults.watchdog())
        fault_task = asyncio.create_task(faults.run(timeline))
        await asyncio.wait_for(driver.banks(http, plan, load_s), timeout=load_s + REQUEST_BUDGET_S * 3 + 60)
        log(f"submissions done at {driver.now()}s")
        await asyncio.wait_for(fault_task, timeout=300)
        load_end = driver.now()
        log(f"faults done at {load_end}s; draining (≤ {drain_s:.0f}s)")
        drain_until = time.monotonic() + drain_s
        left = None
        while time.monotonic() < drain_until:
            left = await driver.unfinished()
            if left == 0:
                break
            await asyncio.sleep(0.5)  # one cheap count: the run ends when the last payment does
        log(f"drain ended at {driver.now()}s with {left} payment(s) not final")
        driver.stop_agent.set()
        await asyncio.wait_for(agent, timeout=REQUEST_BUDGET_S + 30)
        faults.watch_stop.set()
        await watchdog
    client = await connect(stack.settings)
    result = await check(
        plain_dsn(stack.settings.effective_database_url), client, driver.submitted, driver.acked, prefix
    )
    result["faults"] = faults.log
    details = result.pop("_details")
    details.update(
        {
            "prefix": prefix,
            "load_s": load_s,
            "drain_s": drain_s,
            "load_end_s": load_end,
            "total_s": driver.now(),
            "camt054": driver.camt_stats,
            "submit_errors": driver.submit_errors,
            "duplicate_submissions": sum(1 for s in plan if s.copies > 1),
            "sanctioned_submitted": sum(1 for s in plan if s.sanctioned),
            "home": str(stack.home),
            "api_url": stack.api_url,
        }
    )
    return {"result": {k: result[k] for k in KEYS}, "details": details}


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".tmp")
    partial.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(partial, path)


def _print(result: dict, details: dict) -> None:
    print()
    print(
        f"make chaos: {details['attempted']} payments attempted ({details['duplicate_submissions']} submitted "
        f"3× concurrently, {details['sanctioned_submitted']} with a sanctioned party), load {details['load_s']:.0f}s, "
        f"total {details['total_s']:.0f}s"
    )
    print()
    print("payments | completed | rejected | in flight | lost | dup workflows | dup tokens | violations | faults")
    print("---------+-----------+----------+-----------+------+---------------+------------+------------+-------")
    print(
        f"{result['payments']:>8} | {result['completed']:>9} | {result['rejected']:>8} | {result['in_flight']:>9} | "
        f"{result['lost']:>4} | {result['duplicate_workflows']:>13} | {result['duplicate_tokens']:>10} | "
        f"{len(result['invariant_violations']):>10} | {len(result['faults']):>6}"
    )
    print()
    print("faults:")
    for f in result["faults"]:
        print("  " + ", ".join(f"{k}={v}" for k, v in f.items()))
    print(f"camt.054: {details['camt054']}; entries acknowledged {details['camt054_entries_acknowledged']}")
    print(f"supply per currency: {details['supply_per_currency']}")
    print(f"windows: {details['windows_by_status']}")
    if details["not_accepted"]:
        print(f"never accepted (no 202, not in the database): {len(details['not_accepted'])}")
    for p in details["in_flight_payments"][:30]:
        print(f"  in flight  {p['end_to_end_id']}  {p['reason']}")
    if len(details["in_flight_payments"]) > 30:
        print(f"  … {len(details['in_flight_payments']) - 30} more (chaos-details.json)")
    for p in details["lost_payments"]:
        print(f"  LOST       {p['end_to_end_id']}  {p}")
    for v in result["invariant_violations"][:50]:
        print(f"  VIOLATION  {v}")
    if details["matched_entries_not_signalled"]:
        print(f"matched camt.054 entries never signalled: {len(details['matched_entries_not_signalled'])}")


def main() -> int:
    n = int(os.environ.get("CHAOS_PAYMENTS", "1000"))
    kills = int(os.environ.get("CHAOS_WORKER_KILLS", "3"))
    load_s = float(os.environ.get("CHAOS_LOAD_SECONDS", str(max(60.0, n / 8))))
    drain_s = float(os.environ.get("CHAOS_DRAIN_SECONDS", "90"))
    seed = int(os.environ.get("CHAOS_SEED", str(random.randrange(1 << 30))))
    rng = random.Random(seed)
    home = Path(tempfile.mkdtemp(prefix="deltran-chaos-"))
    log(f"state in {home}, seed {seed}")
    stack = Stack(home, CHAOS_ENV)
    code = 1
    try:
        stack.start_servers()
        stack.prepare()
        stack.start_worker()
        stack.start_api()
        log(
            f"stack up: API {stack.api_url}, Temporal {stack.settings.effective_temporal_address}, "
            f"PostgreSQL 127.0.0.1:{stack.pg_port}"
        )
        out = asyncio.run(drive(stack, n, kills, load_s, drain_s, rng))
        result, details = out["result"], out["details"]
        details["seed"] = seed
        _write(RESULTS, result)
        _write(RESULTS.with_name("chaos-details.json"), details)
        _print(result, details)
        print(f"\nWrote {RESULTS} (details in chaos-details.json; logs in {stack.logs})")
        ok = (
            result["lost"] == 0
            and result["duplicate_workflows"] == 0
            and result["duplicate_tokens"] == 0
            and not result["invariant_violations"]
        )
        code = 0 if ok else 1
    finally:
        stack.stop_all(log)
        if os.environ.get("CHAOS_KEEP_HOME") != "1" and code == 0:
            shutil.rmtree(home, ignore_errors=True)
        else:
            log(f"kept {home} for inspection")
    sys.stdout.flush()
    os._exit(code)  # sdk-python #300: skip an interpreter teardown that can abort after the work


if __name__ == "__main__":
    main()
