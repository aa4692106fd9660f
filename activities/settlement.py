"""Settlement engine: closes an obligation once its fiat is booked (camt.054).

The closure is one conditional UPDATE (PENDING → SETTLED with `settled_at` and both
references), so a replayed activity or a duplicate camt.054 changes nothing.
"""
from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import async_sessionmaker
from temporalio import activity

from activities.errors import obligation_released
from deltran.db.tables import Obligation, Payment
from deltran.shared import ObligationStatus, PaymentStatus, SettleInput


class SettlementActivities:
    def __init__(self, session_factory: async_sessionmaker) -> None:
        self._sessions = session_factory

    @activity.defn(name="settle_obligation")
    async def settle_obligation(self, data: SettleInput) -> None:
        async with self._sessions() as session, session.begin():
            closed = await session.execute(
                update(Obligation)
                .where(
                    Obligation.id == data.obligation_id,
                    Obligation.status == ObligationStatus.PENDING,
                )
                .values(
                    status=ObligationStatus.SETTLED,
                    settled_at=func.now(),
                    bank_confirmation_reference=data.booking.bank_confirmation_reference,
                    camt054_entry_reference=data.booking.camt054_entry_reference,
                )
                .returning(Obligation.id)
            )
            if closed.scalar_one_or_none() is None:
                status = await session.scalar(
                    select(Obligation.status).where(Obligation.id == data.obligation_id)
                )
                if status == ObligationStatus.RELEASED:
                    raise obligation_released(data.obligation_id)
                assert status == ObligationStatus.SETTLED, status
                # Settled by an earlier attempt: nothing more to do.
            await session.execute(
                update(Payment)
                .where(
                    Payment.id == data.payment_id,
                    Payment.status == PaymentStatus.AWAITING_SETTLEMENT,
                )
                .values(status=PaymentStatus.SETTLED, updated_at=func.now())
            )
