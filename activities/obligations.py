"""Obligation engine: records what the payer bank owes the payee bank for a payment
that passed compliance (routed NET into its currency's open window, or GROSS), and
releases it when the payment expires unfunded.
"""

from __future__ import annotations

import logging
import uuid
from typing import cast

from sqlalchemy import CursorResult, bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities import liquidity, risk
from deltran import cancellations, events
from deltran.config import Settings
from deltran.db import payment_rows
from deltran.db.payment_rows import agents_of, reject
from deltran.db.tables import FxQuote, Obligation, Participant, Payment, table_of
from deltran.ledger import ensure_accounts
from deltran.observability import metrics
from deltran.reason_codes import ReasonCode
from deltran.shared import (
    CancelOutcome,
    CancelRequest,
    ExpireInput,
    ObligationCreated,
    ObligationOutcome,
    ObligationRefused,
)
from deltran.temporal.errors import payment_not_found
from deltran.vocabulary import (
    AccountKind,
    EventType,
    ObligationLeg,
    ObligationStatus,
    ParticipantStatus,
    PaymentStatus,
    SettlementMode,
)

log = logging.getLogger(__name__)


# Built once, values bound at execution (see deltran/db/payment_rows.py); the payment's
# update on its table, without the ORM's bulk-update bookkeeping.
_OBLIGATIONS_OF = (
    select(Obligation).where(Obligation.payment_id == bindparam("payment_id")).order_by(Obligation.leg)  # SOURCE first
)
_QUOTE_OF = select(FxQuote).where(FxQuote.payment_id == bindparam("payment_id"))
_PAYMENTS = table_of(Payment)
_INSERT_OBLIGATION = insert(table_of(Obligation)).returning(Obligation.id)
_PAYMENT_AWAITING = (
    update(_PAYMENTS)
    .where(_PAYMENTS.c.id == bindparam("payment_id"), _PAYMENTS.c.status == PaymentStatus.SCREENING)
    .values(
        status=PaymentStatus.AWAITING_SETTLEMENT,
        risk_score=bindparam("score"),
        risk_factors=bindparam("factors"),
        updated_at=func.now(),
    )
)


