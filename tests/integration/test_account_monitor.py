"""The account monitor: reconciliation tiers, and the circuit breaker that stops
minting when the backing breaks and lets waiting payments complete once it is closed."""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import select, update

from deltran import reconciliation
from deltran.db.tables import Account, CircuitBreaker, Participant
from tests.support.payments import auth, camt054_for, payment_body, wait_for_retrying_step, wait_for_status

TAMPER = Decimal("1000.00")


async def tamper_token_balance(sessions, delta: Decimal) -> None:
    """Give a bank tokens out of nothing (or take them back): the backing breaks."""
    async with sessions() as session, session.begin():
        bank = await session.scalar(select(Participant.id).where(Participant.bic == "MASHAEAD"))
        await session.execute(
            update(Account)
            .where(Account.participant_id == bank, Account.currency == "AED", Account.kind == "token")
            .values(credits_posted=Account.credits_posted + delta)
        )


async def test_breaking_the_backing_opens_the_breaker_and_payments_wait_until_it_closes(
    http, credentials, sessions, settings, temporal_env, e2e_id
):
    from deltran.ledger import ensure_accounts

    async with sessions() as session, session.begin():
        bank = await session.scalar(select(Participant.id).where(Participant.bic == "MASHAEAD"))
        await ensure_accounts(session, [bank], "AED")
    admin = auth(credentials["admin"])
    await tamper_token_balance(sessions, TAMPER)
    try:
        async with sessions() as session, session.begin():
            run = await reconciliation.run_reconciliation(session, "intraday", settings)
        assert not run.ok and any(b["kind"] == "backing_mismatch" and b["currency"] == "AED" for b in run.breaks)
        latest = (await http.get("/v1/reconciliations/latest?tier=intraday", headers=admin)).json()
        assert latest["id"] == str(run.id) and latest["ok"] is False
        breakers = (await http.get("/v1/admin/circuit-breakers", headers=admin)).json()["breakers"]
        assert {"currency": "AED", "state": "OPEN"}.items() <= next(
            b for b in breakers if b["currency"] == "AED"
        ).items()

        # A payment now settles but does not mint: it waits, its mint retrying.
        bank_key = auth(credentials["banks"]["EBILAEAD"])
        payment_id = (
            await http.post("/v1/payments", json=payment_body(e2e_id, amount="70.00"), headers=bank_key)
        ).json()["payment_id"]
        await wait_for_status(http, payment_id, bank_key, {"AWAITING_SETTLEMENT"})
        await http.post(
            "/v1/notifications/camt054",
            content=camt054_for(e2e_id, "70.00", entry_reference=f"NTRY-{e2e_id}"),
            headers={**auth(credentials["settlement_agent"]), "Content-Type": "application/xml"},
        )
        waiting = await wait_for_status(http, payment_id, bank_key, {"SETTLED"})
        # Past its local attempts, the mint retries as a regular activity: ops see it in
        # the Temporal UI and in the API, with its attempt and why it fails.
        stuck = await wait_for_retrying_step(http, payment_id, bank_key, "mint_token")
        assert (stuck["status"], stuck["last_error"]) == ("SETTLED", "CircuitBreakerOpen")
        as_admin = (await http.get(f"/v1/payments/{payment_id}", headers=admin)).json()
        assert "circuit breaker open for AED" in as_admin["last_error"]
        description = await temporal_env.client.get_workflow_handle(waiting["workflow_id"]).describe()
        [pending] = description.raw_description.pending_activities
        assert pending.activity_type.name == "mint_token" and pending.attempt >= 2
        assert "circuit breaker open" in pending.last_failure.message

        # Not while the break stands.
        refused = await http.post("/v1/admin/circuit-breakers/AED/close", headers=admin)
        assert refused.status_code == 409
    finally:
        await tamper_token_balance(sessions, -TAMPER)
    closed = await http.post("/v1/admin/circuit-breakers/AED/close", headers=admin)
    assert closed.status_code == 200 and closed.json()["state"] == "CLOSED"
    done = await wait_for_status(http, payment_id, bank_key, {"COMPLETED"}, timeout_s=60)
    assert done["token"]["amount"] == "70.00"
    async with sessions() as session:
        assert (await session.get(CircuitBreaker, "AED")).state == "CLOSED"


async def test_end_of_day_lists_breaks_transaction_by_transaction(http, credentials, sessions, settings):
    orphan = f"ORPHAN-{uuid.uuid4().hex[:10]}"
    response = await http.post(
        "/v1/notifications/camt054",
        content=camt054_for(orphan, "12.34", entry_reference=f"NTRY-{orphan}"),
        headers={**auth(credentials["settlement_agent"]), "Content-Type": "application/xml"},
    )
    assert response.json()["entries"][0]["outcome"] == "UNMATCHED"
    async with sessions() as session, session.begin():
        run = await reconciliation.run_reconciliation(session, "end_of_day", settings)
    unmatched = [b for b in run.breaks if b["kind"] == "unmatched_entry"]
    assert any(b["amount"] == "12.34000" or Decimal(b["amount"]) == Decimal("12.34") for b in unmatched)
    assert not [b for b in run.breaks if b["kind"] == "backing_mismatch"]
    latest = (await http.get("/v1/reconciliations/latest", headers=auth(credentials["admin"]))).json()
    assert latest["tier"] == "end_of_day" and latest["break_count"] == run.break_count
