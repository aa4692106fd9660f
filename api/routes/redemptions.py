"""`/v1/redemptions` (a bank turns tokens back into fiat) and `/v1/payouts` (what the
settlement agent is to pay out, and its refusals). The ledger steps live in
deltran/redemptions.py; the durable part runs in workflows/redemption.py."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Path, Query, Request, Response, status
from sqlalchemy import literal, null, select, tuple_, union_all
from temporalio.service import RPCError

from api import cursor
from api.deps import AdminDep, BankDep, CallerDep, SessionDep, SettingsDep
from api.problems import Problem, problem_responses
from api.schemas import PayoutList, PayoutOut, PayoutRefusal, RedemptionAccepted, RedemptionIn, RedemptionOut
from api.strict_json import StrictJSONRoute
from deltran import audit, reconciliation, redemptions, refunds
from deltran.db.tables import Participant, Redemption, Refund
from deltran.errors import ServiceUnavailable
from deltran.money import format_amount
from deltran.observability import metrics
from deltran.temporal.contract import RedemptionContract
from deltran.vocabulary import ParticipantStatus, RedemptionStatus, RefundStatus

log = logging.getLogger("deltran.api")
router = APIRouter(
    tags=["redemptions"], responses=problem_responses(400, 403, 404, 409, 422), route_class=StrictJSONRoute
)

IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=100,
        pattern=r"^[\x21-\x7e]+$",
        description="the client's key: the same request again returns the same redemption",
    ),
]


@router.post("/v1/redemptions", status_code=status.HTTP_202_ACCEPTED, response_model=RedemptionAccepted)
async def redeem(
    body: RedemptionIn,
    request: Request,
    response: Response,
    bank: BankDep,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey,
) -> RedemptionAccepted:
    """Turn tokens back into fiat: the amount is reserved at once (no longer spendable;
    more than the bank's spendable tokens is a 422 and reserves nothing), the payout is
    listed for the settlement agent, and once its DBIT camt.054 (EndToEndId = `reference`)
    is booked the tokens are burned; a refusal or the deadline releases them. The same
    Idempotency-Key again returns the same redemption (200); with other content a 409."""
    if body.currency not in settings.supported_currencies:
        raise Problem(422, f"{body.currency} is not cleared by DelTran", kind="currency-not-cleared",
                      errors=[{"field": "currency", "message": "not cleared by DelTran"}])  # fmt: skip
    new = redemptions.NewRedemption(
        currency=body.currency,
        amount=body.decimal_amount,
        payout_iban=body.payout_account.iban,
        payout_account=body.payout_account.account,
        idempotency_key=idempotency_key,
    )
    assert bank.participant_id is not None
    async with session.begin():
        if await reconciliation.breaker_is_open(session, body.currency):
            raise Problem(
                409,
                f"{body.currency}'s circuit breaker is open (its backing does not reconcile): no payout until closed",
                kind="circuit-breaker-open",
            )
        standing = await session.scalar(select(Participant.status).where(Participant.id == bank.participant_id))
        if standing != ParticipantStatus.ACTIVE:
            raise Problem(403, f"{bank.bic} is {standing}: it cannot redeem", kind="participant-suspended")
        deadline_s = settings.redemption_deadline_s
        redemption, created = await redemptions.reserve(session, bank.participant_id, new, deadline_s)
        if created:
            await audit.record(
                session,
                actor=bank.identity,
                action="redemption.request",
                subject=str(redemption.id),
                result="reserved",
                details={"currency": new.currency, "amount": str(new.amount), "reference": redemption.reference},
            )
        accepted = RedemptionAccepted(
            redemption_id=redemption.id, status=redemption.status, reference=redemption.reference
        )
        workflow_due = redemption.status == RedemptionStatus.RESERVED
    if workflow_due:
        try:
            await redemptions.start_workflow(await request.app.state.temporal.get(), settings, redemption)
        except (RPCError, ServiceUnavailable) as error:  # reserved and recorded: the sweeper starts it
            log.warning("redemption workflow not started (%s): the sweeper starts it", error)
    if not created:
        response.status_code = status.HTTP_200_OK
    return accepted


def _account(r: Redemption) -> dict[str, str]:
    return {"iban": r.payout_iban} if r.payout_iban else {"account": r.payout_account or ""}


@router.get("/v1/redemptions/{redemption_id}", response_model=RedemptionOut)
async def read_redemption(redemption_id: uuid.UUID, caller: CallerDep, session: SessionDep) -> RedemptionOut:
    """The redemption (its bank, admin and the settlement agent see it; other banks 404)."""
    found = (
        await session.execute(
            select(Redemption, Participant.bic)
            .join(Participant, Participant.id == Redemption.participant_id)
            .where(Redemption.id == redemption_id)
        )
    ).one_or_none()
    if found is None or (caller.role == "bank" and found[0].participant_id != caller.participant_id):
        raise Problem(404, f"redemption {redemption_id} not found", kind="redemption-not-found")
    r, bic = found
    return RedemptionOut(
        redemption_id=r.id, bic=bic, status=r.status, reference=r.reference, currency=r.currency,
        amount=format_amount(r.amount, r.currency), payout_account=_account(r), deadline=r.deadline,
        release_reason=r.release_reason, created_at=r.created_at, updated_at=r.updated_at,
    )  # fmt: skip


MAX_PAGE = 500


@router.get("/v1/payouts", response_model=PayoutList)
async def payouts(
    caller: CallerDep,
    session: SessionDep,
    settings: SettingsDep,
    status_: Annotated[RedemptionStatus | None, Query(alias="status")] = RedemptionStatus.PAYOUT_INSTRUCTED,
    cursor_: Annotated[str | None, Query(alias="cursor", max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> PayoutList:
    """The payouts the settlement agent is to make (status PAYOUT_INSTRUCTED by default),
    oldest first: pay each to its account and book it with a DBIT camt.054 whose
    EndToEndId is its `reference`. `kind` redemption: a bank's tokens turned back into
    fiat (or refuse it: POST /v1/payouts/{reference}/refusal); `kind` refund: fiat booked
    for a payment that can no longer settle (rejected, expired, cancelled, or funded
    twice), paid back to the bank that sent it (`payout_account`: its BIC)."""
    if caller.role not in ("settlement_agent", "admin"):
        raise HTTPException(status_code=403, detail="payouts are for the settlement agent (and admin)")
    redeeming = (
        select(
            Redemption.created_at, Redemption.id, Redemption.reference, Participant.bic, Redemption.currency,
            Redemption.amount, literal("redemption").label("kind"), Redemption.status, Redemption.payout_iban,
            Redemption.payout_account, Redemption.deadline,
        )
        .join(Participant, Participant.id == Redemption.participant_id)
        .where(Redemption.status != RedemptionStatus.RESERVED)
    )  # fmt: skip
    if status_ is not None:
        redeeming = redeeming.where(Redemption.status == status_)
    if status_ == RedemptionStatus.PAYOUT_INSTRUCTED:  # booked, burning: not to be paid again
        redeeming = redeeming.where(Redemption.notification_id.is_(None))
    refunding = select(
        Refund.created_at, Refund.id, Refund.reference, Participant.bic, Refund.currency, Refund.amount,
        literal("refund").label("kind"), Refund.status, null().label("payout_iban"), null().label("payout_account"),
        (Refund.instructed_at + timedelta(seconds=settings.redemption_deadline_s)).label("deadline"),
    ).join(Participant, Participant.id == Refund.participant_id).where(
        Refund.status != RefundStatus.BY_HAND  # returned outside DelTran: nothing for the agent
    )  # fmt: skip
    if status_ is not None:
        refunding = refunding.where(Refund.status == status_.value)
    both = union_all(redeeming, refunding).subquery()
    query = select(both).order_by(both.c.created_at, both.c.id).limit(limit + 1)
    if cursor_ is not None:
        after = cursor.decode(cursor_)
        query = query.where(tuple_(both.c.created_at, both.c.id) > tuple_(after.at, after.id))
    rows = (await session.execute(query)).all()
    page = rows[:limit]
    last = page[-1] if len(rows) > limit else None
    return PayoutList(
        items=[
            PayoutOut(
                reference=r.reference,
                bic=r.bic,
                currency=r.currency,
                amount=format_amount(r.amount, r.currency),
                kind=r.kind,
                status=r.status,
                payout_account=(
                    {"bic": r.bic}
                    if r.kind == "refund"
                    else {"iban": r.payout_iban}
                    if r.payout_iban
                    else {"account": r.payout_account or ""}
                ),
                deadline=r.deadline,
            )  # fmt: skip
            for r in page
        ],
        next_cursor=None if last is None else cursor.encode(cursor.Position(at=last.created_at, id=last.id)),
    )


@router.post("/v1/payouts/{reference}/refusal", response_model=RedemptionOut)
async def refuse_payout(
    reference: Annotated[str, Path(pattern=r"^RDM-[0-9A-F]{28}$")],
    body: PayoutRefusal,
    request: Request,
    caller: CallerDep,
    session: SessionDep,
) -> RedemptionOut:
    """The settlement agent will not make this payout (the account is closed, say): the
    redemption is RELEASED and its tokens go back to the bank. A payout already booked
    cannot be refused (409)."""
    if caller.role not in ("settlement_agent", "admin"):
        raise HTTPException(status_code=403, detail="only the settlement agent refuses payouts")
    async with session.begin():
        before = await session.scalar(select(Redemption.status).where(Redemption.reference == reference))
        released = await redemptions.refuse_payout(session, reference, body.reason)
        await audit.record(session, actor=caller.identity, action="payout.refuse", subject=reference, result="released",
                           details={"reason": body.reason})  # fmt: skip
        redemption_id, workflow_id = released.id, released.workflow_id
        after, currency = released.status, released.currency
    if after == RedemptionStatus.RELEASED and before != RedemptionStatus.RELEASED:  # counted once, after the commit
        metrics.redemptions.labels(currency, RedemptionStatus.RELEASED.value).inc()
    try:
        await (
            (await request.app.state.temporal.get())
            .get_workflow_handle(workflow_id)
            .signal(RedemptionContract.payout_changed)
        )
    except (RPCError, ServiceUnavailable) as error:
        log.warning("redemption %s not told of its refusal (%s); it looks by itself", workflow_id, error)
    return await read_redemption(redemption_id, caller, session)


RefundReference = Annotated[str, Path(pattern=r"^RFD-[0-9A-F]{28}$")]


async def _refund_out(session, refund: Refund, settings) -> PayoutOut:
    bic = await session.scalar(select(Participant.bic).where(Participant.id == refund.participant_id))
    return PayoutOut(
        reference=refund.reference,
        bic=bic,
        currency=refund.currency,
        amount=format_amount(refund.amount, refund.currency),
        kind="refund",
        status=refund.status,
        payout_account={"bic": bic},
        deadline=refund.instructed_at + timedelta(seconds=settings.redemption_deadline_s),
    )


@router.post("/v1/admin/refunds/{reference}/hold", response_model=PayoutOut)
async def hold_refund(
    reference: RefundReference, body: PayoutRefusal, caller: AdminDep, session: SessionDep, settings: SettingsDep
) -> PayoutOut:
    """Hold a refund not yet paid (compliance asks, or it was returned some other way):
    off the settlement agent's list (`HELD`) until released, listed by the end-of-day run
    (`refund_held`) meanwhile; a DBIT that books it anyway is an exception to reverse. The
    bank is not told (a compliance hold must not tip it off). Paid already: `409`."""
    async with session.begin():
        refund = await refunds.hold(session, reference, body.reason)
        await audit.record(session, actor=caller.identity, action="refund.hold", subject=reference, result="ok",
                           details={"reason": refund.held_reason, "asked": body.reason})  # fmt: skip
        return await _refund_out(session, refund, settings)


@router.post("/v1/admin/refunds/{reference}/release", response_model=PayoutOut)
async def release_refund(
    reference: RefundReference, caller: AdminDep, session: SessionDep, settings: SettingsDep
) -> PayoutOut:
    """Put a held refund back on the settlement agent's list: its payout deadline starts
    again. One already on the list: nothing changes; paid, or returned by hand: `409`."""
    async with session.begin():
        refund = await refunds.release(session, reference)
        await audit.record(session, actor=caller.identity, action="refund.release", subject=reference, result="ok")
        return await _refund_out(session, refund, settings)
