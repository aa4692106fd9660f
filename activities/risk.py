"""Risk engine: the net debit cap, and a risk score for every payment.

The cap is checked inside the obligation's own transaction, under an advisory lock per
payer and currency, so two concurrent payments cannot both pass on the same headroom.
The score (0-100) weighs the amount (against the currency's gross threshold), the
corridor (cross-border, or a corridor configured as high-risk) and velocity (payments
from the same debtor account in the recent window). It is stored with the payment for
monitoring; it does not reject by itself.
"""

from __future__ import annotations

import uuid
import zlib
from decimal import Decimal

from sqlalchemy import and_, bindparam, case, func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from deltran.config import Settings
from deltran.db.tables import NetDebitCap, Obligation, Participant, Payment
from deltran.domain.risk import RiskAssessment, score
from deltran.money import format_amount
from deltran.vocabulary import ObligationStatus

# A debtor account's other payments at its bank in the velocity window. Built once,
# values bound at execution (see deltran/db/payment_rows.py).
_RECENT_PAYMENTS = (
    select(func.count())
    .select_from(Payment)
    .where(
        Payment.debtor_agent_bic == bindparam("bic"),
        # Exactly one of the two is set (a CHECK): this is the indexed expression.
        func.coalesce(Payment.debtor_iban, Payment.debtor_account) == bindparam("account"),
        Payment.created_at >= func.now() - func.make_interval(0, 0, 0, 0, 0, 0, bindparam("window_s")),
        Payment.id != bindparam("payment_id"),
    )
)


async def assess(
    session: AsyncSession,
    payment: Payment,
    agents: dict[str, Participant],
    window_id: uuid.UUID | None,
    settings: Settings,
) -> RiskAssessment:
    """`agents`: the payment's agents by BIC, as the obligation engine read them."""
    debtor_country = agents[payment.debtor_agent_bic].country
    creditor_country = agents[payment.creditor_agent_bic].country
    payer_id = agents[payment.debtor_agent_bic].id
    recent = await session.scalar(
        _RECENT_PAYMENTS,
        {
            "bic": payment.debtor_agent_bic,
            "account": payment.debtor_iban or payment.debtor_account,
            "window_s": settings.risk_velocity_window_s,
            "payment_id": payment.id,
        },
    )
    total, factors = score(
        amount=payment.amount,
        gross_threshold=settings.gross_thresholds.get(payment.currency),
        cross_border=debtor_country != creditor_country,
        high_risk_corridor=f"{debtor_country}-{creditor_country}" in settings.risk_high_risk_corridors,
        recent_payments=int(recent or 0),
    )
    breach = None
    if window_id is not None:
        breach = await net_debit_cap_breach(session, payer_id, payment.amount, payment.currency, window_id)
    return RiskAssessment(score=total, factors=factors, breach=breach)


def _cap_lock_key(payer_id: uuid.UUID, currency: str) -> int:
    return zlib.crc32(f"net-debit-cap:{payer_id}:{currency}".encode())


async def lock_caps(session: AsyncSession, payers: list[tuple[uuid.UUID, str]]) -> None:
    """Take several payers' cap locks (payer, currency) at once, in one order for every
    transaction: a cross-currency payment checks two (its legs' payers), and two such
    payments taking them in opposite orders would deadlock."""
    for payer_id, currency in sorted(payers, key=lambda p: (p[1], str(p[0]))):
        await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _cap_lock_key(payer_id, currency)})


async def net_debit_cap_breach(
    session: AsyncSession, payer_id: uuid.UUID, amount: Decimal, currency: str, window_id: uuid.UUID
) -> str | None:
    """Why paying `amount` more in the window would take the payer past its net debit cap
    in `currency`, or None. Each leg of a cross-currency payment is checked against its
    own payer's cap, in its own currency."""
    cap = await session.scalar(
        select(NetDebitCap.cap).where(NetDebitCap.participant_id == payer_id, NetDebitCap.currency == currency)
    )
    if cap is None:
        return None
    # Serialise the check per payer and currency until this transaction ends.
    await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _cap_lock_key(payer_id, currency)})
    # A cross-currency leg it receives waits in escrow (netting does not credit it): it
    # does not lower the payer's position either.
    position = await session.scalar(
        select(
            func.coalesce(
                func.sum(
                    case(
                        (and_(Obligation.payee_id == payer_id, Obligation.escrowed), 0),
                        (Obligation.payee_id == payer_id, Obligation.amount),
                        else_=-Obligation.amount,
                    )
                ),
                0,
            )
        ).where(
            Obligation.clearing_window_id == window_id,
            Obligation.status == ObligationStatus.PENDING,
            or_(Obligation.payer_id == payer_id, Obligation.payee_id == payer_id),
        )
    )
    after = Decimal(position or 0) - amount  # coalesce: never None
    if -after > cap:
        return (
            f"net debit cap of {format_amount(cap, currency)} {currency} would be exceeded:"
            f" net position {format_amount(after, currency)} with this payment"
        )
    return None
