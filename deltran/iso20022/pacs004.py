"""ISO 20022 pacs.004.001.09 (payment return, the CBPR+ version): the creditor agent's
return in, and DelTran's to the debtor agent out.

In: one TxInf per message, with its RtrId (the return's identity: the same RtrId again
is the same return), the payment in the creditor agent's own references (OrgnlUETR,
OrgnlTxId and/or OrgnlEndToEndId, as DelTran forwarded them), RtrdIntrBkSttlmAmt and
RtrRsnInf/Rsn/Cd. Out: the same return in the debtor agent's references.
"""

from __future__ import annotations

import copy
import datetime
import uuid
from dataclasses import dataclass
from decimal import Decimal

from lxml import etree

from deltran.iso20022.elements import Elements
from deltran.iso20022.xml_safety import find_document, load_schema, parse_xml, schema_errors
from deltran.money import AmountError, format_amount, parse_amount

NS = "urn:iso:std:iso:20022:tech:xsd:pacs.004.001.09"
SCHEMA = "pacs.004.001.09.xsd"
_N = {"p": NS}
_E = Elements(NS, "p")
DEFAULT_MAX_BYTES = 256 * 1024


class Pacs004Invalid(ValueError):
    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("invalid pacs.004.001.09: " + "; ".join(e["message"] for e in errors))
        self.errors = errors


@dataclass(frozen=True)
class PaymentReturnMessage:
    message_id: str  # GrpHdr/MsgId
    created_at: datetime.datetime
    instructing_agent_bic: str | None  # GrpHdr/InstgAgt (who returns it)
    instructed_agent_bic: str | None  # GrpHdr/InstdAgt (to whom)
    return_id: str  # TxInf/RtrId
    amount: Decimal  # RtrdIntrBkSttlmAmt
    currency: str
    reason_code: str | None  # RtrRsnInf/Rsn/Cd
    additional_info: str | None  # RtrRsnInf/AddtlInf (the first)
    uetr: uuid.UUID | None = None  # OrgnlUETR
    end_to_end_id: str | None = None  # OrgnlEndToEndId
    transaction_id: str | None = None  # OrgnlTxId
    original_message_id: str | None = None  # OrgnlGrpInf/OrgnlMsgId
    original_amount: Decimal | None = None  # OrgnlIntrBkSttlmAmt


