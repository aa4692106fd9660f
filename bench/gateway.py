"""`make bench-gateway`: accepted payments per second through `POST /v1/payments`, as JSON
and as pacs.008, next to bare workflow starts per second on the same Temporal server.

What it measures
    For each format, GATEWAY_CONCURRENCY (32) clients post payments back to back for
    GATEWAY_SECONDS (10) against the stack `make up` started (found through the same
    DELTRAN_* settings); `api_per_s` = answers 202 / seconds. A pacs.008 carries one
    CdtTrfTxInf (one payment per message, like the JSON body). Every payment is urgent
    (gross) and stays AWAITING_SETTLEMENT afterwards (nobody books it; its deadline expires
    it): they never reach a clearing window. Their EndToEndIds start with `GW`.

    The baseline, right before each format: the same number of concurrent callers doing
    nothing but `client.start_workflow` of a trivial workflow on a task queue of its own
    (no worker polls it: the start is the whole cost), with the payment's search attributes
    and id policy, for the same seconds. `ratio` = api_per_s / baseline_per_s: how much of
    the bare start rate the gateway keeps (authentication, parsing and validation, the
    payment row, the start, the answer).

    The stack's worker screens the accepted payments while the gateway runs (as it would
    in production): that competes for the same Temporal server; the baseline has no such
    competition. Run it on a quiet stack (not during `make load`).

Output: a table and gateway.json (bench/common.py `results_path`) =
    {"json": {"api_per_s", "baseline_per_s", "ratio"}, "pacs008": {...}}
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
import uuid
from datetime import timedelta
from decimal import Decimal

import httpx
from temporalio import workflow
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from bench.common import results_path
from cli.demo import DEMO_BICS, IBANS, party
from deltran.config import Settings
from deltran.iso20022.pacs008 import Pacs008Spec, build_pacs008
from deltran.shared import PaymentInput
from deltran.temporal.client import connect
from deltran.temporal.search_attributes import initial_search_attributes

RESULTS = results_path("gateway")
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


async def api_rate(base_url: str, keys: dict, fmt: str, seconds: float, concurrency: int) -> tuple[float, int]:
    prefix = f"GW{uuid.uuid4().hex[:6].upper()}-"
    build = BUILDERS[fmt]
    accepted = errors = 0
    counter = iter(range(10**9))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as http:
        stop_at = time.monotonic() + seconds
        started = time.monotonic()

        async def caller(n: int) -> None:
            nonlocal accepted, errors
            bic, payee = DEMO_BICS[n % len(DEMO_BICS)], DEMO_BICS[(n + 1) % len(DEMO_BICS)]
            headers = {"Authorization": f"Bearer {keys['banks'][bic]}"}
            while time.monotonic() < stop_at:
                body, content_type = build(f"{prefix}{next(counter)}", bic, payee)
                try:
                    r = await http.post("/v1/payments", content=body, headers={**headers, "Content-Type": content_type})
                    if r.status_code == 202:
                        accepted += 1
                    else:
                        errors += 1
                except httpx.HTTPError:
                    errors += 1

        await asyncio.gather(*(caller(n) for n in range(concurrency)))
        elapsed = time.monotonic() - started
    return accepted / elapsed, errors


async def start_rate(client, seconds: float, concurrency: int) -> tuple[float, int]:
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
                    # Never polled: let the server drop them soon.
                    execution_timeout=timedelta(seconds=60),
                )
                started_n += 1
            except Exception:  # noqa: BLE001 - counted
                errors += 1

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return started_n / (time.monotonic() - t0), errors


async def run(settings: Settings) -> dict:
    keys = json.loads(settings.credentials_path.read_text())
    base_url = f"http://{settings.api_host}:{settings.api_port}"
    client = await connect(settings)
    results: dict = {}
    for fmt in ("json", "pacs008"):
        baseline, baseline_errors = await start_rate(client, SECONDS, CONCURRENCY)
        api, api_errors = await api_rate(base_url, keys, fmt, SECONDS, CONCURRENCY)
        results[fmt] = {
            "api_per_s": round(api, 1),
            "baseline_per_s": round(baseline, 1),
            "ratio": round(api / baseline, 3) if baseline else 0.0,
        }
        if api_errors or baseline_errors:
            print(f"{fmt}: {api_errors} API errors, {baseline_errors} start errors", file=sys.stderr)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    partial = RESULTS.with_suffix(".json.tmp")
    partial.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(partial, RESULTS)
    print(f"\nmake bench-gateway: {SECONDS:.0f} s per measurement, {CONCURRENCY} concurrent callers\n")
    print("format  | api payments/s | bare starts/s | ratio")
    print("--------+----------------+---------------+------")
    for fmt, r in results.items():
        print(f"{fmt:<7} | {r['api_per_s']:>14.1f} | {r['baseline_per_s']:>13.1f} | {r['ratio']:>5.2f}")
    print(f"\nWrote {RESULTS}")
    return results


def main() -> int:
    asyncio.run(run(Settings()))
    sys.stdout.flush()
    os._exit(0)  # sdk-python #300: skip the interpreter teardown that can abort after success


if __name__ == "__main__":
    sys.exit(main())
