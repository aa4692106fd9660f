"""A step that keeps failing is visible and heals by itself: PostgreSQL becomes
unreachable for the worker in the middle of a payment (its open connections dropped,
new ones refused, as when the server stops), while the API still reads it. Within 30 s
the payment's step shows as a pending activity with its attempt count and last failure
(what the Temporal UI shows) and in GET /v1/payments/{id}; the failed attempts are
counted; once PostgreSQL is reachable again the payment completes with nothing twice."""

from __future__ import annotations

import time
import uuid

from prometheus_client import REGISTRY
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from deltran.db.engine import make_engine, make_session_factory
from deltran.db.tables import LedgerTransfer, Obligation, Token
from deltran.intake.payments import submit_payments
from tests.support.payments import auth, camt054_for, new_payment, wait_for_retrying_step, wait_for_status
from tests.support.tcp_proxy import CuttableProxy
from worker.main import build_worker

VISIBLE_WITHIN_S = 30


def _failed_attempts(step: str) -> float:
    return REGISTRY.get_sample_value("deltran_step_attempts_failed_total", {"step": step}) or 0.0


async def test_a_step_stuck_on_postgres_is_visible_and_completes_once_it_is_back(
    postgres, settings, sessions, temporal_env, http, credentials
):
    # PostgreSQL over TCP, through a proxy the test can cut.
    url = make_url(postgres.url)
    proxy = CuttableProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    queue = f"stuck-{uuid.uuid4().hex[:8]}"
    worker_settings = settings.model_copy(
        update={
            "task_queue": queue,
            "database_url": url.set(port=proxy.port).render_as_string(hide_password=False),
        }
    )
    engine = make_engine(worker_settings.effective_database_url, pool_size=5)
    bank = auth(credentials["banks"]["EBILAEAD"])
    e2e = f"STUCK-{uuid.uuid4().hex[:12]}"
    try:
        async with build_worker(temporal_env.client, make_session_factory(engine), worker_settings, queue):
            async with sessions() as session:
                [intake] = await submit_payments(
                    session,
                    temporal_env.client,
                    worker_settings,
                    [new_payment(e2e, "654.00", urgent=True)],
                    actor="test",
                )
            payment_id = str(intake.payment_id)
            await wait_for_status(http, payment_id, bank, {"AWAITING_SETTLEMENT"})

            await proxy.cut()
            failed_before = _failed_attempts("settle_obligation")
            booked = await http.post(
                "/v1/notifications/camt054",
                content=camt054_for(e2e, "654.00", entry_reference=f"N-{e2e}"),
                headers={**auth(credentials["settlement_agent"]), "Content-Type": "application/xml"},
            )
            assert booked.status_code == 200, booked.text
            cut_at = time.monotonic()

            shown = await wait_for_retrying_step(http, payment_id, bank, "settle_obligation", VISIBLE_WITHIN_S)
            assert time.monotonic() - cut_at < VISIBLE_WITHIN_S
            assert shown["status"] == "AWAITING_SETTLEMENT"
            # what the Temporal UI shows: the pending activity, its attempts, its last failure
            description = await temporal_env.client.get_workflow_handle(intake.workflow_id).describe()
            [pending] = description.raw_description.pending_activities
            assert pending.activity_type.name == "settle_obligation" and pending.attempt >= 2
            failure = pending.last_failure
            if failure.HasField("server_failure_info"):  # too large: the original is its cause
                failure = failure.cause
            # the bank sees the kind of failure; an operator sees its text
            assert shown["last_error"] == failure.application_failure_info.type != ""
            as_admin = (await http.get(f"/v1/payments/{payment_id}", headers=auth(credentials["admin"]))).json()
            assert as_admin["step"] == "settle_obligation" and as_admin["last_error"]
            assert as_admin["last_error"] != shown["last_error"]
            # the local attempts and the regular ones, each counted
            assert _failed_attempts("settle_obligation") - failed_before >= 6 + 1

            proxy.restore()
            done = await wait_for_status(http, payment_id, bank, {"COMPLETED"}, timeout_s=60)
            assert (done["step"], done["attempt"], done["last_error"]) == (None, None, None)
    finally:
        await proxy.stop()
        await engine.dispose()
    async with sessions() as session:
        oid = await session.scalar(select(Obligation.id).where(Obligation.payment_id == intake.payment_id))
        tokens = await session.scalar(
            select(func.count()).select_from(Token).where(Token.payment_id == intake.payment_id)
        )
        transfers = await session.scalar(
            select(func.count()).select_from(LedgerTransfer).where(LedgerTransfer.obligation_id == oid)
        )
    assert (tokens, transfers) == (1, 1)
