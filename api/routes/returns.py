"""`/v1/returns`: a creditor agent sends a settled payment back (pacs.004 or JSON), and
both agents read the return (JSON, or the pacs.004 in their own references). The ledger
step lives in deltran/returns.py."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Header, Path, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy import select

from api.deps import BankDep, CallerDep, SessionDep, SettingsDep
from api.media import XML_TYPES
from api.problems import Problem, problem_responses
from api.schemas import ReturnIn, ReturnOut
from api.strict_json import StrictJSONRoute
from api.xml_body import rejected_xml
from deltran import audit, returns
from deltran.db.tables import Obligation, Payment, PaymentReturn
from deltran.iso20022.pacs004 import Pacs004Invalid, PaymentReturnMessage, build_pacs004, parse_pacs004
from deltran.iso20022.xml_safety import XmlRejected
from deltran.payment_references import references_for
from deltran.returns import NewReturn
from deltran.vocabulary import ObligationLeg, ReturnReason

router = APIRouter(
    tags=["returns"], responses=problem_responses(400, 403, 404, 409, 415, 422), route_class=StrictJSONRoute
)
_RETURN_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/ReturnIn"}},
        "application/xml": {"schema": {"type": "string", "description": "pacs.004.001.09, one TxInf"}},
    },
}
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=96,  # stored as "key:<key>" in 100 characters
        pattern=r"^[\x21-\x7e]+$",
        description="JSON only: the same key again is the same return. Without one, the same request"
        " (payment, amount, reason) again is the same return",
    ),
]


def return_out(row: PaymentReturn, payment: Payment) -> ReturnOut:
    return ReturnOut.model_validate(returns.return_data(row, payment))


@router.post(
    "/v1/returns",
    status_code=status.HTTP_201_CREATED,
    response_model=ReturnOut,
    openapi_extra={"requestBody": _RETURN_BODY},
)
async def return_payment(
    request: Request,
    response: Response,
    caller: BankDep,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> ReturnOut:
    """Send back a payment you received and that has settled, in whole or in part, with
    an ISO return reason: as JSON (`payment_id`, `amount`, `reason_code`) or as a
    pacs.004.001.09 (`application/xml`, one TxInf naming the payment by the OrgnlUETR,
    OrgnlTxId or OrgnlEndToEndId DelTran forwarded it with; its RtrId identifies the
    return). Its tokens move back to the debtor agent at once: `201`. All of a payment's
    returns never exceed it (`422`); the same return again answers `200` and moves
    nothing; a return of tokens you no longer hold is a `422`."""
    assert caller.participant_id is not None and caller.bic is not None
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    if content_type in XML_TYPES:
        message = _parse_pacs004(body, settings.max_body_bytes, caller.bic)
        async with session.begin():
            payment_id = await returns.payment_named(
                session, caller.bic, message.uetr, message.transaction_id, message.end_to_end_id
            )
        new = NewReturn(
            payment_id=payment_id,
            amount=message.amount,
            reason_code=ReturnReason(message.reason_code or ""),
            return_key=f"pacs004:{message.return_id}",
            reason=message.additional_info[:105] if message.additional_info else None,
            message_id=message.message_id,
        )
        currency = message.currency
    elif content_type == "application/json":
        try:
            parsed = ReturnIn.model_validate_json(body)
        except ValidationError as exc:
            raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None
        amount = Decimal(parsed.amount)
        new = NewReturn(
            payment_id=parsed.payment_id,
            amount=amount,
            reason_code=ReturnReason(parsed.reason_code),
            return_key=(
                f"key:{idempotency_key}"
                if idempotency_key
                else returns.fingerprint_key(parsed.payment_id, amount, parsed.reason_code)
            ),
            reason=parsed.reason,
        )
        currency = None
    else:
        raise Problem(415, "send application/json or application/xml (pacs.004.001.09)", kind="unsupported-media-type")
    async with session.begin():
        if currency is not None:
            payment_currency = await session.scalar(select(Payment.currency).where(Payment.id == new.payment_id))
            if payment_currency is not None and payment_currency != currency:
                raise Problem(
                    422,
                    f"the return is in {currency}; the payment was in {payment_currency}",
                    kind="currency-mismatch",
                    errors=[{"field": "TxInf/RtrdIntrBkSttlmAmt/@Ccy", "message": f"must be {payment_currency}"}],
                )
        returned = await returns.return_payment(session, (caller.participant_id, caller.bic), new)
        if returned.created:
            await audit.record(
                session,
                actor=caller.identity,
                action="payment.return",
                subject=str(new.payment_id),
                result=returned.payment.status,
                details={"return_id": str(returned.row.id), "amount": str(new.amount), "reason": new.reason_code},
            )
        out = return_out(returned.row, returned.payment)
    if not returned.created:
        response.status_code = status.HTTP_200_OK
    return out


def _parse_pacs004(body: bytes, max_bytes: int, bic: str) -> PaymentReturnMessage:
    try:
        message = parse_pacs004(body, max_bytes=max_bytes)
    except XmlRejected as exc:
        raise rejected_xml(exc) from None
    except Pacs004Invalid as exc:
        raise Problem(
            400, "the body is not a valid pacs.004.001.09", kind="invalid-pacs004", errors=exc.errors
        ) from None
    if message.instructing_agent_bic not in (None, bic):
        raise Problem(
            403,
            f"the return's instructing agent {message.instructing_agent_bic} is not the authenticated bank {bic}",
            kind="not-your-bic",
            errors=[{"field": "GrpHdr/InstgAgt/FinInstnId/BICFI", "message": f"must be {bic}"}],
        )
    if message.reason_code not in {r.value for r in ReturnReason}:
        raise Problem(
            422,
            f"return reason {message.reason_code} is not one DelTran handles",
            kind="unsupported-reason",
            errors=[{"field": "TxInf/RtrRsnInf/Rsn/Cd", "message": "one of " + ", ".join(ReturnReason)}],
        )
    return message


async def _visible_return(session, caller, return_id: uuid.UUID) -> tuple[PaymentReturn, Payment]:
    """The return and its payment, for one of the payment's two agents or admin; 404 to
    anyone else, as for a return that does not exist."""
    row = await session.get(PaymentReturn, return_id)
    payment = await session.get(Payment, row.payment_id) if row is not None else None
    if row is None or payment is None:
        raise Problem(404, f"return {return_id} not found", kind="return-not-found")
    agents = (payment.debtor_agent_bic, payment.creditor_agent_bic)
    if not (caller.role == "admin" or (caller.role == "bank" and caller.bic in agents)):
        raise Problem(404, f"return {return_id} not found", kind="return-not-found")
    return row, payment


@router.get("/v1/returns/{return_id}", response_model=ReturnOut)
async def read_return(return_id: Annotated[uuid.UUID, Path()], caller: CallerDep, session: SessionDep) -> ReturnOut:
    """A return (its two agents and admin see it; anyone else 404)."""
    row, payment = await _visible_return(session, caller, return_id)
    return return_out(row, payment)


@router.get(
    "/v1/returns/{return_id}/pacs004",
    response_class=Response,
    responses={200: {"content": {"application/xml": {}}, "description": "pacs.004.001.09"}},
)
async def return_pacs004(
    return_id: Annotated[uuid.UUID, Path()], caller: BankDep, session: SessionDep, settings: SettingsDep
) -> Response:
    """The return as a pacs.004.001.09 in the caller's own references: for the debtor
    agent, DelTran's message to it (its pacs.008's EndToEndId, UETR and MsgId); for the
    creditor agent, the return as it made it (the forwarded references)."""
    row, payment = await _visible_return(session, caller, return_id)
    obligation_id = await session.scalar(
        select(Obligation.id).where(Obligation.payment_id == payment.id, Obligation.leg == ObligationLeg.SOURCE)
    )
    assert caller.bic is not None
    refs = references_for(payment, obligation_id, caller.bic)
    debtor_side = caller.bic == payment.debtor_agent_bic
    message = PaymentReturnMessage(
        message_id=row.message_id if (row.message_id and not debtor_side) else "DTR" + row.id.hex.upper()[:32],
        created_at=row.created_at.astimezone(UTC) if row.created_at else datetime.now(UTC),
        instructing_agent_bic=settings.bic if debtor_side else payment.creditor_agent_bic,
        instructed_agent_bic=payment.debtor_agent_bic if debtor_side else settings.bic,
        return_id=row.return_key.split(":", 1)[1][:35] if row.return_key.startswith("pacs004:") else row.id.hex[:35],
        amount=row.amount,
        currency=row.currency,
        reason_code=row.reason_code,
        additional_info=row.reason,
        uetr=uuid.UUID(refs.uetr) if refs.uetr else None,
        end_to_end_id=refs.end_to_end_id,
        transaction_id=refs.transaction_id,
        original_message_id=refs.message_id,
        original_amount=payment.amount,
    )
    xml = await asyncio.to_thread(partial(build_pacs004, message, original_message_name=refs.message_name))
    return Response(xml, media_type="application/xml")
