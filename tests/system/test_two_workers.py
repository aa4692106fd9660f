"""Workers scale out (docs/capacity.md, `--scale worker=N`): a second worker process (the
production entry point, `deltran worker`) on the same task queue takes its share of the
payments, and every payment still completes exactly once — one obligation, one token,
COMPLETED — whichever worker ran which step."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select
from temporalio.api.enums.v1 import EventType

from deltran.db.tables import Obligation, Token
from deltran.ports import free_port
from tests.support.payments import auth, camt054_for, payment_body, wait_for_status
from tests.support.workers import worker_process

# Enough that both workers take tasks even when one is starved of CPU (all of them going
# to one worker at a 25/75 split: 2 x 0.75^24, about one run in 500).
PAYMENTS = 24


async def wait_until_polling(process, metrics_port: int, timeout_s: float = 60) -> None:
    """Until the worker process reports a workflow-task poller (the SDK's
    temporal_num_pollers on its /metrics). The server's DescribeTaskQueue is no use here:
    it lists the pollers of one partition, and with the steps run as local activities a
    worker's poll may sit on another partition for its whole minute-long poll."""
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=2) as http:
        while time.monotonic() < deadline:
            assert process.poll() is None, f"the second worker exited ({process.returncode}) before it polled"
            try:
                text = (await http.get(url)).text
            except httpx.HTTPError:
                text = ""
            for family in text_string_to_metric_families(text):
                if family.name == "temporal_num_pollers" and any(
                    s.labels.get("poller_type") == "workflow_task" and s.value > 0 for s in family.samples
                ):
                    return
            await asyncio.sleep(0.2)
    raise AssertionError(f"the worker with metrics on port {metrics_port} never polled for workflow tasks")


@pytest.mark.slow
async def test_two_workers_share_the_payments_and_each_completes_once(
    http, credentials, sessions, settings, temporal_env, worker
):
    bank = auth(credentials["banks"]["EBILAEAD"])
    agent = {**auth(credentials["settlement_agent"]), "Content-Type": "application/xml"}
    metrics_port = free_port()
    process = await asyncio.to_thread(worker_process, settings, DELTRAN_WORKER_METRICS_PORT=str(metrics_port))
    second = f"{process.pid}@"
    try:
        await wait_until_polling(process, metrics_port)
        e2e_ids = [f"TW-{uuid.uuid4().hex[:12]}-{n}" for n in range(PAYMENTS)]
        accepted = await asyncio.gather(
            *(
                http.post("/v1/payments", json=payment_body(e2e, amount=f"{1000 + n}.00"), headers=bank)
                for n, e2e in enumerate(e2e_ids)
            )
        )
        assert [r.status_code for r in accepted] == [202] * PAYMENTS, [r.text for r in accepted if r.status_code != 202]
        payments = [r.json() for r in accepted]
        await asyncio.gather(*(wait_for_status(http, p["payment_id"], bank, {"AWAITING_SETTLEMENT"}) for p in payments))
        for n, e2e in enumerate(e2e_ids):
            receipt = await http.post(
                "/v1/notifications/camt054",
                headers=agent,
                content=camt054_for(e2e, amount=f"{1000 + n}.00", entry_reference=f"NTRY-{e2e}"),
            )
            assert receipt.status_code == 200 and receipt.json()["entries"][0]["matched"], receipt.text
        await asyncio.gather(*(wait_for_status(http, p["payment_id"], bank, {"COMPLETED"}) for p in payments))

        identities: set[str] = set()
        for p in payments:
            history = await temporal_env.client.get_workflow_handle(p["workflow_id"]).fetch_history()
            identities |= {
                e.workflow_task_started_event_attributes.identity
                for e in history.events
                if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED
            } | {
                e.activity_task_started_event_attributes.identity
                for e in history.events
                if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
            }
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    assert any(i.startswith(second) for i in identities), identities
    assert any(not i.startswith(second) for i in identities), f"the first worker took no task: {identities}"
    ids = [uuid.UUID(p["payment_id"]) for p in payments]
    async with sessions() as session:
        obligations = await session.scalar(
            select(func.count()).select_from(Obligation).where(Obligation.payment_id.in_(ids))
        )
        tokens = await session.scalar(
            select(func.count(func.distinct(Token.payment_id))).where(Token.payment_id.in_(ids))
        )
        all_tokens = await session.scalar(select(func.count()).select_from(Token).where(Token.payment_id.in_(ids)))
    assert obligations == tokens == all_tokens == PAYMENTS
