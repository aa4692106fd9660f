"""Reads and writes of a payment's row that several engines share."""

from __future__ import annotations

import uuid
from typing import cast

from sqlalchemy import CursorResult, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from deltran import events
from deltran.db.tables import BankNotification, ClearingWindow, LedgerTransfer, Participant, Payment
from deltran.payment_references import forwarding_uetr
from deltran.vocabulary import EntryOutcome, EventType, PaymentStatus, WindowStatus

# The statements every payment runs, built once with their values bound at execution:
# SQLAlchemy then neither rebuilds nor re-keys them per call (about a tenth of a busy
# worker's CPU went to building statements).
_AGENTS = select(Participant).where(Participant.bic.in_(bindparam("bics", expanding=True)))
# populate_existing: the row as locked, not an object the session loaded before the lock.
_LOCK = (
    select(Payment)
    .where(Payment.id == bindparam("payment_id"))
    .with_for_update(key_share=True)
    .execution_options(populate_existing=True)
)
_MATCHED_ENTRIES = (
    select(func.count())
    .select_from(BankNotification)
    .where(BankNotification.payment_id == bindparam("payment_id"), BankNotification.outcome == EntryOutcome.MATCHED)
)


async def agents_of(session: AsyncSession, payment: Payment) -> dict[str, Participant]:
    """The payment's debtor and creditor agents that are participants, by BIC (one query)."""
    rows = await session.scalars(_AGENTS, {"bics": [payment.debtor_agent_bic, payment.creditor_agent_bic]})
    return {p.bic: p for p in rows}


async def lock(session: AsyncSession, payment_id: uuid.UUID) -> Payment | None:
    """The payment's row, locked FOR NO KEY UPDATE for the rest of the transaction.

    This is the cut-off between a payment's own transitions (routing, rejection,
    expiry) and a camt.054 booking it: the intake reads the payment FOR SHARE before it
    stores a MATCHED entry, so each side sees what the other committed, never half of it.
    """
    return await session.scalar(_LOCK, {"payment_id": payment_id})


async def window_still_open(session: AsyncSession, window_id: uuid.UUID) -> bool:
    """The window has not closed, and cannot close before this transaction ends: read FOR
    SHARE, the cut-off between joining or leaving a window (expiry, a recall) and its close
    (which takes it FOR UPDATE), as in activities/liquidity.py."""
    status = await session.scalar(
        select(ClearingWindow.status).where(ClearingWindow.id == window_id).with_for_update(read=True)
    )
    return status == WindowStatus.OPEN


async def has_booking(session: AsyncSession, payment_id: uuid.UUID) -> bool:
    """A camt.054 entry matched to the payment is stored: its fiat is booked for it."""
    return bool(await session.scalar(_MATCHED_ENTRIES, {"payment_id": payment_id}))


async def return_bookings(session: AsyncSession, payment_id: uuid.UUID, status: PaymentStatus) -> int:
    """The payment ended without settling: fiat booked for it (a camt.054 that came
    early, during screening) can no longer settle anything. Its entry becomes an
    exception to return (PAYMENT_NOT_AWAITING, listed by the end-of-day run), so no
    booked entry is left MATCHED with nothing ever to mint it. Never one already minted."""
    minted = select(LedgerTransfer.id).where(LedgerTransfer.notification_id == BankNotification.id).exists()
    result = await session.execute(
        update(BankNotification)
        .where(BankNotification.payment_id == payment_id, BankNotification.outcome == EntryOutcome.MATCHED, ~minted)
        .values(
            outcome=EntryOutcome.PAYMENT_NOT_AWAITING,
            outcome_detail=f"payment is {status.value}: the booked fiat is to be returned",
        )
    )
    return cast(CursorResult, result).rowcount


async def reject(session: AsyncSession, payment_id: uuid.UUID, code: str, reason: str, **values) -> None:
    """SCREENING → REJECTED, conditional so a retry changes nothing; fiat already booked
    for the payment becomes an exception to return; its sender is told."""
    rejected = await session.execute(
        update(Payment)
        .where(Payment.id == payment_id, Payment.status == PaymentStatus.SCREENING)
        .values(
            status=PaymentStatus.REJECTED,
            rejection_code=code,
            rejection_reason=reason,
            **({"updated_at": func.now()} | values),
        )
    )
    if cast(CursorResult, rejected).rowcount:
        await events.payment_events(session, [payment_id], EventType.PAYMENT_REJECTED)
    await return_bookings(session, payment_id, PaymentStatus.REJECTED)


async def payment_known_by(session: AsyncSession, uetr: uuid.UUID, bic: str) -> Payment | None:
    """The sender knows a payment by its own UETR; the creditor agent by the forwarded
    one, which is the payment's own or, for a payment sent without, its id (a UUIDv5) as a
    UUIDv4: the version put back gives the id to look up."""
    own = await session.scalar(select(Payment).where(Payment.uetr == uetr))
    if own is not None and bic in (own.debtor_agent_bic, own.creditor_agent_bic):
        return own
    derived = await session.get(Payment, uuid.UUID(bytes=uetr.bytes, version=5))
    if (
        derived is not None
        and derived.uetr is None
        and bic == derived.creditor_agent_bic
        and forwarding_uetr(derived) == str(uetr)
    ):
        return derived
    return None
