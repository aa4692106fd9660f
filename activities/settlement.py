"""Settlement engine: closes an obligation once its fiat is booked (camt.054).

The closure is one conditional UPDATE (PENDING → SETTLED with `settled_at` and both
references), so a replayed activity or a duplicate camt.054 changes nothing.
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import CursorResult, bindparam, func, select, update
from sqlalchemy.ext.asyncio import async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from deltran import events
from deltran.db.tables import Obligation, Payment, table_of
from deltran.observability import metrics
from deltran.shared import SettleInput
from deltran.temporal.errors import OBLIGATION_NOT_IN_WINDOW, obligation_released
from deltran.vocabulary import EventType, ObligationStatus, PaymentStatus

# Built once, values bound at execution (see deltran/db/payment_rows.py), on the tables
# (no ORM bulk-update bookkeeping). Net: the window's settlement reference stands for
# both references, and only its own window settles an obligation.
_OBLIGATIONS = table_of(Obligation)
_PAYMENTS = table_of(Payment)
_CLOSE = (
    update(_OBLIGATIONS)
    .where(_OBLIGATIONS.c.id == bindparam("obligation_id"), _OBLIGATIONS.c.status == ObligationStatus.PENDING)
    .values(
        status=ObligationStatus.SETTLED,
        settled_at=func.now(),
        bank_confirmation_reference=bindparam("bank_ref"),
        camt054_entry_reference=bindparam("entry_ref"),
    )
    .returning(
        _OBLIGATIONS.c.currency,
        _OBLIGATIONS.c.settlement_mode,
        _OBLIGATIONS.c.settled_at - _OBLIGATIONS.c.created_at,
    )
)
_CLOSE_IN_WINDOW = _CLOSE.where(_OBLIGATIONS.c.clearing_window_id == bindparam("window_id"))
_PAYMENT_SETTLED = (
    update(_PAYMENTS)
    .where(_PAYMENTS.c.id == bindparam("payment_id"), _PAYMENTS.c.status == PaymentStatus.AWAITING_SETTLEMENT)
    .values(status=PaymentStatus.SETTLED, updated_at=func.now())
)


class SettlementActivities:
    def __init__(self, session_factory: async_sessionmaker) -> None:
        self._sessions = session_factory

    @activity.defn(name="settle_obligation")
    async def settle_obligation(self, data: SettleInput) -> None:
        """Gross: the payment's own booked camt.054 gives both references. Net: the
        window's settlement reference stands for both; the window's funding entries,
        each a booked camt.054, are on its funding instructions."""
        if data.booking is not None:
            close = _CLOSE
            params = {
                "obligation_id": data.obligation_id,
                "bank_ref": data.booking.bank_confirmation_reference,
                "entry_ref": data.booking.camt054_entry_reference,
            }
        else:
            assert data.window is not None
            close = _CLOSE_IN_WINDOW
            params = {
                "obligation_id": data.obligation_id,
                "bank_ref": data.window.settlement_reference,
                "entry_ref": data.window.settlement_reference,
                "window_id": data.window.window_id,
            }
        async with self._sessions() as session, session.begin():
            closed = await session.execute(close, params)
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
            if cast(CursorResult, await session.execute(_PAYMENT_SETTLED, {"payment_id": data.payment_id})).rowcount:
                await events.payment_events(session, [data.payment_id], EventType.PAYMENT_SETTLED)
        if settled is not None:  # counted once, after the commit
            currency, mode, took = settled
            metrics.settlements.labels(currency, mode).inc()
            metrics.settlement_seconds.labels(currency, mode).observe(took.total_seconds())