def parse_pacs004(body: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> PaymentReturnMessage:
    """Parse and validate a pacs.004.001.09 body (bare, or inside an AppHdr envelope);
    XmlRejected if it is not safe XML of this message, Pacs004Invalid if it breaks the
    schema, or what the schema cannot see (one TxInf, its RtrId, NbOfTxs, the amount's
    minor units, a reference to the payment)."""
    doc = copy.deepcopy(find_document(parse_xml(body, max_bytes), NS, "pacs.004.001.09"))
    errors = schema_errors(load_schema(SCHEMA), doc)
    if errors:
        raise Pacs004Invalid([{"field": "body", "message": e} for e in errors])
    root = doc.find("p:PmtRtr", _N)
    transactions = root.findall("p:TxInf", _N)
    problems: list[dict[str, str]] = []
    if len(transactions) != 1:
        problems.append({"field": "TxInf", "message": f"{len(transactions)} transactions; return one per message"})
    if _E.text(root, "p:GrpHdr/p:NbOfTxs") != str(len(transactions)):
        problems.append({"field": "GrpHdr/NbOfTxs", "message": f"does not count the {len(transactions)} TxInf"})
    if problems:
        raise Pacs004Invalid(problems)
    tx = transactions[0]
    return_id = _E.text(tx, "p:RtrId")
    uetr, e2e, tx_id = _E.text(tx, "p:OrgnlUETR"), _E.text(tx, "p:OrgnlEndToEndId"), _E.text(tx, "p:OrgnlTxId")
    if return_id is None:
        problems.append({"field": "TxInf/RtrId", "message": "required: it identifies the return"})
    if uetr is None and e2e is None and tx_id is None:
        problems.append({"field": "TxInf", "message": "names no payment: give OrgnlUETR, OrgnlTxId or OrgnlEndToEndId"})
    amount_el = tx.find("p:RtrdIntrBkSttlmAmt", _N)
    currency = amount_el.get("Ccy", "")
    amount = Decimal(0)
    try:
        amount = parse_amount(amount_el.text.strip(), currency)
    except AmountError as exc:
        problems.append({"field": "TxInf/RtrdIntrBkSttlmAmt", "message": str(exc)})
    try:  # the schema's ISODateTime admits forms Python reads differently (e.g. 24:00:00)
        created_at = datetime.datetime.fromisoformat(_E.text(root, "p:GrpHdr/p:CreDtTm") or "")
    except ValueError as exc:
        problems.append({"field": "GrpHdr/CreDtTm", "message": f"unreadable date-time: {exc}"})
    if problems:
        raise Pacs004Invalid(problems)
    original = tx.find("p:OrgnlIntrBkSttlmAmt", _N)
    return PaymentReturnMessage(
        message_id=_E.text(root, "p:GrpHdr/p:MsgId") or "",
        created_at=created_at,
        instructing_agent_bic=_E.text(root, "p:GrpHdr/p:InstgAgt/p:FinInstnId/p:BICFI"),
        instructed_agent_bic=_E.text(root, "p:GrpHdr/p:InstdAgt/p:FinInstnId/p:BICFI"),
        return_id=return_id or "",
        amount=amount,
        currency=currency,
        reason_code=_E.text(tx, "p:RtrRsnInf/p:Rsn/p:Cd"),
        additional_info=_E.text(tx, "p:RtrRsnInf/p:AddtlInf"),
        uetr=uuid.UUID(uetr) if uetr else None,
        end_to_end_id=e2e,
        transaction_id=tx_id,
        original_message_id=_E.text(tx, "p:OrgnlGrpInf/p:OrgnlMsgId"),
        original_amount=Decimal(original.text) if original is not None and original.text else None,
    )


def build_pacs004(message: PaymentReturnMessage, *, original_message_name: str = "pacs.008.001.08") -> bytes:
    """The pacs.004.001.09 for `message` (Pacs004Invalid if it would break the XSD)."""
    doc = etree.Element(f"{{{NS}}}Document", nsmap={None: NS})
    root = _E.sub(doc, "PmtRtr")
    header = _E.sub(root, "GrpHdr")
    _E.sub(header, "MsgId", message.message_id)
    _E.sub(header, "CreDtTm", message.created_at.isoformat(timespec="seconds"))
    _E.sub(header, "NbOfTxs", "1")
    _E.sub(_E.sub(header, "SttlmInf"), "SttlmMtd", "CLRG")
    if message.instructing_agent_bic is not None:
        _E.agent(header, "InstgAgt", message.instructing_agent_bic)
    if message.instructed_agent_bic is not None:
        _E.agent(header, "InstdAgt", message.instructed_agent_bic)
    tx = _E.sub(root, "TxInf")
    _E.sub(tx, "RtrId", message.return_id)
    if message.original_message_id is not None:
        original = _E.sub(tx, "OrgnlGrpInf")
        _E.sub(original, "OrgnlMsgId", message.original_message_id)
        _E.sub(original, "OrgnlMsgNmId", original_message_name)
    if message.end_to_end_id is not None:
        _E.sub(tx, "OrgnlEndToEndId", message.end_to_end_id)
    if message.transaction_id is not None:
        _E.sub(tx, "OrgnlTxId", message.transaction_id)
    if message.uetr is not None:
        _E.sub(tx, "OrgnlUETR", str(message.uetr))
    if message.original_amount is not None:
        _E.sub(
            tx, "OrgnlIntrBkSttlmAmt", format_amount(message.original_amount, message.currency), Ccy=message.currency
        )
    _E.sub(tx, "RtrdIntrBkSttlmAmt", format_amount(message.amount, message.currency), Ccy=message.currency)
    if message.reason_code is not None or message.additional_info is not None:
        reason = _E.sub(tx, "RtrRsnInf")
        if message.reason_code is not None:
            _E.sub(_E.sub(reason, "Rsn"), "Cd", message.reason_code)
        if message.additional_info is not None:
            _E.sub(reason, "AddtlInf", message.additional_info[:105])
    errors = schema_errors(load_schema(SCHEMA), doc)
    if errors:
        raise Pacs004Invalid([{"field": "body", "message": e} for e in errors])
    return etree.tostring(doc, xml_declaration=True, encoding="UTF-8", pretty_print=True)
