"""`make bench-gateway`: accepted payments per second through `POST /v1/payments`, as JSON
and as pacs.008, next to bare workflow starts per second on the same Temporal server.

The stack
    Its own (bench/stack.py): durable PostgreSQL, a Temporal dev server with its SQLite
    file (as `make up` runs it), the demo banks, and the API as a child process, in a
    temporary home on free ports, removed at the end. No worker runs: the gateway alone is
    measured, as the bare starts are (with the stack's worker, it screened the previous
    format's payments during the next measurement, on the same two cores).

What it measures
    For each format, GATEWAY_CONCURRENCY (32) clients post payments back to back for
    GATEWAY_SECONDS (10); `api_per_s` = answers 202 / seconds, counted until the API has
    also started the last accepted payment's workflow (it does so just after the 202: its
    `deltran_workflow_starts_pending` gauge back at 0). A pacs.008 carries one
    CdtTrfTxInf (one payment per message, like the JSON body). Every payment is urgent.

    The baseline, right before each format: the same number of concurrent callers doing
    nothing but `client.start_workflow` of a trivial workflow on a task queue of its own
    (no worker polls it: the start is the whole cost), with the payment's search attributes
    and id policy, for the same seconds. `ratio` = api_per_s / baseline_per_s: how much of
    the bare start rate the gateway keeps (authentication, parsing and validation, the
    payment row and its audit record, the start, the answer).

    CPU per accepted payment (and per bare start), per process: the API, the Temporal
    server, PostgreSQL (with their children) and this process (the HTTP or Temporal
    client), from /proc over each measurement.

What it checks
    After each format: every accepted payment has its row (SCREENING: nothing ran it) and
    its workflow exists in Temporal (the API starts it just after the 202; the
    measurement waits up to STARTED_WITHIN_S for the last starts) — nothing accepted is lost.

Output: a table and gateway.json (bench/common.py `results_path`) =
    {"json": {"api_per_s", "baseline_per_s", "ratio", "accepted", "errors",
    "baseline_errors", "cpu_ms_per_payment": {"api", "temporal", "postgres", "bench"},
    "baseline_cpu_ms_per_start": {...}}, "pacs008": {...}}
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
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import httpx
from sqlalchemy import text
from temporalio import workflow
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from bench.common import logger, postmaster_pid, print_table, process_tree_cpu_s, write_json
from bench.stack import Stack
from cli.demo import DEMO_BICS, IBANS, party
from deltran.config import Settings
from deltran.db.engine import make_engine
from deltran.iso20022.pacs008 import Pacs008Spec, build_pacs008
from deltran.shared import PaymentInput
from deltran.temporal.client import connect
from deltran.temporal.search_attributes import initial_search_attributes

log = logger("bench-gateway")
SECONDS = float(os.environ.get("GATEWAY_SECONDS", "10"))
CONCURRENCY = int(os.environ.get("GATEWAY_CONCURRENCY", "32"))


@workflow.defn(name="BareStartWorkflow")
class BareStartWorkflow:
    """Never runs: no worker polls its task queue."""

    @workflow.run
    async def run(self, data: PaymentInput) -> None:  # pragma: no cover
        await workflow.sleep(timedelta(seconds=1))


def _json_body(e2e: str, bic: str, payee: str) -> tuple[bytes, str]:
    body = {
        "end_to_end_id": e2e,
        "amount": f"{random.randint(100, 99999)}.00",
        "currency": "AED",
        "debtor": party(bic, "Gateway Bench Debtor LLC"),
        "creditor": party(payee, "Gateway Bench Creditor Ltd"),
        "remittance_info": "gateway bench",
        "urgent": True,
    }
    return json.dumps(body).encode(), "application/json"


def _pacs008_body(e2e: str, bic: str, payee: str) -> tuple[bytes, str]:
    def account(b: str) -> dict:
        return {"iban": IBANS[b]} if b in IBANS else {"account": "30001234567"}

    debtor, creditor = account(bic), account(payee)
    spec = Pacs008Spec(
        end_to_end_id=e2e,
        amount=Decimal(f"{random.randint(100, 99999)}.00"),
        currency="AED",
        debtor_name="Gateway Bench Debtor LLC",
        debtor_agent_bic=bic,
        creditor_name="Gateway Bench Creditor Ltd",
        creditor_agent_bic=payee,
        debtor_iban=debtor.get("iban"),
        debtor_account=debtor.get("account"),
        creditor_iban=creditor.get("iban"),
        creditor_account=creditor.get("account"),
        remittance_info="gateway bench",
        urgent=True,
    )
    return build_pacs008(
        [spec], message_id=f"M{e2e}"[:35], instructing_agent_bic=bic, with_app_header=True
    ), "application/xml"


BUILDERS = {"json": _json_body, "pacs008": _pacs008_body}


@dataclass
class Cpu:
    """CPU seconds so far of each process of the run (servers with their children)."""

    stack: Stack

    def now(self) -> dict[str, float]:
        assert self.stack.api and self.stack.temporal and self.stack.postgres
        temporal = self.stack.temporal.pid
        assert temporal is not None
        return {
            "api": process_tree_cpu_s(self.stack.api.pid),
            "temporal": process_tree_cpu_s(temporal),
            "postgres": process_tree_cpu_s(postmaster_pid(self.stack.postgres)),
            "bench": time.process_time(),
        }

    @staticmethod
    def spent(before: dict[str, float], after: dict[str, float], count: int) -> dict[str, float]:
        """ms of CPU per item, per process."""
        return {k: round((after[k] - before[k]) * 1000 / max(count, 1), 2) for k in after}


STARTED_WITHIN_S = 10.0


async def api_rate(
    base_url: str, keys: dict, fmt: str, seconds: float, concurrency: int
) -> tuple[float, int, list[str]]:
    """(accepted/s, errors, the accepted payments' EndToEndIds)."""
    prefix = f"GW{uuid.uuid4().hex[:6].upper()}-"
    build = BUILDERS[fmt]
    errors = 0
    accepted: list[str] = []
    counter = iter(range(10**9))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as http:
        stop_at = time.monotonic() + seconds
        started = time.monotonic()

        async def caller(n: int) -> None:
            nonlocal errors
            bic, payee = DEMO_BICS[n % len(DEMO_BICS)], DEMO_BICS[(n + 1) % len(DEMO_BICS)]
            headers = {"Authorization": f"Bearer {keys['banks'][bic]}"}
            while time.monotonic() < stop_at:
                e2e = f"{prefix}{next(counter)}"
                body, content_type = build(e2e, bic, payee)
                try:
                    r = await http.post("/v1/payments", content=body, headers={**headers, "Content-Type": content_type})
                    if r.status_code == 202:
                        accepted.append(e2e)
                    else:
                        errors += 1
                except httpx.HTTPError:
                    errors += 1

        await asyncio.gather(*(caller(n) for n in range(concurrency)))
        # The API starts each workflow just after its 202: the rate counts until the last
        # of those starts is made, so a backlog left at the end is not counted as done.
        drain_until = time.monotonic() + STARTED_WITHIN_S
        while time.monotonic() < drain_until:
            if not await _starts_pending(http):
                break
            await asyncio.sleep(0.05)
        elapsed = time.monotonic() - started
    return len(accepted) / elapsed, errors, accepted


async def _starts_pending(http: httpx.AsyncClient) -> float:
    """The API's `deltran_workflow_starts_pending` gauge."""
    for line in (await http.get("/metrics")).text.splitlines():
        if line.startswith("deltran_workflow_starts_pending "):
            return float(line.split()[1])
    raise AssertionError("the API exposes no deltran_workflow_starts_pending")


async def start_rate(client, seconds: float, concurrency: int) -> tuple[float, int, int]:
    """(bare starts/s, errors, starts)."""
    task_queue = f"bench-bare-start-{uuid.uuid4().hex[:8]}"
    run = uuid.uuid4().hex[:8]
    started_n = errors = 0
    counter = iter(range(10**9))
    stop_at = time.monotonic() + seconds
    t0 = time.monotonic()

    async def caller() -> None:
        nonlocal started_n, errors
        while time.monotonic() < stop_at:
            n = next(counter)
            data = PaymentInput(
                payment_id=uuid.uuid4(),
                end_to_end_id=f"BS-{run}-{n}",
                amount=Decimal("1000.00"),
                currency="AED",
                debtor_agent_bic="EBILAEAD",
                creditor_agent_bic="SBININBB",
                deadline_s=3600,
            )
            try:
                await client.start_workflow(
                    BareStartWorkflow.run,
                    data,
                    id=f"bare-start-{run}-{n}",
                    task_queue=task_queue,
                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    search_attributes=initial_search_attributes(data),
                    # Never polled; the run's server goes away with the run.
                    execution_timeout=timedelta(hours=1),
                )
                started_n += 1
            except Exception:  # noqa: BLE001 - counted
                errors += 1

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return started_n / (time.monotonic() - t0), errors, started_n


_ROWS = text(
    "SELECT end_to_end_id, workflow_id FROM payments"
    " WHERE end_to_end_id = ANY(CAST(:ids AS varchar[])) AND status = 'SCREENING'"
)


async def verify(settings: Settings, client, accepted: list[str]) -> None:
    """Every accepted payment has its row and its workflow (nothing accepted is lost), and
    nothing ran them: no worker polls."""
    engine = make_engine(settings.effective_database_url, pool_size=2)
    try:
        async with engine.connect() as conn:
            rows = dict((await conn.execute(_ROWS, {"ids": accepted})).all())
    finally:
        await engine.dispose()
    missing = set(accepted) - set(rows)
    assert not missing, f"{len(missing)} accepted payments without a row, e.g. {sorted(missing)[:3]}"
    workflow_ids = iter(rows.values())

    # api_rate waited for the API's starts (deltran_workflow_starts_pending back at 0):
    # a workflow not found now was never started, and is lost.
    async def describer() -> None:
        for workflow_id in workflow_ids:
            await client.get_workflow_handle(workflow_id).describe()  # raises if it does not exist

    await asyncio.gather(*(describer() for _ in range(16)))


async def measure(stack: Stack) -> dict:
    settings = stack.settings
    keys = json.loads(settings.credentials_path.read_text())
    client = await connect(settings)
    cpu = Cpu(stack)
    results: dict = {}
    for fmt in ("json", "pacs008"):
        log(f"{fmt}: bare starts, {CONCURRENCY} callers, {SECONDS:g} s")
        before = cpu.now()
        baseline, baseline_errors, starts = await start_rate(client, SECONDS, CONCURRENCY)
        baseline_cpu = Cpu.spent(before, cpu.now(), starts)
        log(f"{fmt}: the API, {CONCURRENCY} callers, {SECONDS:g} s")
        before = cpu.now()
        api, api_errors, accepted = await api_rate(stack.api_url, keys, fmt, SECONDS, CONCURRENCY)
        api_cpu = Cpu.spent(before, cpu.now(), len(accepted))
        await verify(settings, client, accepted)
        log(f"{fmt}: verified: every one of {len(accepted):,} accepted payments has its row and its workflow")
        results[fmt] = {
            "api_per_s": round(api, 1),
            "baseline_per_s": round(baseline, 1),
            "ratio": round(api / baseline, 3) if baseline else 0.0,
            "accepted": len(accepted),
            "errors": api_errors,
            "baseline_errors": baseline_errors,
            "cpu_ms_per_payment": api_cpu,
            "baseline_cpu_ms_per_start": baseline_cpu,
        }
        if api_errors or baseline_errors:
            print(f"{fmt}: {api_errors} API errors, {baseline_errors} start errors", file=sys.stderr)
    return results


def print_results(results: dict) -> None:
    print(f"\nmake bench-gateway: {SECONDS:g} s per measurement, {CONCURRENCY} concurrent callers")
    rows = []
    for fmt, r in results.items():
        api_cpu, bare_cpu = r["cpu_ms_per_payment"], r["baseline_cpu_ms_per_start"]
        rows.append(
            (
                fmt,
                f"{r['api_per_s']:.1f}",
                f"{r['baseline_per_s']:.1f}",
                f"{r['ratio']:.2f}",
                f"{sum(api_cpu.values()):.1f} ({api_cpu['api']:.1f} API)",
                f"{sum(bare_cpu.values()):.1f}",
            )
        )
    print_table(
        ("format", "api payments/s", "bare starts/s", "ratio", "ms CPU per payment", "ms CPU per start"),
        rows,
        label_first=True,
    )


def main() -> int:
    started = time.perf_counter()
    home = Path(tempfile.mkdtemp(prefix="deltran-bench-gateway-"))
    stack = Stack(home)
    try:
        log(f"starting PostgreSQL and Temporal in {home}")
        stack.start_servers()
        stack.prepare(schedules=False)
        stack.start_api()  # and no worker: the gateway alone, like the bare starts
        results = asyncio.run(measure(stack))
    finally:
        log("stopping")
        stack.stop_all(log)
        shutil.rmtree(home, ignore_errors=True)
    print_results(results)
    path = write_json("gateway", results)
    print(f"Wrote {path} in {time.perf_counter() - started:.0f}s total.")
    sys.stdout.flush()
    os._exit(0)  # sdk-python #300: skip the interpreter teardown that can abort after success


if __name__ == "__main__":
    sys.exit(main())
