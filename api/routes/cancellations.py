"""`/v1/cancellations` (a debtor agent recalls its payment) and `/v1/investigations` (the
creditor agent's recalls of settled payments, to answer). The decisions live in
deltran/cancellations.py; a recall before settlement is the payment workflow's."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import async_sessionmaker

from api import cursor
from api.deps import BankDep, Caller, SessionDep, SettingsDep
from api.media import XML_TYPES
from api.problems import Problem, problem_responses
from api.schemas import (
    CancellationIn,
    CancellationOut,
    InvestigationList,
    InvestigationOut,
    InvestigationRejection,
)
from api.strict_json import StrictJSONRoute
from api.xml_body import rejected_xml
from deltran import audit, cancellations
from deltran.cancellations import CancellationReason, RecallAnswer, RecallRefusal
from deltran.db.tables import Cancellation, Payment
from deltran.iso20022.camt029 import Resolution, build_camt029
from deltran.iso20022.camt056 import Camt056Invalid, RecallRequest, parse_camt056
from deltran.iso20022.xml_safety import XmlRejected
from deltran.vocabulary import CancellationStatus

router = APIRouter(
    tags=["recalls"], responses=problem_responses(400, 403, 404, 409, 415, 422, 503), route_class=StrictJSONRoute
)
MAX_PAGE = 500
_RECALL_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/CancellationIn"}},
        "application/xml": {"schema": {"type": "string", "description": "camt.056.001.12, one payment"}},
    },
}


def _bank(caller) -> cancellations.Bank:
    assert caller.participant_id is not None and caller.bic is not None
    return cancellations.Bank(id=caller.participant_id, bic=caller.bic)


def _sessions(request: Request) -> async_sessionmaker:
    return request.app.state.sessions


def answer_of(cancellation: Cancellation, payment: Payment) -> CancellationOut:
    refused = cancellation.status == CancellationStatus.RJCR
    return CancellationOut(
        payment_id=payment.id,
        status=cancellation.status,
        reason=(cancellation.status_reason_code if refused else None) or cancellation.reason_code,
        reason_detail=cancellation.status_reason if refused else cancellation.reason,
        cancellation_id=cancellation.id,
        case_id=cancellation.case_id,
        payment_status=payment.status,
    )


@router.post(
    "/v1/cancellations",
    response_model=CancellationOut,
    openapi_extra={"requestBody": _RECALL_BODY},
    responses={200: {"content": {"application/xml": {}}, "description": "camt.029.001.14 when sent a camt.056"}},
)
async def cancel(request: Request, caller: BankDep, settings: SettingsDep) -> Response:
    """Recall a payment you sent, as JSON (`payment_id`, ISO `reason`) or as a camt.056.001.12
    (`application/xml`, one payment, named by OrgnlUETR and/or OrgnlEndToEndId; answered
    with a camt.029.001.14). Not settled yet: it is cancelled at once (CNCL) — its
    obligation leaves its open window, fiat booked for it is to be returned. Settled, or
    netted in a window that has closed: its creditor agent decides (PDCR; an
    investigation at `GET /v1/investigations`). Already rejected or expired: RJCR (ARJR).
    One recall per payment: asking again answers as the first time. 503 (retry) while the
    payment's workflow cannot answer."""
    bank = _bank(caller)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    sessions = _sessions(request)
    message: RecallRequest | None = None
    if content_type in XML_TYPES:
        message = _parse_camt056(body, settings.max_body_bytes, bank.bic)
        async with sessions() as session:
            payment_id = await cancellations.payment_named(
                session, bank, message.uetr, message.end_to_end_id, message.original_message_id
            )
        recall = cancellations.Recall(
            payment_id=payment_id,
            reason_code=CancellationReason(message.reason_code or ""),  # checked in _parse_camt056
            reason=message.additional_info[:105] if message.additional_info else None,
            case_id=message.case_id,
            message_name="camt.056.001.12",
        )
    elif content_type == "application/json":
        try:
            parsed = CancellationIn.model_validate_json(body)
        except ValidationError as exc:
            raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None
        recall = cancellations.Recall(
            payment_id=parsed.payment_id, reason_code=CancellationReason(parsed.reason), reason=parsed.additional_info
        )
    else:
        raise Problem(415, "send application/json or application/xml (camt.056.001.12)", kind="unsupported-media-type")
    # Temporal only when the payment has not settled: a repeat, or a settled payment's
    # recall, is answered from PostgreSQL alone.
    temporal = request.app.state.temporal.get
    answer = await cancellations.recall(sessions, temporal, bank, recall, settings.camt054_start_wait_s)
    await _audit(sessions, caller, answer, recall)
    if message is None:
        return Response(answer_of(answer.cancellation, answer.payment).model_dump_json(), media_type="application/json")
    # Written and validated against the XSD: off the event loop.
    xml = await asyncio.to_thread(_camt029, answer, message, settings.bic)
    return Response(xml, media_type="application/xml")


