"""Compliance and settlement activities on the real PostgreSQL: idempotent on retry,
failing closed, and telling business outcomes (final) from faults (retried)."""

from __future__ import annotations

import hashlib
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from schwifty import IBAN
from sqlalchemy import delete, func, select, text
from temporalio.exceptions import ApplicationError

from activities import risk
from activities.compliance import ComplianceActivities
from activities.obligations import ObligationActivities
from activities.settlement import SettlementActivities
from deltran.db.payment_rows import agents_of
from deltran.db.tables import Cancellation, ClearingWindow, ComplianceResult, Obligation, Participant, Payment
from deltran.shared import ExpireInput, FiatBooking, SettleInput
from deltran.temporal.errors import OBLIGATION_RELEASED
from deltran.vocabulary import ObligationStatus, PaymentStatus


async def new_payment(
    sessions,
    *,
    creditor_bic: str = "SBININBB",
    creditor_name: str = "Ganesh Textiles Pvt Ltd",
    currency: str = "AED",
    debtor_iban: str | None = "AE070331234567890123456",
    debtor_account: str | None = None,
) -> uuid.UUID:
    e2e = f"ACT-{uuid.uuid4().hex[:16]}"
    payment_id = uuid.uuid4()
    async with sessions() as session, session.begin():
        session.add(
            Payment(
                id=payment_id,
                instructing_bic="EBILAEAD",
                end_to_end_id=e2e,
                fingerprint=hashlib.sha256(e2e.encode()).hexdigest(),
                amount=Decimal("1200.00"),
                currency=currency,
                debtor_name="Al Noor Trading LLC",
                debtor_iban=debtor_iban,
                debtor_account=debtor_account,
                debtor_agent_bic="EBILAEAD",
                creditor_name=creditor_name,
                creditor_account="30001234567",
                creditor_agent_bic=creditor_bic,
                status=PaymentStatus.SCREENING,
                workflow_id=f"payment-test-{e2e}",
            )
        )
    return payment_id


def booking(reference: str) -> FiatBooking:
    return FiatBooking(
        notification_id=uuid.uuid4(),
        camt054_entry_reference=reference,
        bank_confirmation_reference=f"BR-{reference}",
        amount=Decimal("1200.00"),
        currency="AED",
    )


async def test_screening_is_idempotent(sessions, settings, credentials):
    payment_id = await new_payment(sessions)
    compliance = ComplianceActivities(sessions, settings)
    first = await compliance.screen_payment(payment_id)
    second = await compliance.screen_payment(payment_id)
    assert first == second and first.passed
    async with sessions() as session:
        count = await session.scalar(
            select(func.count()).select_from(ComplianceResult).where(ComplianceResult.payment_id == payment_id)
        )
    assert count == 1


async def test_screening_fails_closed_when_the_list_cannot_load(sessions, settings, credentials, tmp_path: Path):
    payment_id = await new_payment(sessions)
    broken = settings.model_copy(update={"sanctions_list_path": tmp_path / "missing.csv"})
    with pytest.raises(ApplicationError) as raised:
        await ComplianceActivities(sessions, broken).screen_payment(payment_id)
    assert raised.value.non_retryable is False  # the payment waits and retries, never passes
    async with sessions() as session:
        assert (await session.get(Payment, payment_id)).status == PaymentStatus.SCREENING
        assert await session.scalar(select(ComplianceResult).where(ComplianceResult.payment_id == payment_id)) is None


async def test_a_suspended_creditor_bank_is_rejected(sessions, settings, credentials):
    bic = "SUSPAEAD"
    async with sessions() as session, session.begin():
        session.add(Participant(bic=bic, name="Suspended Test Bank", country="AE", status="SUSPENDED"))
    payment_id = await new_payment(sessions, creditor_bic=bic)
    outcome = await ComplianceActivities(sessions, settings).screen_payment(payment_id)
    assert not outcome.passed and outcome.reason_code == "AG01"
    async with sessions() as session:
        payment = await session.get(Payment, payment_id)
    assert payment.status == PaymentStatus.REJECTED and payment.rejection_code == "AG01"


async def test_settle_is_idempotent_and_keeps_the_first_references(sessions, settings, credentials):
    payment_id = await new_payment(sessions)
    obligation = await ObligationActivities(sessions, settings).create_obligation(payment_id)
    again = await ObligationActivities(sessions, settings).create_obligation(payment_id)
    assert again == obligation
    settle = SettlementActivities(sessions)
    await settle.settle_obligation(
        SettleInput(payment_id=payment_id, obligation_id=obligation.obligation_id, booking=booking("FIRST"))
    )
    await settle.settle_obligation(
        SettleInput(payment_id=payment_id, obligation_id=obligation.obligation_id, booking=booking("SECOND"))
    )
    async with sessions() as session:
        row = await session.get(Obligation, obligation.obligation_id)
        payment = await session.get(Payment, payment_id)
    assert row.status == ObligationStatus.SETTLED and row.camt054_entry_reference == "FIRST"
    assert payment.status == PaymentStatus.SETTLED


