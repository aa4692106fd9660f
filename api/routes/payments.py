"""`/v1/payments`: banks submit payments and read their status."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from api import cursor
from api.deps import BankDep, Caller, CallerDep, SessionDep, SettingsDep, TemporalDep
from api.forwarding import forwarded_pacs008
from api.media import XML_TYPES, wants_xml
from api.pacs008_intake import payments_from_pacs008
from api.payment_views import PageQuery, details_of, page_of_payments, payment_out
from api.problems import Problem, problem_responses
from api.schemas import PacsTransactionAccepted, PaymentAccepted, PaymentIn, PaymentList, PaymentOut
from api.status_report import fx_quotes_of, pacs002_for
from api.strict_json import StrictJSONRoute
from api.times import QueryTime, time_problems
from api.xml_body import rejected_xml
from deltran import statements
from deltran.db.tables import FxQuote, Participant, Payment
from deltran.domain.statements import Posting
from deltran.intake.payments import NewPayment, submit_payments
from deltran.iso20022.camt054_posting import build_posting_notification
from deltran.iso20022.pacs008 import Pacs008Invalid, parse_pacs008
from deltran.iso20022.xml_safety import XmlRejected
from deltran.money import MINOR_UNITS
from deltran.temporal.steps import RetryingStep, retrying_step
from deltran.vocabulary import FINAL_PAYMENT_STATUSES, PaymentStatus

router = APIRouter(
    route_class=StrictJSONRoute,
    prefix="/v1/payments",
    tags=["payments"],
    responses=problem_responses(400, 403, 404, 409, 415, 422),
)

JSON_TYPES = ("application/json",)

_SUBMIT_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/PaymentIn"}},
        "application/xml": {"schema": {"type": "string", "description": "pacs.008.001.08, bare or with its AppHdr"}},
    },
}


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=PaymentAccepted | list[PacsTransactionAccepted],
    openapi_extra={"requestBody": _SUBMIT_BODY},
)
async def submit(
    request: Request, caller: BankDep, session: SessionDep, temporal: TemporalDep, settings: SettingsDep
) -> PaymentAccepted | list[PacsTransactionAccepted]:
    """Submit a payment as JSON (`application/json`, one payment) or as ISO 20022
    pacs.008.001.08 (`application/xml`, one payment per CdtTrfTxInf). The same payment
    again returns the same `payment_id` and starts nothing new; the same EndToEndId with
    different content is a 409. A pacs.008 with any invalid transaction is rejected
    whole (400) with the reasons per transaction."""
    assert caller.bic is not None
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    if content_type in XML_TYPES:
        message = _parse_pacs008(body, settings.max_body_bytes)
        batch = payments_from_pacs008(message, caller.bic)
        intakes = await submit_payments(
            session, temporal, settings, batch, actor=caller.identity, starts=request.app.state.workflow_starts
        )
        return [
            PacsTransactionAccepted(end_to_end_id=new.end_to_end_id, payment_id=i.payment_id, status=i.status)
            for new, i in zip(batch, intakes, strict=True)
        ]
    if content_type not in JSON_TYPES:
        raise Problem(415, "send application/json or application/xml (pacs.008.001.08)", kind="unsupported-media-type")
    try:
        payment = PaymentIn.model_validate_json(body)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None
    if payment.debtor.agent_bic != caller.bic:
        raise Problem(
            403,
            f"debtor.agent_bic {payment.debtor.agent_bic} is not the authenticated bank {caller.bic}",
            kind="not-your-bic",
            errors=[{"field": "debtor.agent_bic", "message": f"must be {caller.bic}"}],
        )
    new = new_payment_from_json(payment, caller.bic)
    [intake] = await submit_payments(
        session, temporal, settings, [new], actor=caller.identity, starts=request.app.state.workflow_starts
    )
    return PaymentAccepted(payment_id=intake.payment_id, workflow_id=intake.workflow_id, status=intake.status)


def _parse_pacs008(body: bytes, max_bytes: int):
    try:
        return parse_pacs008(body, max_bytes=max_bytes)
    except XmlRejected as exc:
        raise rejected_xml(exc) from None
    except Pacs008Invalid as exc:
        errors = [{"field": e.field, "message": e.message, "transaction": e.transaction} for e in exc.errors]
        raise Problem(
            400, "the pacs.008.001.08 is invalid; nothing was accepted", kind="invalid-pacs008", errors=errors
        ) from None


def new_payment_from_json(body: PaymentIn, instructing_bic: str) -> NewPayment:
    return NewPayment(
        instructing_bic=instructing_bic,
        end_to_end_id=body.end_to_end_id,
        amount=body.decimal_amount,
        currency=body.currency,
        debtor_name=body.debtor.name,
        debtor_iban=body.debtor.iban,
        debtor_account=body.debtor.account,
        debtor_agent_bic=body.debtor.agent_bic,
        creditor_name=body.creditor.name,
        creditor_iban=body.creditor.iban,
        creditor_account=body.creditor.account,
        creditor_agent_bic=body.creditor.agent_bic,
        remittance_info=body.remittance_info,
        uetr=body.uetr,
        urgent=body.urgent,
        fx_quote_id=body.fx_quote_id,
    )


async def _visible_payment(session, caller: Caller, payment_id: uuid.UUID, *, to_fx_provider: bool = False) -> Payment:
    """A bank sees only payments it sent or receives (and, `to_fx_provider`, those whose
    legs it converts); anything else is a 404, as if it did not exist. The settlement
    agent books fiat, it is not party to payments: 403."""
    if caller.role not in ("bank", "admin"):
        raise HTTPException(status_code=403, detail="payments are visible to their banks and to admin only")
    payment = await session.get(Payment, payment_id)
    if payment is None or (
        caller.role == "bank"
        and caller.bic not in (payment.debtor_agent_bic, payment.creditor_agent_bic)
        and not (to_fx_provider and await _converted_by(session, payment, caller.bic))
    ):
        raise Problem(404, f"payment {payment_id} not found", kind="payment-not-found")
    return payment


async def _converted_by(session, payment: Payment, bic: str | None) -> bool:
    """`bic` is the FX provider of the payment's quote (one query)."""
    provider = await session.scalar(
        select(Participant.bic)
        .join(FxQuote, FxQuote.provider_id == Participant.id)
        .where(FxQuote.payment_id == payment.id)
    )
    return provider is not None and provider == bic


