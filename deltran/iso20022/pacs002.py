"""ISO 20022 pacs.002.001.10 (FI-to-FI payment status report): writer and a small reader.

DelTran (the instructing agent of the report) tells a bank (the instructed agent) what
became of its payments: a TxInfAndSts per payment with the transaction's references, its
status and, for a rejection, the ISO reason code; the original message named once in
OrgnlGrpInfAndSts when they share one, else in each TxInfAndSts (build_pacs002_report,
the answer to a status request). The writer validates its own output against the XSD and raises
Pacs002Invalid rather than emit a report that breaks the schema. The reader is what a
bank's side (tests, demo) uses to read such a report back: elements are found by
namespace, never by prefix.
"""

from __future__ import annotations

import copy
import datetime
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from lxml import etree

from deltran.iso20022.xml_safety import find_document, load_schema, parse_xml, schema_errors
from deltran.money import MINOR_UNITS, AmountError, format_amount, parse_amount
from deltran.reason_codes import ReasonCode
from deltran.vocabulary import PaymentStatus

NS = "urn:iso:std:iso:20022:tech:xsd:pacs.002.001.10"
SCHEMA = "pacs.002.001.10.xsd"
_N = {"p": NS}
_DOCUMENT = f"{{{NS}}}Document"
DEFAULT_MAX_BYTES = 1024 * 1024

ADDTL_INF_MAX_CHARS = 105  # Max105Text
ADDTL_INF_MAX_LINES = 3  # longer reason texts are cut, ending in an ellipsis


class TransactionStatus(StrEnum):
    """ExternalPaymentTransactionStatus1Code values DelTran reports."""

    ACCP = "ACCP"  # AcceptedCustomerProfile: checks passed
    ACSP = "ACSP"  # AcceptedSettlementInProcess
    ACSC = "ACSC"  # AcceptedSettlementCompleted
    RJCT = "RJCT"  # Rejected (StsRsnInf/Rsn/Cd says why)
    PDNG = "PDNG"  # Pending: still being checked
    CANC = "CANC"  # Cancelled: recalled by its debtor agent before it settled


