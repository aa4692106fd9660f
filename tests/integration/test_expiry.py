"""An unfunded payment expires at its deadline and releases its obligation: days of
waiting, skipped in seconds by Temporal's time-skipping test server, with the real
activities on the real Postgres."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from sqlalchemy import select

from deltran.db.tables import Obligation, Payment
from deltran.intake.payments import submit_payments
from deltran.vocabulary import ObligationStatus, PaymentStatus
from tests.support.payments import new_payment
from worker.main import build_worker
from workflows.payment import PaymentWorkflow


async def test_unfunded_payment_expires_and_releases_its_obligation(skipping_env, sessions, settings, credentials):
    task_queue = f"expiry-{uuid.uuid4()}"
    settings = settings.model_copy(update={"task_queue": task_queue, "payment_deadline_s": 3 * 24 * 3600})
    new = new_payment(f"EXP-{uuid.uuid4().hex[:16]}", "750.00")
    async with build_worker(skipping_env.client, sessions, settings, task_queue):
        async with sessions() as session:
            [intake] = await submit_payments(session, skipping_env.client, settings, [new], actor="test")
        handle = skipping_env.client.get_workflow_handle_for(PaymentWorkflow.run, intake.workflow_id)
        await _until_awaiting_settlement(sessions, intake.payment_id)
        # Jump past the deadline: three days in well under a second.
        await skipping_env.sleep(timedelta(days=3, minutes=1))
        state = await handle.result()
    assert state.status == PaymentStatus.EXPIRED
    assert state.rejection_code == "AB01"
    async with sessions() as session:
        payment = await session.get(Payment, intake.payment_id)
        obligation = await session.scalar(select(Obligation).where(Obligation.payment_id == intake.payment_id))
    assert payment.status == PaymentStatus.EXPIRED and payment.rejection_code == "AB01"
    assert obligation.status == ObligationStatus.RELEASED and obligation.released_at is not None
    assert obligation.settled_at is None


async def _until_awaiting_settlement(sessions, payment_id) -> None:
    for _ in range(300):
        async with sessions() as session:
            if (await session.get(Payment, payment_id)).status == PaymentStatus.AWAITING_SETTLEMENT:
                return
        await asyncio.sleep(0.05)
    raise AssertionError("the payment never reached AWAITING_SETTLEMENT")