class ObligationActivities:
    def __init__(self, session_factory: async_sessionmaker, settings: Settings) -> None:
        self._sessions = session_factory
        self._settings = settings

    @activity.defn(name="create_obligation")
    async def create_obligation(self, payment_id: uuid.UUID) -> ObligationOutcome:
        """Route, check risk and record the obligation, in one transaction: one
        obligation per payment (unique payment_id), so a retry returns the same answer.
        The liquidity router and the risk engine run here, inside the obligation's
        transaction, so the window cut-off and the net debit cap hold under concurrency."""
        async with self._sessions() as session, session.begin():
            # Locked: a camt.054 booking this payment either committed before (and is
            # seen below) or waits and then sees the route chosen here.
            payment = await payment_rows.lock(session, payment_id)
            if payment is None:
                raise payment_not_found(payment_id)
            existing = list((await session.scalars(_OBLIGATIONS_OF, {"payment_id": payment_id})).all())
            if existing:
                return _ref(existing)
            if payment.status == PaymentStatus.REJECTED:  # refused by risk on an earlier attempt
                return ObligationRefused(
                    reason_code=payment.rejection_code or ReasonCode.LIMIT_EXCEEDED,
                    reason=payment.rejection_reason or "refused by the risk engine",
                )
            agents = await agents_of(session, payment)
            quote = await session.scalar(_QUOTE_OF, {"payment_id": payment_id})
            if quote is not None:
                return await self._create_legs(session, payment, agents, quote)
            payer_id = agents[payment.debtor_agent_bic].id
            payee_id = agents[payment.creditor_agent_bic].id
            settlement = await liquidity.route_payment(session, payment, self._settings)
            if settlement.window_stale:
                metrics.stale_window_routings.labels(payment.currency).inc()
                log.warning("payment routed gross: %s", settlement.reason, extra={"payment_id": str(payment.id)})
            assessment = await risk.assess(session, payment, agents, settlement.window_id, self._settings)
            payment_update = {
                "risk_score": assessment.score,
                "risk_factors": assessment.factors,
                "updated_at": func.now(),
            }
            if assessment.breach is not None:
                await reject(session, payment.id, ReasonCode.LIMIT_EXCEEDED, assessment.breach, **payment_update)
                metrics.payments_final.labels(PaymentStatus.REJECTED.value).inc()
                return ObligationRefused(reason_code=ReasonCode.LIMIT_EXCEEDED, reason=assessment.breach)
            await ensure_accounts(session, [payer_id, payee_id], payment.currency)
            obligation_id = await session.scalar(
                _INSERT_OBLIGATION,
                {
                    "payment_id": payment.id,
                    "payer_id": payer_id,
                    "payee_id": payee_id,
                    "amount": payment.amount,
                    "currency": payment.currency,
                    "settlement_mode": settlement.mode,
                    "routing_reason": settlement.reason,
                    "clearing_window_id": settlement.window_id,
                },
            )
            assert obligation_id is not None
            await session.execute(
                _PAYMENT_AWAITING,
                {"payment_id": payment.id, "score": assessment.score, "factors": assessment.factors},
            )
            # Its obligation was created just now, in this transaction: the change happened.
            await events.payment_events(session, [payment.id], EventType.PAYMENT_AWAITING_SETTLEMENT)
        metrics.obligations_created.labels(payment.currency, settlement.mode).inc()
        return ObligationCreated(
            obligation_id=obligation_id,
            settlement_mode=settlement.mode,
            routing_reason=settlement.reason,
            window_id=settlement.window_id,
        )

    async def _create_legs(
        self, session: AsyncSession, payment: Payment, agents: dict[str, Participant], quote: FxQuote
    ) -> ObligationOutcome:
        """A cross-currency payment's two legs, in the same transaction: debtor agent →
        provider in the source currency, provider → creditor agent in the target currency.
        Both net (each in its currency's open window, its payee's credit in escrow until
        the other leg settles) when both legs would; otherwise both gross, settled together
        once both are booked (activities/fx_settlement.py). Each leg counts against its
        own payer's net debit cap."""
        debtor, creditor = agents[payment.debtor_agent_bic], agents[payment.creditor_agent_bic]
        provider = await session.get(Participant, quote.provider_id)
        assert provider is not None  # a foreign key
        if provider.status != ParticipantStatus.ACTIVE or not provider.fx_provider:
            # Not a compliance refusal (a frozen AG01): fiat booked for it is refunded.
            reason = f"the quote's FX provider {provider.bic} no longer takes cross-currency payments"
            return await self._refuse(session, payment, ReasonCode.FX_PROVIDER_UNAVAILABLE, reason)
        prefunded = await payment_rows.has_booking(session, payment.id)
        legs = [
            (ObligationLeg.SOURCE, debtor.id, provider.id, quote.source_amount, quote.source_currency),
            (ObligationLeg.TARGET, provider.id, creditor.id, quote.target_amount, quote.target_currency),
        ]
        # Windows share-locked, and caps locked, in currency order: two cross-currency
        # payments in opposite directions never wait on each other in a cycle.
        routed = {}
        for index in sorted(range(len(legs)), key=lambda i: legs[i][4]):
            _, _, _, amount, currency = legs[index]
            routed[index] = await liquidity.route_leg(
                session, amount, currency, payment.urgent, prefunded, self._settings
            )
        routes = [routed[i] for i in range(len(legs))]
        await risk.lock_caps(session, [(payer_id, currency) for _, payer_id, _, _, currency in legs])
        net = all(r.mode == SettlementMode.NET for r in routes)
        mode = SettlementMode.NET if net else SettlementMode.GROSS
        gross_because = next((r.reason for r in routes if r.mode == SettlementMode.GROSS), "")
        assessment = await risk.assess(session, payment, agents, routes[0].window_id if net else None, self._settings)
        payment_update = {"risk_score": assessment.score, "risk_factors": assessment.factors, "updated_at": func.now()}
        if assessment.breach is not None:
            return await self._refuse(session, payment, ReasonCode.LIMIT_EXCEEDED, assessment.breach, **payment_update)
        if net:  # the provider's leg against the provider's own cap
            assert routes[1].window_id is not None  # NET
            provider_breach = await risk.net_debit_cap_breach(
                session, provider.id, quote.target_amount, quote.target_currency, routes[1].window_id
            )
            if provider_breach is not None:
                # The provider's limit and position are its own: the debtor agent is told
                # only that the provider cannot take the payment now.
                log.warning("FX payment refused: %s", provider_breach, extra={"payment_id": str(payment.id)})
                reason = f"the FX provider {provider.bic} cannot take this payment in {quote.target_currency} now"
                return await self._refuse(
                    session, payment, ReasonCode.FX_PROVIDER_UNAVAILABLE, reason, **payment_update
                )
        ids = []
        for (leg, payer_id, payee_id, amount, currency), route in zip(legs, routes, strict=True):
            await ensure_accounts(session, [payer_id, payee_id], currency)
            if net:
                await ensure_accounts(session, [payee_id], currency, kinds=(AccountKind.ESCROW,))
            reason = route.reason if net else f"cross-currency, both legs gross: {gross_because}"
            ids.append(
                await session.scalar(
                    _INSERT_OBLIGATION,
                    {
                        "payment_id": payment.id,
                        "leg": leg,
                        "escrowed": net,
                        "payer_id": payer_id,
                        "payee_id": payee_id,
                        "amount": amount,
                        "currency": currency,
                        "settlement_mode": mode,
                        "routing_reason": reason,
                        "clearing_window_id": route.window_id if net else None,
                    },
                )
            )
        await session.execute(
            _PAYMENT_AWAITING,
            {"payment_id": payment.id, "score": assessment.score, "factors": assessment.factors},
        )
        await events.payment_events(session, [payment.id], EventType.PAYMENT_AWAITING_SETTLEMENT)
        for _, _, _, _, currency in legs:
            metrics.obligations_created.labels(currency, mode).inc()
        return ObligationCreated(
            obligation_id=ids[0],
            settlement_mode=mode,
            routing_reason=routes[0].reason if net else f"cross-currency, both legs gross: {gross_because}",
            window_id=routes[0].window_id if net else None,
            target_obligation_id=ids[1],
            target_window_id=routes[1].window_id if net else None,
        )

    async def _refuse(
        self, session: AsyncSession, payment: Payment, code: ReasonCode, reason: str, **values
    ) -> ObligationRefused:
        await reject(session, payment.id, code, reason, **values)
        metrics.payments_final.labels(PaymentStatus.REJECTED.value).inc()
        return ObligationRefused(reason_code=code, reason=reason)

    @activity.defn(name="expire_payment")
    async def expire_payment(self, data: ExpireInput) -> bool:
        """The deadline passed unfunded: release the obligation and expire the payment.
        Returns False, changing nothing, for a net obligation whose window has already
        closed (netting counted it, so only its window can settle it or roll it on), and
        for a gross one whose camt.054 is already booked (its signal is on its way: the
        payment settles; expiring it would strand the booked fiat).
        Conditional on both still being open, so a retry changes nothing."""
        async with self._sessions() as session, session.begin():
            await payment_rows.lock(session, data.payment_id)  # the cut-off against a booking
            obligation = await session.get(Obligation, data.obligation_id)
            if obligation is None:
                raise payment_not_found(data.payment_id)
            if obligation.status == ObligationStatus.RELEASED:
                return True
            if obligation.status != ObligationStatus.PENDING:
                return False
            if obligation.clearing_window_id is not None:
                if not await payment_rows.window_still_open(session, obligation.clearing_window_id):
                    return False
            elif await payment_rows.has_booking(session, data.payment_id):
                return False
            await session.execute(
                update(Obligation)
                .where(Obligation.id == data.obligation_id, Obligation.status == ObligationStatus.PENDING)
                .values(status=ObligationStatus.RELEASED, released_at=func.now())
            )
            expired = await session.execute(
                update(Payment)
                .where(Payment.id == data.payment_id, Payment.status == PaymentStatus.AWAITING_SETTLEMENT)
                .values(
                    status=PaymentStatus.EXPIRED,
                    rejection_code=ReasonCode.CLEARING_TIMEOUT,
                    rejection_reason="not funded before the settlement deadline",
                    updated_at=func.now(),
                )
            )
            if cast(CursorResult, expired).rowcount:
                await events.payment_events(session, [data.payment_id], EventType.PAYMENT_EXPIRED)
                await cancellations.resolve_on_expiry(session, data.payment_id)
            await payment_rows.return_bookings(session, data.payment_id, PaymentStatus.EXPIRED)
        metrics.payments_final.labels(PaymentStatus.EXPIRED.value).inc()
        return True

    @activity.defn(name="cancel_payment")
    async def cancel_payment(self, request: CancelRequest) -> CancelOutcome:
        """The debtor agent's recall, decided between the payment's steps: the obligation
        released and the payment CANCELLED in one transaction if nothing has settled it
        or can (deltran/cancellations.py); otherwise nothing changes and the answer says
        why. A retry finds it cancelled and answers the same."""
        async with self._sessions() as session, session.begin():
            outcome = await cancellations.cancel_unsettled(session, request)
        if outcome.detail == cancellations.CANCELLED_NOW:
            metrics.payments_final.labels(PaymentStatus.CANCELLED.value).inc()
        return outcome


def _ref(legs: list[Obligation]) -> ObligationCreated:
    """The answer a retry gets: the obligation (or a cross-currency payment's two legs,
    SOURCE first) as created."""
    source = legs[0]
    target = legs[1] if len(legs) > 1 else None
    return ObligationCreated(
        obligation_id=source.id,
        settlement_mode=source.settlement_mode,
        routing_reason=source.routing_reason,
        window_id=source.clearing_window_id,
        target_obligation_id=target.id if target else None,
        target_window_id=target.clearing_window_id if target else None,
    )
