"""A payment recorded while Temporal was down gets its workflow from the worker's
sweeper, once, even if the bank never resubmits."""
from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from deltran.db.tables import Payment
from deltran.identity import payment_id_for, workflow_id_for
from tests.support.payments import AE_IBAN, auth, wait_for_status
from worker.sweeper import start_orphans


async def test_an_orphaned_payment_gets_exactly_one_workflow(http, credentials, sessions, settings, temporal_env, worker):
    e2e = f"ORPH-{uuid.uuid4().hex[:12]}"
    payment_id, workflow_id = payment_id_for("EBILAEAD", e2e), workflow_id_for("EBILAEAD", e2e)
    async with sessions() as session, session.begin():
        session.add(Payment(
            id=payment_id, instructing_bic="EBILAEAD", end_to_end_id=e2e, fingerprint=hashlib.sha256(e2e.encode()).hexdigest(),
            amount=Decimal("42.00"), currency="AED", debtor_name="Al Noor Trading LLC", debtor_iban=AE_IBAN,
            debtor_agent_bic="EBILAEAD", creditor_name="Ganesh Textiles Pvt Ltd", creditor_account="30001234567",
            creditor_agent_bic="SBININBB", status="SCREENING", workflow_id=workflow_id,
            created_at=datetime.now(timezone.utc) - timedelta(minutes=5),
        ))
    assert await start_orphans(temporal_env.client, sessions, settings) >= 1
    await wait_for_status(http, str(payment_id), auth(credentials["banks"]["EBILAEAD"]), {"AWAITING_SETTLEMENT"})
    await start_orphans(temporal_env.client, sessions, settings)  # again: finds it, starts nothing
    runs = [wf async for wf in temporal_env.client.list_workflows(f"WorkflowId = '{workflow_id}'")]
    assert len(runs) == 1
