"""A payment as the API shows it (`PaymentOut`): its row with its obligation (payer and
payee, rolls) and its token — for one payment (`GET /v1/payments/{id}`) or a page of them
(`GET /v1/payments`), in a fixed number of queries either way — and the keyset page of
payments a caller may see, newest first."""

from __future__ import annotations

import heapq
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from api import cursor
from api.schemas import FxLegOut, FxOut, ObligationOut, PaymentOut, ReturnSummaryOut, RollOut, TokenOut
from deltran.db.tables import FxQuote, Obligation, ObligationRoll, Participant, Payment, PaymentReturn, Token
from deltran.money import format_amount, format_rate
from deltran.temporal.steps import RetryingStep
from deltran.vocabulary import ObligationLeg, PaymentStatus


@dataclass(frozen=True)
class Details:
    obligation: ObligationOut | None
    token: TokenOut | None
    returns: tuple[ReturnSummaryOut, ...] = ()
    fx: FxOut | None = None


async def details_of(session: AsyncSession, payments: Sequence[Payment]) -> dict[uuid.UUID, Details]:
    """Each payment's obligation (with its rolls) and token: at most three queries for any
    number, each by a unique index (obligations' payment and leg, obligation_rolls' key,
    tokens.obligation_id), and a fourth, fx_quotes' (which of them are cross-currency)."""
    if not payments:
        return {}
    payment_ids = [p.id for p in payments]
    payer, payee = aliased(Participant), aliased(Participant)
    obligations = (
        await session.execute(
            select(Obligation, payer.bic, payee.bic)
            .join(payer, payer.id == Obligation.payer_id)
            .join(payee, payee.id == Obligation.payee_id)
            .where(Obligation.payment_id.in_(payment_ids))
        )
    ).all()
    rolls: dict[uuid.UUID, list[RollOut]] = defaultdict(list)
    if obligations:
        for roll in await session.scalars(
            select(ObligationRoll)
            .where(ObligationRoll.obligation_id.in_([ob.id for ob, _, _ in obligations]))
            .order_by(ObligationRoll.rolled_at, ObligationRoll.from_window_id)
        ):
            rolls[roll.obligation_id].append(
                RollOut(
                    from_window_id=roll.from_window_id,
                    to_window_id=roll.to_window_id,
                    reason=roll.reason,
                    rolled_at=roll.rolled_at,
                )
            )
    # By obligation (its unique index): a token exists only for its payment's obligation
    # (the creditor agent's: a cross-currency payment's TARGET leg's).
    creditor_legs = {ob.payment_id: ob.id for ob, _, _ in obligations if ob.leg == ObligationLeg.SOURCE}
    creditor_legs |= {ob.payment_id: ob.id for ob, _, _ in obligations if ob.leg == ObligationLeg.TARGET}
    tokens = (
        {
            t.payment_id: t
            for t in await session.scalars(select(Token).where(Token.obligation_id.in_(list(creditor_legs.values()))))
        }
        if obligations
        else {}
    )
    # The payment's own obligation is its SOURCE leg; a cross-currency one's TARGET leg is
    # in `fx`, and its token (the creditor agent's) is the TARGET leg's.
    by_payment = {
        ob.payment_id: (ob, payer_bic, payee_bic)
        for ob, payer_bic, payee_bic in obligations
        if ob.leg == ObligationLeg.SOURCE
    }
    legs: dict[uuid.UUID, list[tuple[Obligation, str, str]]] = defaultdict(list)
    for ob, payer_bic, payee_bic in sorted(obligations, key=lambda row: row[0].leg):
        legs[ob.payment_id].append((ob, payer_bic, payee_bic))
    fx = await _fx_of(session, payment_ids, legs)
    # Only a payment whose status says so has returns: no query for a page of others.
    returned: dict[uuid.UUID, list[ReturnSummaryOut]] = defaultdict(list)
    returned_ids = [p.id for p in payments if p.status in (PaymentStatus.PARTIALLY_RETURNED, PaymentStatus.RETURNED)]
    if returned_ids:
        for r in await session.scalars(
            select(PaymentReturn)
            .where(PaymentReturn.payment_id.in_(returned_ids))
            .order_by(PaymentReturn.created_at, PaymentReturn.id)
        ):
            returned[r.payment_id].append(
                ReturnSummaryOut(
                    return_id=r.id,
                    amount=format_amount(r.amount, r.currency),
                    reason_code=r.reason_code,
                    returned_at=r.created_at,
                )
            )
    out: dict[uuid.UUID, Details] = {}
    for payment_id in payment_ids:
        obligation = None
        if (found := by_payment.get(payment_id)) is not None:
            ob, payer_bic, payee_bic = found
            obligation = ObligationOut(
                id=ob.id,
                status=ob.status,
                amount=format_amount(ob.amount, ob.currency),
                currency=ob.currency,
                payer_bic=payer_bic,
                payee_bic=payee_bic,
                settlement_mode=ob.settlement_mode,
                routing_reason=ob.routing_reason,
                clearing_window_id=ob.clearing_window_id,
                rolled_from_window_id=ob.rolled_from_window_id,
                fallback_reason=ob.fallback_reason,
                rolls=rolls.get(ob.id, []),
                created_at=ob.created_at,
                settled_at=ob.settled_at,
                bank_confirmation_reference=ob.bank_confirmation_reference,
                camt054_entry_reference=ob.camt054_entry_reference,
            )
        token = tokens.get(payment_id)
        out[payment_id] = Details(
            obligation=obligation,
            token=(
                None
                if token is None
                else TokenOut(id=token.id, amount=format_amount(token.amount, token.currency), currency=token.currency)
            ),
            returns=tuple(returned.get(payment_id, ())),
            fx=fx.get(payment_id),
        )
    return out