async def test_a_released_obligation_never_settles(sessions, settings, credentials):
    payment_id = await new_payment(sessions)
    obligation = await ObligationActivities(sessions, settings).create_obligation(payment_id)
    expire = ExpireInput(payment_id=payment_id, obligation_id=obligation.obligation_id)
    await ObligationActivities(sessions, settings).expire_payment(expire)
    await ObligationActivities(sessions, settings).expire_payment(expire)  # a retry changes nothing
    with pytest.raises(ApplicationError) as raised:
        await SettlementActivities(sessions).settle_obligation(
            SettleInput(payment_id=payment_id, obligation_id=obligation.obligation_id, booking=booking("LATE"))
        )
    assert raised.value.type == OBLIGATION_RELEASED and raised.value.non_retryable
    async with sessions() as session:
        row = await session.get(Obligation, obligation.obligation_id)
        payment = await session.get(Payment, payment_id)
    assert row.status == ObligationStatus.RELEASED and row.settled_at is None
    assert payment.status == PaymentStatus.EXPIRED


async def test_a_stale_open_window_routes_new_payments_gross(sessions, settings, credentials):
    """A window open far longer than its schedule keeps one (the schedule paused): a new
    payment in its currency settles gross, says why, and ops get a metric to alert on."""
    currency = "Q" + uuid.uuid4().hex[:2].upper()  # its own currency: no schedule, no other window
    window_id = uuid.uuid4()
    async with sessions() as session, session.begin():
        session.add(ClearingWindow(id=window_id, currency=currency, status="OPEN"))
        await session.flush()
        await session.execute(
            text("UPDATE clearing_windows SET opened_at = now() - make_interval(secs => :age) WHERE id = :id"),
            {"age": settings.clearing_window_stale_after_s + 60, "id": window_id},
        )

    def routed_gross() -> float:
        return REGISTRY.get_sample_value("deltran_stale_window_routings_total", {"currency": currency}) or 0.0

    before = routed_gross()
    try:
        payment_id = await new_payment(sessions, currency=currency)
        ref = await ObligationActivities(sessions, settings).create_obligation(payment_id)
        async with sessions() as session:
            obligation = await session.scalar(select(Obligation).where(Obligation.payment_id == payment_id))
    finally:
        async with sessions() as session, session.begin():
            await session.execute(delete(ClearingWindow).where(ClearingWindow.id == window_id))

    assert ref.accepted
    assert (obligation.settlement_mode, obligation.clearing_window_id) == ("GROSS", None)
    assert f"the open {currency} clearing window has not closed" in obligation.routing_reason
    assert "paused or not running" in obligation.routing_reason
    assert routed_gross() == before + 1


async def test_risk_velocity_counts_the_debtor_accounts_recent_payments(sessions, settings, credentials):
    """The velocity factor counts the other recent payments from the same debtor account
    at the same bank, whether the account is an IBAN or a plain account number."""

    async def recent_payments(payment_id: uuid.UUID) -> int:
        async with sessions() as session, session.begin():
            payment = await session.get(Payment, payment_id)
            assert payment is not None
            assessment = await risk.assess(session, payment, await agents_of(session, payment), None, settings)
        return assessment.factors["recent_payments"]

    iban = str(IBAN.generate("AE", bank_code="033", account_code=f"{uuid.uuid4().int % 10**16:016d}"))
    account = f"{uuid.uuid4().int % 10**12:012d}"
    first = await new_payment(sessions, debtor_iban=iban)
    assert await recent_payments(first) == 0  # itself is not counted
    await new_payment(sessions, debtor_iban=iban)
    await new_payment(sessions, debtor_iban=None, debtor_account=account)  # another account
    third = await new_payment(sessions, debtor_iban=iban)
    assert await recent_payments(third) == 2
    by_account = await new_payment(sessions, debtor_iban=None, debtor_account=account)
    assert await recent_payments(by_account) == 1


async def test_a_recall_still_pending_when_its_payment_expires_is_answered(sessions, settings, credentials):
    # A recall filed PDCR (its window had closed), then the payment expired unsettled (its
    # obligation rolled into an open window and ran out of time): nothing settled, so the
    # recall is answered CNCL, not left with the creditor agent.
    payment_id = await new_payment(sessions)
    obligation = await ObligationActivities(sessions, settings).create_obligation(payment_id)
    async with sessions() as session, session.begin():
        payment = await session.get(Payment, payment_id)
        agents = await agents_of(session, payment)
        session.add(
            Cancellation(
                payment_id=payment_id, requested_by=agents["EBILAEAD"].id, assignee_id=agents["SBININBB"].id,
                case_id="CASE-EXP", reason_code="DUPL", status="PDCR",
            )
        )  # fmt: skip
    await ObligationActivities(sessions, settings).expire_payment(
        ExpireInput(payment_id=payment_id, obligation_id=obligation.obligation_id)
    )
    async with sessions() as session:
        recall = await session.scalar(select(Cancellation).where(Cancellation.payment_id == payment_id))
    assert recall is not None and recall.status == "CNCL" and recall.resolved_at is not None
    assert "expired" in (recall.status_reason or "")