@router.get(
    "/{payment_id}/pacs002",
    response_class=Response,
    responses={200: {"content": {"application/xml": {}}, "description": "pacs.002.001.10 status report"}},
)
async def pacs002(payment_id: uuid.UUID, caller: CallerDep, session: SessionDep, settings: SettingsDep) -> Response:
    """The payment's status as an ISO 20022 pacs.002.001.10: PDNG while screening, ACSP
    awaiting settlement, ACSC settled, RJCT with the ISO reason code when rejected or
    expired, CANC with the recall's reason when cancelled. A cross-currency payment's FX
    provider reads it too, as it reads the payment."""
    payment = await _visible_payment(session, caller, payment_id, to_fx_provider=True)
    quote = (await fx_quotes_of(session, [payment.id])).get(payment.id)
    return Response(pacs002_for(payment, settings.bic, quote), media_type="application/xml")


_NOT_CREDITED = {
    PaymentStatus.REJECTED: "it was rejected and never forwarded",
    PaymentStatus.EXPIRED: "it expired unfunded and was never forwarded",
    PaymentStatus.CANCELLED: "it was cancelled by its debtor agent before it settled",
}


async def _payment_posting(session, payment: Payment, bic: str) -> Posting:
    """The payment's posting on `bic`'s token account; a 409 until the obligation settles."""
    posting = await statements.payment_posting(session, payment.id, bic)
    if posting is None:
        why = _NOT_CREDITED.get(PaymentStatus(payment.status), "its obligation has not settled yet")
        raise Problem(
            409,
            f"payment {payment.id} is {payment.status}: {why}; DelTran forwards a payment when its tokens are credited",
            kind="payment-not-credited",
        )
    return posting


@router.get(
    "/{payment_id}/pacs008",
    response_class=Response,
    responses={
        200: {"content": {"application/xml": {}}, "description": "pacs.008.001.08 as forwarded"},
        **problem_responses(403, 404, 409),
    },
)
async def forwarded(payment_id: uuid.UUID, caller: CallerDep, session: SessionDep, settings: SettingsDep) -> Response:
    """The payment as DelTran forwards it to the creditor agent once its tokens are
    credited: a pacs.008.001.08 with DelTran the instructing agent of this leg and the
    creditor agent the instructed one, the original parties, EndToEndId and UETR, settled
    on the day of the credit. The same message every time it is asked for."""
    payment = await _visible_payment(session, caller, payment_id)
    credit = await _payment_posting(session, payment, payment.creditor_agent_bic)
    quote = (await fx_quotes_of(session, [payment.id])).get(payment.id)
    return Response(forwarded_pacs008(payment, credit, settings.bic, quote), media_type="application/xml")


@router.get(
    "/{payment_id}/camt054",
    response_class=Response,
    responses={
        200: {"content": {"application/xml": {}}, "description": "camt.054.001.08 of the payment's posting"},
        **problem_responses(403, 404, 409),
    },
)
async def notification(
    payment_id: uuid.UUID, caller: CallerDep, session: SessionDep, settings: SettingsDep
) -> Response:
    """The camt.054.001.08 of the payment's posting on the caller's token account: the
    credit for its creditor agent (and for admin), the debit for its debtor agent — the
    entry as the bank's camt.053 statement shows it."""
    payment = await _visible_payment(session, caller, payment_id)
    bic = caller.bic if caller.role == "bank" and caller.bic else payment.creditor_agent_bic
    posting = await _payment_posting(session, payment, bic)
    # A cross-currency payment reaches its creditor agent in the target currency.
    quote = (await fx_quotes_of(session, [payment.id])).get(payment.id)
    currency = quote.target_currency if quote and bic == payment.creditor_agent_bic else payment.currency
    body = build_posting_notification(posting, owner_bic=bic, currency=currency, servicer_bic=settings.bic)
    return Response(body, media_type="application/xml")