class Pacs002Invalid(ValueError):
    """A status report that cannot be written or read; `errors` are the reasons."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("invalid pacs.002.001.10: " + "; ".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class StatusReport:
    message_id: str  # our GrpHdr/MsgId (<= 35 characters)
    created_at: datetime.datetime  # timezone-aware
    instructing_agent_bic: str  # DelTran's BIC (the reporter), e.g. "DLTRAEAD"
    instructed_agent_bic: str  # the bank the report goes to
    original_message_id: str  # the bank's pacs.008 MsgId, or for JSON submissions the payment id / EndToEndId
    original_message_name: str  # e.g. "pacs.008.001.08"
    original_end_to_end_id: str
    original_instruction_id: str | None
    original_transaction_id: str | None
    original_uetr: str | None
    status: TransactionStatus
    reason_code: str | None  # ISO ExternalStatusReason1Code; required when RJCT
    reason_text: str | None  # written as AddtlInf lines of <= 105 characters
    acceptance_datetime: datetime.datetime | None  # AccptncDtTm, timezone-aware
    settlement_amount: Decimal | None  # OrgnlTxRef/IntrBkSttlmAmt, with `currency`
    currency: str | None
    # A cross-currency payment's other side: OrgnlTxRef/Amt/InstdAmt (the source amount;
    # IntrBkSttlmAmt is then the target amount, as its pacs.008 stated them).
    instructed_amount: Decimal | None = None
    instructed_currency: str | None = None


# --------------------------------------------------------------------------- status mapping

_STATUS_FOR: dict[PaymentStatus, TransactionStatus] = {
    PaymentStatus.SCREENING: TransactionStatus.PDNG,
    PaymentStatus.AWAITING_SETTLEMENT: TransactionStatus.ACSP,
    PaymentStatus.SETTLED: TransactionStatus.ACSC,
    PaymentStatus.COMPLETED: TransactionStatus.ACSC,
    PaymentStatus.REJECTED: TransactionStatus.RJCT,
    PaymentStatus.EXPIRED: TransactionStatus.RJCT,
    PaymentStatus.CANCELLED: TransactionStatus.CANC,
    # It settled; what came back is reported by the pacs.004, not by the payment's status.
    PaymentStatus.PARTIALLY_RETURNED: TransactionStatus.ACSC,
    PaymentStatus.RETURNED: TransactionStatus.ACSC,
}


def transaction_status_for(payment_status: str, rejection_code: str | None) -> tuple[TransactionStatus, str | None]:
    """The pacs.002 TxSts and reason code that report a DelTran payment status.

    ===================== ====== ==========================================================
    payment status        TxSts  reason code
    ===================== ====== ==========================================================
    SCREENING             PDNG   none (compliance checks still running)
    AWAITING_SETTLEMENT   ACSP   none (accepted, settlement in process)
    SETTLED               ACSC   none (fiat booked, settlement completed)
    COMPLETED             ACSC   none (settled and token minted)
    REJECTED              RJCT   the payment's rejection code (RR04, AC02, ... DUPL)
    EXPIRED               RJCT   `rejection_code` if given, else AB01 (not funded in time)
    CANCELLED             CANC   the recall's cancellation reason (DUPL, CUST, FRAD, ...)
    PARTIALLY_RETURNED    ACSC   none (settled; the return is its own pacs.004)
    RETURNED              ACSC   none (settled; the return is its own pacs.004)
    ===================== ====== ==========================================================

    A rejection code given with a status that is not a rejection is ignored. Raises
    ValueError for an unknown payment status, or for REJECTED without a rejection code
    (a RJCT report must say why).
    """
    try:
        status = PaymentStatus(payment_status)
    except ValueError:
        raise ValueError(f"unknown payment status {payment_status!r}") from None
    tx_status = _STATUS_FOR[status]
    code = (rejection_code or "").strip() or None
    if status is PaymentStatus.EXPIRED:
        return tx_status, code or ReasonCode.CLEARING_TIMEOUT.value
    if status is PaymentStatus.CANCELLED:
        return tx_status, code
    if status is PaymentStatus.REJECTED:
        if code is None:
            raise ValueError("a REJECTED payment needs its rejection code to be reported as RJCT")
        return tx_status, code
    return tx_status, None


# --------------------------------------------------------------------------- writer


def _sub(parent: etree._Element, tag: str, text: str | None = None, **attrib: str) -> etree._Element:
    el = etree.SubElement(parent, f"{{{NS}}}{tag}", attrib)
    if text is not None:
        el.text = text
    return el


def _agent(parent: etree._Element, tag: str, bic: str) -> None:
    _sub(_sub(_sub(parent, tag), "FinInstnId"), "BICFI", bic)


# Characters XML 1.0 cannot carry (lxml refuses them) and runs of whitespace (newlines, tabs).
_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_SPACES = re.compile(r"\s+")


def _clean(text: str) -> str:
    return _SPACES.sub(" ", _NOT_XML.sub(" ", text)).strip()


def additional_info_lines(text: str | None) -> list[str]:
    """`text` as AddtlInf lines: whitespace collapsed, split at word boundaries into lines
    of at most 105 characters (longer words are broken), at most ADDTL_INF_MAX_LINES lines;
    a text that does not fit ends its last line with "…"."""
    cleaned = _clean(text or "")
    if not cleaned:
        return []
    lines = textwrap.wrap(cleaned, ADDTL_INF_MAX_CHARS, break_long_words=True, break_on_hyphens=False)
    if len(lines) > ADDTL_INF_MAX_LINES:
        lines = lines[:ADDTL_INF_MAX_LINES]
        lines[-1] = lines[-1][: ADDTL_INF_MAX_CHARS - 1].rstrip() + "…"
    return lines


def _timestamp(value: datetime.datetime, field: str, errors: list[str]) -> str | None:
    if value.tzinfo is None or value.utcoffset() is None:
        errors.append(f"{field} must be timezone-aware")
        return None
    return value.isoformat()


def _amount_text(amount: Decimal, currency: str, errors: list[str]) -> str | None:
    if currency in MINOR_UNITS:
        try:  # the XSD accepts any three letters and five decimals; the currency may not
            return format_amount(parse_amount(amount, currency), currency)
        except AmountError as exc:
            errors.append(f"settlement amount: {exc}")
            return None
    # A currency DelTran does not clear (e.g. the subject of an AM03 rejection): the XSD judges.
    return format(amount, "f") if amount.is_finite() else str(amount)


def build_pacs002(report: StatusReport) -> bytes:
    """The pacs.002.001.10 for `report`: UTF-8 XML with a declaration, valid against the XSD.

    Raises Pacs002Invalid listing every problem: a RJCT without a reason code, naive
    date-times, an amount without a currency (or the reverse), an amount that cannot be
    money in its currency, or anything the XSD refuses (e.g. an id over 35 characters, a
    malformed BIC or UETR). The UETR is written in lower case, as the XSD requires.
    """
    return build_pacs002_report([report])


def build_pacs002_report(reports: Sequence[StatusReport]) -> bytes:
    """One pacs.002.001.10 reporting several transactions (one TxInfAndSts each), as the
    answer to a status request. The group header is the first report's (all must share
    it). When every transaction comes from one original message, it is named once in
    OrgnlGrpInfAndSts; otherwise each TxInfAndSts names its own in OrgnlGrpInf."""
    if not reports:
        raise Pacs002Invalid(["a status report needs at least one transaction"])
    first = reports[0]
    header_of = (first.message_id, first.created_at, first.instructing_agent_bic, first.instructed_agent_bic)
    errors: list[str] = []
    if any((r.message_id, r.created_at, r.instructing_agent_bic, r.instructed_agent_bic) != header_of for r in reports):
        errors.append("the transactions of one status report share its group header")
    created_at = _timestamp(first.created_at, "created_at", errors)
    originals = {(r.original_message_id, r.original_message_name) for r in reports}
    transactions = [_transaction(r, errors) for r in reports]
    if errors or created_at is None:
        raise Pacs002Invalid(errors)

    doc = etree.Element(_DOCUMENT, nsmap={None: NS})
    rpt = _sub(doc, "FIToFIPmtStsRpt")
    # Element order follows GroupHeader91, OriginalGroupHeader17 and PaymentTransaction110.
    header = _sub(rpt, "GrpHdr")
    _sub(header, "MsgId", first.message_id)
    _sub(header, "CreDtTm", created_at)
    _agent(header, "InstgAgt", first.instructing_agent_bic)
    _agent(header, "InstdAgt", first.instructed_agent_bic)
    one_original = len(originals) == 1
    if one_original:
        original = _sub(rpt, "OrgnlGrpInfAndSts")
        _sub(original, "OrgnlMsgId", first.original_message_id)
        _sub(original, "OrgnlMsgNmId", first.original_message_name)
    for report, (status, reason_code, accepted_at, amount, instructed) in zip(reports, transactions, strict=True):
        tx = _sub(rpt, "TxInfAndSts")
        if not one_original:
            group = _sub(tx, "OrgnlGrpInf")
            _sub(group, "OrgnlMsgId", report.original_message_id)
            _sub(group, "OrgnlMsgNmId", report.original_message_name)
        if report.original_instruction_id is not None:
            _sub(tx, "OrgnlInstrId", report.original_instruction_id)
        _sub(tx, "OrgnlEndToEndId", report.original_end_to_end_id)
        if report.original_transaction_id is not None:
            _sub(tx, "OrgnlTxId", report.original_transaction_id)
        if report.original_uetr is not None:
            _sub(tx, "OrgnlUETR", report.original_uetr.strip().lower())
        _sub(tx, "TxSts", status.value)
        info_lines = additional_info_lines(report.reason_text)
        if reason_code is not None or info_lines:
            reason = _sub(tx, "StsRsnInf")
            if reason_code is not None:
                _sub(_sub(reason, "Rsn"), "Cd", reason_code)
            for line in info_lines:
                _sub(reason, "AddtlInf", line)
        if accepted_at is not None:
            _sub(tx, "AccptncDtTm", accepted_at)
        if amount is not None or instructed is not None:
            reference = _sub(tx, "OrgnlTxRef")
            if amount is not None:
                _sub(reference, "IntrBkSttlmAmt", amount[0], Ccy=amount[1])
            if instructed is not None:
                _sub(_sub(reference, "Amt"), "InstdAmt", instructed[0], Ccy=instructed[1])

    errors = schema_errors(load_schema(SCHEMA), doc)
    if errors:
        raise Pacs002Invalid(errors)
    return etree.tostring(doc, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _transaction(
    report: StatusReport, errors: list[str]
) -> tuple[TransactionStatus, str | None, str | None, tuple[str, str] | None, tuple[str, str] | None]:
    """One transaction's status, reason code, acceptance time, amount and instructed amount
    (each text and currency), its problems added to `errors`."""
    try:
        status = TransactionStatus(report.status)
    except ValueError:
        errors.append(f"unknown transaction status {report.status!r}")
        status = TransactionStatus.PDNG
    reason_code = (report.reason_code or "").strip() or None
    if status is TransactionStatus.RJCT and reason_code is None:
        errors.append("a RJCT status report needs a reason code (StsRsnInf/Rsn/Cd)")
    accepted_at = (
        _timestamp(report.acceptance_datetime, "acceptance_datetime", errors)
        if report.acceptance_datetime is not None
        else None
    )
    amount: tuple[str, str] | None = None
    if (report.settlement_amount is None) != (report.currency is None):
        errors.append("settlement_amount and currency go together: give both or neither")
    elif report.settlement_amount is not None and report.currency is not None:
        amount_text = _amount_text(report.settlement_amount, report.currency, errors)
        if amount_text is not None:
            amount = (amount_text, report.currency)
    return status, reason_code, accepted_at, amount, _instructed(report, errors)


def _instructed(report: StatusReport, errors: list[str]) -> tuple[str, str] | None:
    if (report.instructed_amount is None) != (report.instructed_currency is None):
        errors.append("instructed_amount and instructed_currency go together: give both or neither")
        return None
    if report.instructed_amount is None or report.instructed_currency is None:
        return None
    text = _amount_text(report.instructed_amount, report.instructed_currency, errors)
    return None if text is None else (text, report.instructed_currency)


# --------------------------------------------------------------------------- reader


def _text(el: etree._Element, path: str) -> str | None:
    value = el.findtext(path, namespaces=_N)
    value = value.strip() if value is not None else None
    return value or None


def _find_document(root: etree._Element) -> etree._Element:
    return find_document(root, NS, "pacs.002.001.10")


def parse_pacs002_status(body: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> dict:
    """The status of the one transaction a pacs.002.001.10 reports.

    Returns {"status", "reason_code", "original_end_to_end_id", "original_uetr"} (absent
    values are None; the UETR in lower case; the reason code is the first StsRsnInf/Rsn/Cd).
    Raises XmlRejected for a body that is not acceptable XML or not a pacs.002.001.10, and
    Pacs002Invalid if it breaks the schema or does not report exactly one transaction.
    """
    # A deep copy makes the Document the root of its own tree, so an envelope's other
    # content can neither fail nor satisfy the validation.
    doc = copy.deepcopy(_find_document(parse_xml(body, max_bytes)))
    errors = schema_errors(load_schema(SCHEMA), doc)
    if errors:
        raise Pacs002Invalid(errors)
    txs = doc.findall("p:FIToFIPmtStsRpt/p:TxInfAndSts", _N)
    if len(txs) != 1:
        raise Pacs002Invalid([f"expected one TxInfAndSts, found {len(txs)}"])
    tx = txs[0]
    uetr = _text(tx, "p:OrgnlUETR")
    return {
        "status": _text(tx, "p:TxSts"),
        "reason_code": _text(tx, "p:StsRsnInf/p:Rsn/p:Cd"),
        "original_end_to_end_id": _text(tx, "p:OrgnlEndToEndId"),
        "original_uetr": uetr.lower() if uetr else None,
    }