async def _fx_of(
    session: AsyncSession, payment_ids: list[uuid.UUID], legs: dict[uuid.UUID, list[tuple[Obligation, str, str]]]
) -> dict[uuid.UUID, FxOut]:
    """Those payments that are cross-currency (they took a quote at intake): the quote
    (rate, provider) and both legs once they exist (none while it is screened, or if it
    was rejected). One query by fx_quotes' unique payment_id."""
    quotes = (
        await session.execute(
            select(FxQuote, Participant.bic)
            .join(Participant, Participant.id == FxQuote.provider_id)
            .where(FxQuote.payment_id.in_(payment_ids))
        )
    ).all()
    return {
        payment_id: FxOut(
            quote_id=quote.id,
            rate=format_rate(quote.rate),
            provider_bic=provider_bic,
            fixed=quote.fixed,
            legs=[
                FxLegOut(
                    leg=ob.leg,
                    currency=ob.currency,
                    amount=format_amount(ob.amount, ob.currency),
                    payer_bic=payer_bic,
                    payee_bic=payee_bic,
                    obligation_id=ob.id,
                    status=ob.status,
                    settlement_mode=ob.settlement_mode,
                    clearing_window_id=ob.clearing_window_id,
                    settled_at=ob.settled_at,
                )
                for ob, payer_bic, payee_bic in legs.get(payment_id, ())
            ],
        )
        for quote, provider_bic in quotes
        if (payment_id := quote.payment_id) is not None  # a used quote names its payment
    }


def payment_out(
    payment: Payment, details: Details, *, step: RetryingStep | None = None, last_error: str | None = None
) -> PaymentOut:
    return PaymentOut(
        payment_id=payment.id,
        workflow_id=payment.workflow_id,
        status=payment.status,
        end_to_end_id=payment.end_to_end_id,
        amount=format_amount(payment.amount, payment.currency),
        currency=payment.currency,
        debtor_agent_bic=payment.debtor_agent_bic,
        creditor_agent_bic=payment.creditor_agent_bic,
        created_at=payment.created_at,
        obligation=details.obligation,
        token=details.token,
        rejection_reason=payment.rejection_reason,
        rejection_code=payment.rejection_code,
        risk_score=None if payment.risk_score is None else str(payment.risk_score),
        step=step.step if step else None,
        attempt=step.attempt if step else None,
        last_error=last_error,
        returns=list(details.returns),
        fx=details.fx,
    )


PAGE_TIMEOUT_MS = 3000


@dataclass(frozen=True)
class PageQuery:
    """Which payments, and where the page starts. `bic` None: every payment (admin);
    otherwise the bank's, as debtor agent, creditor agent, or (role None) either."""

    bic: str | None
    role: str | None
    status: str | None
    currency: str | None
    since: datetime | None
    until: datetime | None
    after: cursor.Position | None
    limit: int


async def page_of_payments(session: AsyncSession, q: PageQuery) -> tuple[list[Payment], str | None]:
    """Up to `limit` payments newest first (created_at, then id), and the cursor of the
    next page (None on the last). Each way of reading is an ordered scan of its own index
    (migration 0009); a bank's sent and received payments are two such scans, merged."""
    if q.bic is None:
        scans = [_scan(q, None)]
    elif q.role == "debtor":
        scans = [_scan(q, Payment.debtor_agent_bic)]
    elif q.role == "creditor":
        scans = [_scan(q, Payment.creditor_agent_bic)]
    else:  # a payment never has one bank as both agents (CHECK distinct_agents)
        scans = [_scan(q, Payment.debtor_agent_bic), _scan(q, Payment.creditor_agent_bic)]
    # A filter the bank's payments rarely match walks its index far: bounded, so no
    # query can read a bank's whole history on every call (the route answers 422).
    await session.execute(text(f"SET LOCAL statement_timeout = {PAGE_TIMEOUT_MS}"))
    pages = [list(await session.scalars(scan)) for scan in scans]
    merged = list(heapq.merge(*pages, key=lambda p: (p.created_at, p.id), reverse=True))
    page = merged[: q.limit]
    more = len(merged) > q.limit
    return page, (cursor.encode(cursor.Position(page[-1].created_at, page[-1].id)) if more else None)


def _scan(q: PageQuery, agent_column) -> Select:
    scan = select(Payment)
    if agent_column is not None:
        scan = scan.where(agent_column == q.bic)
    if q.status is not None:
        scan = scan.where(Payment.status == q.status)
    if q.currency is not None:
        scan = scan.where(Payment.currency == q.currency)
    if q.since is not None:
        scan = scan.where(Payment.created_at >= q.since)
    if q.until is not None:
        scan = scan.where(Payment.created_at < q.until)
    if q.after is not None:
        scan = scan.where(tuple_(Payment.created_at, Payment.id) < tuple_(q.after.at, q.after.id))
    # One more than a page: whether there is a next one, without counting.
    return scan.order_by(Payment.created_at.desc(), Payment.id.desc()).limit(q.limit + 1)
