"""Obligation engine: records what the payer bank owes the payee bank for a payment
that passed compliance, and releases it when the payment expires unfunded.

Until clearing windows exist every obligation settles gross, on its own camt.054.
"""
from __future__ import annotations

import uuid

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import async_sessionmaker
from temporalio import activity

from activities.errors import payment_not_found
from activities.ledger import ensure_accounts
from deltran.db.tables import Obligation, Participant, Payment
from deltran.reason_codes import ReasonCode
from deltran.shared import ExpireInput, ObligationRef, ObligationStatus, PaymentStatus


class ObligationActivities:
    def __init__(self, session_factory: async_sessionmaker) -> None:
        self._sessions = session_factory

    @activity.defn(name="create_obligation")
    async def create_obligation(self, payment_id: uuid.UUID) -> ObligationRef:
        """One obligation per payment (unique payment_id): a retry returns the same row."""
        async with self._sessions() as session, session.begin():
            payment = await session.get(Payment, payment_id)
            if payment is None:
                raise payment_not_found(payment_id)
            banks = dict(
                (
                    await session.execute(
                        select(Participant.bic, Participant.id).where(
                            Participant.bic.in_(
                                [payment.debtor_agent_bic, payment.creditor_agent_bic]
                            )
                        )
                    )
                ).all()
            )
            payer_id = banks[payment.debtor_agent_bic]
            payee_id = banks[payment.creditor_agent_bic]
            await ensure_accounts(session, [payer_id, payee_id], payment.currency)
            await session.execute(
                insert(Obligation)
                .values(
                    payment_id=payment.id,
                    payer_id=payer_id,
                    payee_id=payee_id,
                    amount=payment.amount,
                    currency=payment.currency,
                    settlement_mode="GROSS",
                )
                .on_conflict_do_nothing(index_elements=[Obligation.payment_id])
            )
            obligation_id = await session.scalar(
                select(Obligation.id).where(Obligation.payment_id == payment.id)
            )
            await session.execute(
                update(Payment)
                .where(Payment.id == payment.id, Payment.status == PaymentStatus.SCREENING)
                .values(status=PaymentStatus.AWAITING_SETTLEMENT, updated_at=func.now())
            )
        assert obligation_id is not None
        return ObligationRef(obligation_id=obligation_id)

    @activity.defn(name="expire_payment")
    async def expire_payment(self, data: ExpireInput) -> None:
        """The deadline passed unfunded: release the obligation and expire the payment.
        Conditional on both still being open, so a retry changes nothing."""
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(Obligation)
                .where(
                    Obligation.id == data.obligation_id,
                    Obligation.status == ObligationStatus.PENDING,
                )
                .values(status=ObligationStatus.RELEASED, released_at=func.now())
            )
            await session.execute(
                update(Payment)
                .where(
                    Payment.id == data.payment_id,
                    Payment.status == PaymentStatus.AWAITING_SETTLEMENT,
                )
                .values(
                    status=PaymentStatus.EXPIRED,
                    rejection_code=ReasonCode.CLEARING_TIMEOUT,
                    rejection_reason="not funded before the settlement deadline",
                    updated_at=func.now(),
                )
            )
