"""ISO 20022 camt.056.001.12 (FI-to-FI payment cancellation request): reader, and a writer
for the banks' side (tests, demo).

A debtor agent recalls one payment per message: one Undrlyg with one TxInf naming it by
OrgnlUETR and/or OrgnlEndToEndId (optionally within its original message, OrgnlGrpInf),
with the reason in CxlRsnInf/Rsn/Cd. The case is the assignment (Assgnmt/Id), whose
assigner is the debtor agent (Assgnr/Agt) and assignee DelTran. A message recalling
several payments is refused (one recall, one answer: a camt.029 per case).
"""

from __future__ import annotations

import copy
import datetime
import uuid
from dataclasses import dataclass

from lxml import etree

from deltran.iso20022.elements import Elements
from deltran.iso20022.xml_safety import find_document, load_schema, parse_xml, schema_errors

NS = "urn:iso:std:iso:20022:tech:xsd:camt.056.001.12"
SCHEMA = "camt.056.001.12.xsd"
_N = {"c": NS}
_E = Elements(NS, "c")
DEFAULT_MAX_BYTES = 256 * 1024


class Camt056Invalid(ValueError):
    """A recall that breaks the schema or does not name exactly one payment."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("invalid camt.056.001.12: " + "; ".join(e["message"] for e in errors))
        self.errors = errors


@dataclass(frozen=True)
class RecallRequest:
    case_id: str  # Assgnmt/Id
    created_at: datetime.datetime  # Assgnmt/CreDtTm
    assigner_bic: str | None  # Assgnmt/Assgnr/Agt/FinInstnId/BICFI
    assignee_bic: str | None  # Assgnmt/Assgne/Agt/FinInstnId/BICFI
    reason_code: str | None  # CxlRsnInf/Rsn/Cd
    additional_info: str | None  # CxlRsnInf/AddtlInf (the first)
    uetr: uuid.UUID | None  # OrgnlUETR
    end_to_end_id: str | None  # OrgnlEndToEndId
    original_message_id: str | None = None  # OrgnlGrpInf/OrgnlMsgId
    original_message_name: str | None = None  # OrgnlGrpInf/OrgnlMsgNmId
    cancellation_id: str | None = None  # CxlId


def parse_camt056(body: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> RecallRequest:
    """Parse and validate a camt.056.001.12 body (bare, or inside an AppHdr envelope);
    XmlRejected if it is not safe XML of this message, Camt056Invalid if it breaks the
    schema or does not recall exactly one payment."""
    doc = copy.deepcopy(find_document(parse_xml(body, max_bytes), NS, "camt.056.001.12"))
    errors = schema_errors(load_schema(SCHEMA), doc)
    if errors:
        raise Camt056Invalid([{"field": "body", "message": e} for e in errors])
    req = doc.find("c:FIToFIPmtCxlReq", _N)
    transactions = req.findall("c:Undrlyg/c:TxInf", _N)
    if len(transactions) != 1:
        raise Camt056Invalid(
            [{"field": "Undrlyg/TxInf", "message": f"{len(transactions)} transactions; recall one payment per message"}]
        )
    tx = transactions[0]
    uetr = _E.text(tx, "c:OrgnlUETR")
    end_to_end_id = _E.text(tx, "c:OrgnlEndToEndId")
    if uetr is None and end_to_end_id is None:
        raise Camt056Invalid(
            [{"field": "Undrlyg/TxInf", "message": "names no payment: give OrgnlUETR or OrgnlEndToEndId"}]
        )
    if _E.text(req, "c:Assgnmt/c:Id") is None:
        raise Camt056Invalid([{"field": "Assgnmt/Id", "message": "blank: it identifies the recall's case"}])
    try:  # the schema's ISODateTime admits forms Python reads differently (e.g. 24:00:00)
        created_at = datetime.datetime.fromisoformat(_E.text(req, "c:Assgnmt/c:CreDtTm") or "")
    except ValueError as exc:
        raise Camt056Invalid([{"field": "Assgnmt/CreDtTm", "message": f"unreadable date-time: {exc}"}]) from None
    return RecallRequest(
        case_id=_E.text(req, "c:Assgnmt/c:Id") or "",
        created_at=created_at,
        assigner_bic=_E.text(req, "c:Assgnmt/c:Assgnr/c:Agt/c:FinInstnId/c:BICFI"),
        assignee_bic=_E.text(req, "c:Assgnmt/c:Assgne/c:Agt/c:FinInstnId/c:BICFI"),
        reason_code=_E.text(tx, "c:CxlRsnInf/c:Rsn/c:Cd"),
        additional_info=_E.text(tx, "c:CxlRsnInf/c:AddtlInf"),
        uetr=uuid.UUID(uetr) if uetr else None,
        end_to_end_id=end_to_end_id,
        original_message_id=_E.text(tx, "c:OrgnlGrpInf/c:OrgnlMsgId"),
        original_message_name=_E.text(tx, "c:OrgnlGrpInf/c:OrgnlMsgNmId"),
        cancellation_id=_E.text(tx, "c:CxlId"),
    )


def build_camt056(request: RecallRequest) -> bytes:
    """The camt.056.001.12 for `request` (Camt056Invalid if it would break the XSD)."""
    doc = etree.Element(f"{{{NS}}}Document", nsmap={None: NS})
    req = _E.sub(doc, "FIToFIPmtCxlReq")
    assignment = _E.sub(req, "Assgnmt")
    _E.sub(assignment, "Id", request.case_id)
    _E.agent(_E.sub(assignment, "Assgnr"), "Agt", request.assigner_bic)
    _E.agent(_E.sub(assignment, "Assgne"), "Agt", request.assignee_bic)
    _E.sub(assignment, "CreDtTm", request.created_at.isoformat(timespec="seconds"))
    tx = _E.sub(_E.sub(req, "Undrlyg"), "TxInf")
    if request.cancellation_id is not None:
        _E.sub(tx, "CxlId", request.cancellation_id)
    if request.original_message_id is not None:
        original = _E.sub(tx, "OrgnlGrpInf")
        _E.sub(original, "OrgnlMsgId", request.original_message_id)
        _E.sub(original, "OrgnlMsgNmId", request.original_message_name or "pacs.008.001.08")
    if request.end_to_end_id is not None:
        _E.sub(tx, "OrgnlEndToEndId", request.end_to_end_id)
    if request.uetr is not None:
        _E.sub(tx, "OrgnlUETR", str(request.uetr))
    if request.reason_code is not None or request.additional_info is not None:
        reason = _E.sub(tx, "CxlRsnInf")
        if request.reason_code is not None:
            _E.sub(_E.sub(reason, "Rsn"), "Cd", request.reason_code)
        if request.additional_info is not None:
            _E.sub(reason, "AddtlInf", request.additional_info)
    errors = schema_errors(load_schema(SCHEMA), doc)
    if errors:
        raise Camt056Invalid([{"field": "body", "message": e} for e in errors])
    return etree.tostring(doc, xml_declaration=True, encoding="UTF-8", pretty_print=True)
