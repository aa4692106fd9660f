"""Every activity is idempotent on retry, proven by crashing the worker process at the
worst moments: just before an activity's transaction commits, and after it committed
but before Temporal heard back (deltran/faults.py). A healthy worker then takes over the
retry, and the payment completes with exactly one of everything."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import func, select

from deltran.db.tables import ComplianceResult, LedgerTransfer, Obligation, Payment, Token
from deltran.intake.payments import submit_payments
from tests.support.payments import auth, camt054_for, new_payment, wait_for_status
from tests.support.workers import WorkerProcess, worker_process
from worker.main import build_worker

CRASHES = [
    ("screen_payment", "after_commit"),
    ("create_obligation", "after_commit"),
    ("settle_obligation", "before_commit"),
    ("settle_obligation", "after_commit"),
    ("mint_token", "before_commit"),
    ("mint_token", "after_commit"),
]


def crashing_worker(settings, task_queue: str, point: str, fault_dir) -> WorkerProcess:
    return worker_process(
        settings.model_copy(update={"task_queue": task_queue}),
        DELTRAN_FAULT_CRASH=point,
        DELTRAN_FAULT_DIR=str(fault_dir),
        # The healthy worker takes the dead one's workflows after 1 s, not the default 10.
        DELTRAN_WORKER_STICKY_TIMEOUT_S="1",
    )


@pytest.mark.parametrize("activity,phase", CRASHES, ids=[f"{a}-{p}" for a, p in CRASHES])
async def test_a_crash_at_the_worst_moment_changes_nothing(
    activity, phase, tmp_path, settings, sessions, temporal_env, http, credentials
):
    queue = f"crash-{uuid.uuid4().hex[:8]}"
    crash_settings = settings.model_copy(
        update={"task_queue": queue, "activity_timeout_s": 2, "workflow_task_timeout_s": 2}
    )
    worker = await asyncio.to_thread(crashing_worker, crash_settings, queue, f"{activity}:{phase}", tmp_path)
    e2e = f"CRASH-{uuid.uuid4().hex[:12]}"
    new = new_payment(e2e, "321.00", urgent=True)
    try:
        async with sessions() as session:
            [intake] = await submit_payments(session, temporal_env.client, crash_settings, [new], actor="test")
        bank = auth(credentials["banks"]["EBILAEAD"])

        async def book_fiat() -> None:
            await wait_for_status(http, str(intake.payment_id), bank, {"AWAITING_SETTLEMENT"})
            await http.post(
                "/v1/notifications/camt054",
                content=camt054_for(e2e, "321.00", entry_reference=f"N-{e2e}"),
                headers={**auth(credentials["settlement_agent"]), "Content-Type": "application/xml"},
            )

        late_step = activity in ("settle_obligation", "mint_token")
        if late_step:
            await book_fiat()
        exit_code = await asyncio.to_thread(worker.wait, 60)
        assert exit_code == 137, "the fault did not fire"
        assert (tmp_path / f"{activity}.{phase}").exists()
        async with build_worker(temporal_env.client, sessions, crash_settings, queue):
            if not late_step:
                await book_fiat()
            done = await wait_for_status(http, str(intake.payment_id), bank, {"COMPLETED"}, timeout_s=60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert done["token"]["amount"] == "321.00"
    async with sessions() as session:
        pid = intake.payment_id
        oid = await session.scalar(select(Obligation.id).where(Obligation.payment_id == pid))
        counts = [
            await session.scalar(
                select(func.count()).select_from(ComplianceResult).where(ComplianceResult.payment_id == pid)
            ),
            await session.scalar(select(func.count()).select_from(Obligation).where(Obligation.payment_id == pid)),
            await session.scalar(select(func.count()).select_from(Token).where(Token.payment_id == pid)),
            await session.scalar(
                select(func.count()).select_from(LedgerTransfer).where(LedgerTransfer.obligation_id == oid)
            ),
        ]
        status = await session.scalar(select(Payment.status).where(Payment.id == pid))
    assert counts == [1, 1, 1, 1] and status == "COMPLETED"
