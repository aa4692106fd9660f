"""Liquidity router: how an obligation settles.

NET (the default) joins its currency's open clearing window and is funded only through
the payer's net position. GROSS settles alone on its own camt.054: when its fiat is already
booked (the camt.054 came while it was being screened: that booking settles it), when
the payment is flagged urgent, when its amount reaches the currency's gross threshold (one large
payment should not hold a window's liquidity hostage), when no clearing window is open
for the currency (no schedule running for it), or when the open window is stale: open
for longer than any healthy schedule keeps one open (`Settings.clearing_window_stale_after_s`),
so its schedule is paused, deleted or not running — a payment joining it would wait for
a close that does not come. The choice and its reason are recorded on the obligation.
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from deltran.config import Settings
from deltran.db import payment_rows
from deltran.db.tables import ClearingWindow, Payment
from deltran.domain.liquidity import OpenWindow, Route, route
from deltran.vocabulary import WindowStatus


async def route_payment(session: AsyncSession, payment: Payment, settings: Settings) -> Route:
    """The payment's route, inside the caller's transaction: the open window it joins
    stays share-locked until that transaction ends (see open_window_for_update_share)."""
    prefunded = await payment_rows.has_booking(session, payment.id)
    return await route_leg(session, payment.amount, payment.currency, payment.urgent, prefunded, settings)


async def route_leg(
    session: AsyncSession, amount: Decimal, currency: str, urgent: bool, prefunded: bool, settings: Settings
) -> Route:
    """The route of one leg of a payment (a cross-currency payment has two), likewise."""
    return route(
        amount=amount,
        currency=currency,
        urgent=urgent,
        prefunded=prefunded,
        gross_threshold=settings.gross_thresholds.get(currency),
        open_window=await open_window_for_update_share(session, currency),
        stale_after_s=settings.clearing_window_stale_after_s,
    )


# Built once, the currency bound at execution (see deltran/db/payment_rows.py).
_OPEN_WINDOW = (
    select(ClearingWindow.id, func.extract("epoch", func.now() - ClearingWindow.opened_at).label("age_s"))
    .where(ClearingWindow.currency == bindparam("currency"), ClearingWindow.status == WindowStatus.OPEN)
    .with_for_update(read=True)
)


async def open_window_for_update_share(session: AsyncSession, currency: str) -> OpenWindow | None:
    """The currency's open window (and how long it has been open), locked FOR SHARE for
    the rest of the transaction.

    The share lock is the cut-off: a close (which updates the row) waits for every
    obligation that already chose the window to commit, and an obligation that comes
    during the close waits the few milliseconds the close takes, then sees the next
    window. So each obligation lands in exactly one window, and netting sees all of it.
    """
    for _ in range(3):
        window = (await session.execute(_OPEN_WINDOW, {"currency": currency})).one_or_none()
        if window is not None:
            return OpenWindow(window.id, float(window.age_s))
        # Either no schedule runs for the currency, or a close committed under us and
        # its new window is not in this statement's snapshot yet: look once more.
        exists = await session.scalar(select(ClearingWindow.id).where(ClearingWindow.currency == currency).limit(1))
        if exists is None:
            return None
    return None
