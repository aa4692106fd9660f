"""`/v1/notifications/camt054`: the settlement agent reports fiat bookings."""

from __future__ import annotations

from fastapi import APIRouter, Request

from api.deps import SessionDep, SettingsDep, SettlementAgentDep, TemporalDep
from api.problems import Problem, problem_responses
from api.schemas import NotificationEntryOut, NotificationReceipt
from api.strict_json import StrictJSONRoute
from api.xml_body import rejected_xml, require_xml
from deltran.intake.camt054 import receive_camt054
from deltran.iso20022.camt054 import Camt054Invalid, parse_camt054
from deltran.iso20022.xml_safety import XmlRejected
from deltran.money import format_amount
from deltran.vocabulary import EntryOutcome

router = APIRouter(
    route_class=StrictJSONRoute,
    prefix="/v1/notifications",
    tags=["notifications"],
    responses=problem_responses(400, 403, 415, 422),
)


@router.post(
    "/camt054",
    response_model=NotificationReceipt,
    openapi_extra={"requestBody": {"content": {"application/xml": {"schema": {"type": "string"}}}, "required": True}},
)
async def camt054(
    request: Request, caller: SettlementAgentDep, session: SessionDep, temporal: TemporalDep, settings: SettingsDep
) -> NotificationReceipt:
    """Post a camt.054.001.08. Every entry is stored (matched or not); each booked credit
    is matched to its payment by UETR, else EndToEndId, and signals it. A repeated entry
    (same account, entry reference and transaction) is recognised and changes nothing."""
    require_xml(request, "camt.054")
    body = await request.body()
    try:
        message = parse_camt054(body, max_bytes=settings.max_body_bytes)
    except XmlRejected as exc:
        raise rejected_xml(exc) from None
    except Camt054Invalid as exc:
        raise Problem(
            400,
            "the body is not a valid camt.054.001.08",
            kind="invalid-camt054",
            errors=[{"field": "body", "message": error} for error in exc.errors],
        ) from None
    results = await receive_camt054(
        session, temporal, message, body, actor=caller.identity, start_wait_s=settings.camt054_start_wait_s
    )
    return NotificationReceipt(
        message_id=message.message_id,
        entries=[
            NotificationEntryOut(
                account=r.entry.account,
                entry_reference=r.entry.entry_reference,
                tx_index=r.entry.tx_index,
                end_to_end_id=r.entry.end_to_end_id,
                amount=format_amount(r.entry.amount, r.entry.currency),
                currency=r.entry.currency,
                status=r.entry.status,
                matched=r.outcome == EntryOutcome.MATCHED,
                outcome=r.outcome,
                detail=r.detail,
                payment_id=r.payment_id,
                duplicate=r.duplicate,
            )
            for r in results
        ],
    )
