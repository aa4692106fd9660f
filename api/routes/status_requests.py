"""`/v1/status-requests`: a bank asks where its payments are (pacs.028 in, pacs.002 out)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response

from api.deps import BankDep, SessionDep, SettingsDep
from api.problems import Problem, problem_responses
from api.status_report import fx_quotes_of, status_report_for
from api.xml_body import rejected_xml, require_xml
from deltran.iso20022.pacs028 import Pacs028Invalid, parse_pacs028
from deltran.iso20022.xml_safety import XmlRejected
from deltran.status_requests import requested_payments

router = APIRouter(
    prefix="/v1/status-requests", tags=["status requests"], responses=problem_responses(400, 403, 404, 415, 422)
)


@router.post(
    "",
    response_class=Response,
    openapi_extra={"requestBody": {"content": {"application/xml": {"schema": {"type": "string"}}}, "required": True}},
    responses={200: {"content": {"application/xml": {}}, "description": "pacs.002.001.10 status report"}},
)
async def status_request(request: Request, caller: BankDep, session: SessionDep, settings: SettingsDep) -> Response:
    """Post a pacs.028.001.05 about payments you send or receive — by original message
    (OrgnlGrpInf: all its transactions), by OrgnlEndToEndId and/or OrgnlTxId (TxInf), or
    both — in your own references: a debtor agent's are those of the pacs.008 it sent, a
    creditor agent's those of the pacs.008 DelTran forwarded (MsgId "DTF…", TxId the
    obligation). The answer is one pacs.002.001.10 with a TxInfAndSts per payment. Nothing
    is answered if a transaction asked about names none of your payments (404, naming it);
    at most 1,000 transactions asked (400) and payments answered (422); a request whose
    InstgAgt is another bank is 403."""
    require_xml(request, "pacs.028")
    try:
        asked = parse_pacs028(await request.body(), max_bytes=settings.max_body_bytes)
    except XmlRejected as exc:
        raise rejected_xml(exc) from None
    except Pacs028Invalid as exc:
        raise Problem(
            400, "the body is not a valid pacs.028.001.05", kind="invalid-pacs028", errors=exc.errors
        ) from None
    assert caller.bic is not None
    found = await requested_payments(session, caller.bic, asked)
    quotes = await fx_quotes_of(session, [p.payment.id for p in found])
    # Up to a thousand transactions written and validated: off the event loop.
    body = await asyncio.to_thread(
        status_report_for, [(p.payment, p.references) for p in found], settings.bic, caller.bic, quotes
    )
    return Response(body, media_type="application/xml")
