"""Reads and writes of a payment's row that several engines share."""
from __future__ import annotations

import uuid

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from deltran.db.tables import Participant, Payment
from deltran.shared import PaymentStatus


async def agents_of(session: AsyncSession, payment: Payment) -> dict[str, Participant]:
    """The payment's debtor and creditor agents that are participants, by BIC (one query)."""
    rows = await session.scalars(
        select(Participant).where(Participant.bic.in_([payment.debtor_agent_bic, payment.creditor_agent_bic]))
    )
    return {p.bic: p for p in rows}


async def reject(session: AsyncSession, payment_id: uuid.UUID, code: str, reason: str, **values) -> None:
    """SCREENING → REJECTED, conditional so a retry changes nothing."""
    await session.execute(
        update(Payment)
        .where(Payment.id == payment_id, Payment.status == PaymentStatus.SCREENING)
        .values(status=PaymentStatus.REJECTED, rejection_code=code, rejection_reason=reason,
                **({"updated_at": func.now()} | values))
    )
