"""ISO 20022 camt.029.001.14 (resolution of investigation): DelTran's answer to a recall.

Sts/Conf is the answer (CNCL cancelled, PDCR pending with the creditor agent, RJCR
refused); the one CxlDtls/TxInfAndSts names the payment in the debtor agent's references
and carries the transaction's cancellation status (ACCR for a cancelled payment, else the
same code) with the refusal's reason (CxlStsRsnInf) when refused.
"""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass
from decimal import Decimal

from lxml import etree

from deltran.iso20022.elements import Elements
from deltran.iso20022.xml_safety import load_schema, schema_errors
from deltran.money import format_amount

NS = "urn:iso:std:iso:20022:tech:xsd:camt.029.001.14"
SCHEMA = "camt.029.001.14.xsd"
_E = Elements(NS, "c")
# Sts/Conf → TxInfAndSts/TxCxlSts (CancellationIndividualStatus1Code has no CNCL).
_TRANSACTION_STATUS = {"CNCL": "ACCR", "PDCR": "PDCR", "RJCR": "RJCR"}


class Camt029Invalid(ValueError):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("invalid camt.029.001.14: " + "; ".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class Resolution:
    message_id: str  # Assgnmt/Id: this answer's own
    created_at: datetime.datetime
    from_bic: str  # DelTran (Assgnr)
    to_bic: str  # the debtor agent (Assgne, and the case's creator)
    case_id: str  # RslvdCase/Id: the recall's Assgnmt/Id
    status: str  # CNCL | PDCR | RJCR
    end_to_end_id: str
    uetr: uuid.UUID | None
    amount: Decimal
    currency: str
    original_message_id: str | None = None
    original_message_name: str | None = None
    reason_code: str | None = None  # why refused
    additional_info: str | None = None


def build_camt029(resolution: Resolution) -> bytes:
    """The camt.029.001.14 for `resolution`, validated against the XSD."""
    if resolution.status not in _TRANSACTION_STATUS:
        raise Camt029Invalid([f"unknown status {resolution.status!r}"])
    doc = etree.Element(f"{{{NS}}}Document", nsmap={None: NS})
    root = _E.sub(doc, "RsltnOfInvstgtn")
    assignment = _E.sub(root, "Assgnmt")
    _E.sub(assignment, "Id", resolution.message_id)
    _E.agent(_E.sub(assignment, "Assgnr"), "Agt", resolution.from_bic)
    _E.agent(_E.sub(assignment, "Assgne"), "Agt", resolution.to_bic)
    _E.sub(assignment, "CreDtTm", resolution.created_at.isoformat(timespec="seconds"))
    case = _E.sub(root, "RslvdCase")
    _E.sub(case, "Id", resolution.case_id)
    _E.agent(_E.sub(case, "Cretr"), "Agt", resolution.to_bic)
    _E.sub(_E.sub(root, "Sts"), "Conf", resolution.status)
    tx = _E.sub(_E.sub(root, "CxlDtls"), "TxInfAndSts")
    if resolution.original_message_id is not None:
        original = _E.sub(tx, "OrgnlGrpInf")
        _E.sub(original, "OrgnlMsgId", resolution.original_message_id)
        _E.sub(original, "OrgnlMsgNmId", resolution.original_message_name or "pacs.008.001.08")
    _E.sub(tx, "OrgnlEndToEndId", resolution.end_to_end_id)
    if resolution.uetr is not None:
        _E.sub(tx, "OrgnlUETR", str(resolution.uetr))
    _E.sub(tx, "TxCxlSts", _TRANSACTION_STATUS[resolution.status])
    if resolution.reason_code is not None or resolution.additional_info is not None:
        reason = _E.sub(tx, "CxlStsRsnInf")
        if resolution.reason_code is not None:
            _E.sub(_E.sub(reason, "Rsn"), "Cd", resolution.reason_code)
        if resolution.additional_info is not None:
            _E.sub(reason, "AddtlInf", resolution.additional_info[:105])
    amount = _E.sub(tx, "OrgnlIntrBkSttlmAmt", format_amount(resolution.amount, resolution.currency))
    amount.set("Ccy", resolution.currency)
    errors = schema_errors(load_schema(SCHEMA), doc)
    if errors:
        raise Camt029Invalid(errors)
    return etree.tostring(doc, xml_declaration=True, encoding="UTF-8", pretty_print=True)