@router.get(
    "/{payment_id}",
    response_model=PaymentOut,
    responses={
        200: {"content": {"application/xml": {}}, "description": "JSON, or pacs.002 with Accept: application/xml"}
    },
)
async def read(
    payment_id: uuid.UUID, request: Request, caller: CallerDep, session: SessionDep, settings: SettingsDep
) -> PaymentOut | Response:
    """A payment with its obligation and token (JSON), or its pacs.002 status report
    when the client asks for `Accept: application/xml`. A cross-currency payment's FX
    provider sees it too (its legs: what it is to book, or fund, and when it is paid)."""
    payment = await _visible_payment(session, caller, payment_id, to_fx_provider=True)
    if wants_xml(request.headers.get("accept", "")):
        quote = (await fx_quotes_of(session, [payment.id])).get(payment.id)
        return Response(pacs002_for(payment, settings.bic, quote), media_type="application/xml")
    details = (await details_of(session, [payment]))[payment.id]
    # Everything is read: give the connection back before asking Temporal.
    await session.close()
    step = None if payment.status in FINAL_PAYMENT_STATUSES else await _retrying_step(request, payment.workflow_id)
    return payment_out(payment, details, step=step, last_error=_last_error(step, caller))


MAX_PAGE = 500
QUERY_CANCELED = "57014"  # SQLSTATE: the page's statement_timeout ran out
TOO_BROAD = "these filters match too few of the payments to page through quickly: narrow them with since/until"


@router.get("", response_model=PaymentList, responses=problem_responses(400, 403, 422))
async def list_payments(
    caller: CallerDep,
    session: SessionDep,
    role: Annotated[
        Literal["debtor", "creditor"] | None,
        Query(description="a bank's payments as debtor agent (sent) or creditor agent (received); both if absent"),
    ] = None,
    status: PaymentStatus | None = None,
    currency: Annotated[str | None, Query(pattern=r"^[A-Z]{3}$", examples=["AED"])] = None,
    since: Annotated[QueryTime | None, Query(description="created at or after (with its UTC offset)")] = None,
    until: Annotated[QueryTime | None, Query(description="created before (with its UTC offset)")] = None,
    cursor_: Annotated[str | None, Query(alias="cursor", max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> PaymentList:
    """A bank's payments, sent and received (or one `role`); every payment for admin.
    Newest first, a page at a time: pass `next_cursor` back as `cursor` for the next
    (null on the last). Items are as `GET /v1/payments/{id}` shows a payment, without
    asking Temporal: `step`, `attempt` and `last_error` are null here — read the payment
    for the step it is retrying."""
    if caller.role not in ("bank", "admin"):
        raise HTTPException(status_code=403, detail="payments are visible to their banks and to admin only")
    problems = []
    if role is not None and caller.role != "bank":
        problems.append(("role", "role selects a bank's own payments; admin lists every payment"))
    if currency is not None and currency not in MINOR_UNITS:
        problems.append(("currency", f"{currency} is not an ISO 4217 currency DelTran knows"))
    problems += time_problems(since=since, until=until)
    if not problems and since is not None and until is not None and since >= until:
        problems.append(("until", "must be later than since"))
    if problems:
        raise RequestValidationError(
            [{"loc": ("query", name), "msg": message, "type": "value_error"} for name, message in problems]
        )
    query = PageQuery(
        bic=caller.bic if caller.role == "bank" else None,
        role=role,
        status=status,
        currency=currency,
        since=since,
        until=until,
        after=None if cursor_ is None else cursor.decode(cursor_),
        limit=limit,
    )
    # One snapshot for the page and each payment's obligation and token.
    await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    try:
        payments, next_cursor = await page_of_payments(session, query)
    except DBAPIError as error:
        if getattr(error.orig, "sqlstate", None) != QUERY_CANCELED:
            raise
        raise RequestValidationError([{"loc": ("query", "since"), "msg": TOO_BROAD, "type": "value_error"}]) from None
    details = await details_of(session, payments)
    return PaymentList(items=[payment_out(p, details[p.id]) for p in payments], next_cursor=next_cursor)


async def _retrying_step(request: Request, workflow_id: str) -> RetryingStep | None:
    """The step a payment in flight is retrying; unknown (None) while Temporal is not
    connected or does not answer at once: the rest of the answer, from PostgreSQL, stands."""
    temporal = request.app.state.temporal.connected()
    return None if temporal is None else await retrying_step(temporal, workflow_id)


def _last_error(step: RetryingStep | None, caller: Caller) -> str | None:
    """Operators see the failure's text; a bank sees its kind (e.g. CircuitBreakerOpen),
    never internal detail such as SQL, hosts or file paths."""
    if step is None:
        return None
    if caller.role == "admin":
        return (step.error_message or step.error_type or "")[:500] or None
    return step.error_type or ("failed" if step.error_message else None)
