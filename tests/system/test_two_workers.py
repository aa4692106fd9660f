"""Workers scale out (docs/capacity.md, `--scale worker=N`): a second worker process (the
production entry point, `deltran worker`) on the same task queue takes its share of the
payments, and every payment still completes exactly once — one obligation, one token,
COMPLETED — whichever worker ran which step."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from sqlalchemy import func, select
from temporalio.api.enums.v1 import EventType, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

from deltran.db.tables import Obligation, Token
from tests.support.payments import auth, camt054_for, payment_body, wait_for_status
from tests.support.workers import worker_process

# Enough that both workers take tasks even when one is starved of CPU (all of them going
# to one worker at a 25/75 split: 2 x 0.75^24, about one run in 500).
PAYMENTS = 24


async def wait_until_polling(client, task_queue: str, identity_prefix: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        described = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace,
                task_queue=TaskQueue(name=task_queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
            )
        )
        if any(p.identity.startswith(identity_prefix) for p in described.pollers):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"no worker {identity_prefix}… polls {task_queue}")


@pytest.mark.slow
async def test_two_workers_share_the_payments_and_each_completes_once(
    http, credentials, sessions, settings, temporal_env, worker
):
    bank = auth(credentials["banks"]["EBILAEAD"])
    agent = {**auth(credentials["settlement_agent"]), "Content-Type": "application/xml"}
    process = worker_process(settings)
    second = f"{process.pid}@"
    try:
        await wait_until_polling(temporal_env.client, settings.task_queue, second)
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
        process.wait(timeout=30)

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