def _parse_camt056(body: bytes, max_bytes: int, bic: str) -> RecallRequest:
    try:
        message = parse_camt056(body, max_bytes=max_bytes)
    except XmlRejected as exc:
        raise rejected_xml(exc) from None
    except Camt056Invalid as exc:
        raise Problem(
            400, "the body is not a valid camt.056.001.12", kind="invalid-camt056", errors=exc.errors
        ) from None
    if message.assigner_bic is None:
        raise Problem(
            422,
            "the recall's assigner must be an agent named by its BIC (Assgnmt/Assgnr/Agt/FinInstnId/BICFI)",
            kind="assigner-not-an-agent",
            errors=[{"field": "Assgnmt/Assgnr/Agt/FinInstnId/BICFI", "message": f"must be {bic}"}],
        )
    if message.assigner_bic != bic:
        raise Problem(
            403,
            f"the recall's assigner (Assgnmt/Assgnr/Agt) {message.assigner_bic} is not the authenticated bank {bic}",
            kind="not-your-bic",
            errors=[{"field": "Assgnmt/Assgnr/Agt/FinInstnId/BICFI", "message": f"must be {bic}"}],
        )
    if message.reason_code not in {r.value for r in CancellationReason}:
        raise Problem(
            422,
            f"cancellation reason {message.reason_code} is not one DelTran handles",
            kind="unsupported-reason",
            errors=[{"field": "CxlRsnInf/Rsn/Cd", "message": "one of " + ", ".join(CancellationReason)}],
        )
    return message


def _camt029(answer: RecallAnswer, message: RecallRequest, deltran_bic: str) -> bytes:
    cancellation, payment = answer.cancellation, answer.payment
    refused = cancellation.status == CancellationStatus.RJCR
    return build_camt029(
        Resolution(
            message_id="DTR" + uuid.uuid4().hex.upper()[:32],  # each answer its own message
            created_at=datetime.now(UTC),
            from_bic=deltran_bic,
            to_bic=payment.debtor_agent_bic,
            case_id=message.case_id,
            status=cancellation.status,
            end_to_end_id=payment.end_to_end_id,
            uetr=payment.uetr,
            amount=payment.amount,
            currency=payment.currency,
            original_message_id=payment.message_id,
            reason_code=cancellation.status_reason_code if refused else None,
            additional_info=cancellation.status_reason if refused else None,
        )
    )


async def _audit(sessions: async_sessionmaker, caller: Caller, answer: RecallAnswer, recall) -> None:
    async with sessions() as session, session.begin():
        await audit.record(
            session,
            actor=caller.identity,
            action="payment.recall",
            subject=str(recall.payment_id),
            result=answer.cancellation.status,
            details={"reason": recall.reason_code.value, "case_id": answer.cancellation.case_id},
        )


def _investigation(cancellation: Cancellation, payment: Payment) -> InvestigationOut:
    return InvestigationOut.model_validate(cancellations.cancellation_data(cancellation, payment))


@router.get("/v1/investigations", response_model=InvestigationList)
async def investigations(
    caller: BankDep,
    session: SessionDep,
    cursor_: Annotated[str | None, Query(alias="cursor", max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> InvestigationList:
    """Recalls of payments you received that had settled, still to answer (PDCR), oldest
    first: reject one (`POST /v1/investigations/{id}/reject`), or return the payment."""
    after = None
    if cursor_ is not None:
        position = cursor.decode(cursor_)
        after = (position.at, position.id)
    rows = await cancellations.investigations(session, _bank(caller), limit=limit + 1, after=after)
    page = rows[:limit]
    last = page[-1][0] if len(rows) > limit else None
    return InvestigationList(
        items=[_investigation(c, p) for c, p in page],
        next_cursor=None if last is None else cursor.encode(cursor.Position(at=last.created_at, id=last.id)),
    )


@router.post("/v1/investigations/{cancellation_id}/accept", response_model=InvestigationOut)
async def accept(cancellation_id: Annotated[uuid.UUID, Path()], request: Request, caller: BankDep) -> InvestigationOut:
    """Accept a recall of a payment you received: all of it not yet returned goes back to
    its debtor agent at once (a return, reason FOCR; `return_id`), and the recall is
    answered CNCL. Accepting it again changes nothing; a recall refused, or of a payment
    not yet settled, is a 409."""
    sessions = _sessions(request)
    cancellation, payment = await cancellations.accept(sessions, _bank(caller), cancellation_id)
    async with sessions() as session, session.begin():
        await audit.record(
            session,
            actor=caller.identity,
            action="investigation.accept",
            subject=str(cancellation_id),
            result=cancellation.status,
            details={"return_id": str(cancellation.return_id)},
        )
    return _investigation(cancellation, payment)


@router.post("/v1/investigations/{cancellation_id}/reject", response_model=InvestigationOut)
async def reject(
    cancellation_id: Annotated[uuid.UUID, Path()],
    body: InvestigationRejection,
    request: Request,
    caller: BankDep,
) -> InvestigationOut:
    """Refuse a recall of a payment you received: its debtor agent is told (RJCR, your
    reason). Refusing it again with the same reason changes nothing; a recall already
    answered otherwise is a 409."""
    sessions = _sessions(request)
    cancellation, payment = await cancellations.reject(
        sessions, _bank(caller), cancellation_id, RecallRefusal(body.reason_code), body.reason
    )
    async with sessions() as session, session.begin():
        await audit.record(
            session,
            actor=caller.identity,
            action="investigation.reject",
            subject=str(cancellation_id),
            result=cancellation.status,
            details={"reason_code": body.reason_code},
        )
    return _investigation(cancellation, payment)
