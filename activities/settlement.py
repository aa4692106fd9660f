"""Settlement engine: closes an obligation once its fiat is booked (camt.054).

The closure is one conditional UPDATE (PENDING → SETTLED with `settled_at` and both
references), so a replayed activity or a duplicate camt.054 changes nothing.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, func, select, true, update
from sqlalchemy.ext.asyncio import async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from deltran.db.tables import Obligation, Payment
from deltran.observability import metrics
from deltran.shared import SettleInput
from deltran.temporal.errors import OBLIGATION_NOT_IN_WINDOW, obligation_released
from deltran.vocabulary import ObligationStatus, PaymentStatus


class SettlementActivities:
    def __init__(self, session_factory: async_sessionmaker) -> None:
        self._sessions = session_factory

    @activity.defn(name="settle_obligation")
    async def settle_obligation(self, data: SettleInput) -> None:
        """Gross: the payment's own booked camt.054 gives both references. Net: the
        window's settlement reference stands for both; the window's funding entries,
        each a booked camt.054, are on its funding instructions."""
        if data.booking is not None:
            bank_reference = data.booking.bank_confirmation_reference
            entry_reference = data.booking.camt054_entry_reference
            same_window: ColumnElement[bool] = true()
        else:
            assert data.window is not None
            bank_reference = entry_reference = data.window.settlement_reference
            same_window = Obligation.clearing_window_id == data.window.window_id
        async with self._sessions() as session, session.begin():
            closed = await session.execute(
                update(Obligation)
                .where(
                    Obligation.id == data.obligation_id,
                    Obligation.status == ObligationStatus.PENDING,
                    same_window,
                )
                .values(
                    status=ObligationStatus.SETTLED,
                    settled_at=func.now(),
                    bank_confirmation_reference=bank_reference,
                    camt054_entry_reference=entry_reference,
                )
                .returning(
                    Obligation.currency, Obligation.settlement_mode, Obligation.settled_at - Obligation.created_at
                )
            )
            settled = closed.one_or_none()
            if settled is None:
                status = await session.scalar(select(Obligation.status).where(Obligation.id == data.obligation_id))
                if status == ObligationStatus.RELEASED:
                    raise obligation_released(data.obligation_id)
                if status != ObligationStatus.SETTLED:
                    raise ApplicationError(
                        f"obligation {data.obligation_id} is {status} in another window than"
                        f" {data.window.window_id if data.window else '?'}; it waits for its own",
                        type=OBLIGATION_NOT_IN_WINDOW,
                        non_retryable=True,
                    )
                # Settled by an earlier attempt: nothing more to do.
            await session.execute(
                update(Payment)
                .where(
                    Payment.id == data.payment_id,
                    Payment.status == PaymentStatus.AWAITING_SETTLEMENT,
                )
                .values(status=PaymentStatus.SETTLED, updated_at=func.now())
            )
        if settled is not None:  # counted once, after the commit
            currency, mode, took = settled
            metrics.settlements.labels(currency, mode).inc()
            metrics.settlement_seconds.labels(currency, mode).observe(took.total_seconds())
