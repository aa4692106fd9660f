"""ISO 20022 camt.054.001.08 (bank-to-customer debit/credit notification): reader and writer.

The reader turns a notification from a settlement bank into flat entries, one per
transaction (TxDtls) booked on an account; the writer produces such notifications for
tests, demos and the settlement-agent simulator. Elements are found by namespace, never by
prefix, and every body is schema-validated before anything is read from it.
"""

from __future__ import annotations

import copy
import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from lxml import etree

from deltran.identity import normalize_bic
from deltran.iso20022.xml_safety import find_document, load_schema, parse_xml, schema_errors

NS = "urn:iso:std:iso:20022:tech:xsd:camt.054.001.08"
SCHEMA = "camt.054.001.08.xsd"
_N = {"c": NS}
_DOCUMENT = f"{{{NS}}}Document"
DEFAULT_MAX_BYTES = 5 * 1024 * 1024


@dataclass(frozen=True)
class Camt054Entry:
    """One transaction booked (or announced) on an account.

    An Ntry with several TxDtls yields several entries sharing `entry_reference`; the pair
    (entry_reference, tx_index) identifies one of them.
    """

    notification_id: str
    account: str
    entry_reference: str
    tx_index: int
    amount: Decimal
    currency: str
    credit_debit: str
    status: str
    reversal: bool
    booking_date: datetime.date | None
    value_date: datetime.date | None
    end_to_end_id: str | None
    uetr: str | None
    instruction_id: str | None
    transaction_id: str | None
    bank_reference: str | None
    # TxDtls/RltdAgts/DbtrAgt: the bank the money came from, when the agent says so.
    debtor_agent_bic: str | None = None


@dataclass(frozen=True)
class Camt054Message:
    message_id: str
    created_at: datetime.datetime
    entries: tuple[Camt054Entry, ...]


class Camt054Invalid(ValueError):
    """A camt.054 that breaks the schema or cannot be read; `errors` are client-facing."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("invalid camt.054.001.08: " + "; ".join(errors))
        self.errors = errors


# --------------------------------------------------------------------------- reader


def _text(el: etree._Element, path: str) -> str | None:
    value = el.findtext(path, namespaces=_N)
    value = value.strip() if value is not None else None
    return value or None


def _required(el: etree._Element, path: str) -> str:
    value = _text(el, path)
    if value is None:  # the schema guarantees presence, not that it is more than blanks
        found = el.find(path, _N)
        line = (found if found is not None else el).sourceline
        raise Camt054Invalid([f"line {line}: {path.replace('c:', '')} is blank"])
    return value


def _amount(el: etree._Element) -> tuple[Decimal, str]:
    try:  # from the text, never through float
        return Decimal(el.text.strip()), el.get("Ccy")
    except (InvalidOperation, AttributeError):
        raise Camt054Invalid([f"line {el.sourceline}: amount {el.text!r} is not a number"]) from None


def _date(el: etree._Element, path: str) -> datetime.date | None:
    """DateAndDateTime2Choice: Dt, or the date part (as written, in its own offset) of DtTm."""
    choice = el.find(path, _N)
    if choice is None:
        return None
    value = _text(choice, "c:Dt") or _text(choice, "c:DtTm") or ""
    try:
        return datetime.date.fromisoformat(value[:10])  # xs:date may carry an offset: drop it
    except ValueError:
        raise Camt054Invalid([f"line {choice.sourceline}: unsupported date {value!r}"]) from None


def _datetime(el: etree._Element, path: str) -> datetime.datetime:
    value = _required(el, path)
    try:  # Python 3.11 reads "Z", offsets and fractions; xs:dateTime "24:00:00" it cannot
        return datetime.datetime.fromisoformat(value)
    except ValueError:
        raise Camt054Invalid([f"line {el.sourceline}: unsupported date-time {value!r}"]) from None


def _find_document(root: etree._Element) -> etree._Element:
    return find_document(root, NS, "camt.054.001.08")


def parse_camt054(body: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> Camt054Message:
    """Parse and validate a camt.054.001.08 body; XmlRejected or Camt054Invalid if unacceptable."""
    # A deep copy makes the Document the root of its own tree (line numbers are kept), so an
    # envelope's other content can neither fail nor satisfy the validation.
    doc = copy.deepcopy(_find_document(parse_xml(body, max_bytes)))
    errors = schema_errors(load_schema(SCHEMA), doc)
    if errors:
        raise Camt054Invalid(errors)

    msg = doc.find("c:BkToCstmrDbtCdtNtfctn", _N)
    entries: list[Camt054Entry] = []
    for ntfctn in msg.iterfind("c:Ntfctn", _N):
        notification_id = _required(ntfctn, "c:Id")
        account = _text(ntfctn, "c:Acct/c:Id/c:IBAN") or _required(ntfctn, "c:Acct/c:Id/c:Othr/c:Id")
        for entry_index, ntry in enumerate(ntfctn.iterfind("c:Ntry", _N)):
            entries.extend(_entries(ntry, notification_id, account, entry_index))
    return Camt054Message(
        message_id=_required(msg, "c:GrpHdr/c:MsgId"),
        created_at=_datetime(msg, "c:GrpHdr/c:CreDtTm"),
        entries=tuple(entries),
    )


def _entries(ntry: etree._Element, notification_id: str, account: str, entry_index: int) -> list[Camt054Entry]:
    entry_amount = ntry.find("c:Amt", _N)
    txs = ntry.findall("c:NtryDtls/c:TxDtls", _N)
    entry_reference = _text(ntry, "c:AcctSvcrRef") or _text(ntry, "c:NtryRef") or f"{notification_id}:{entry_index}"
    common: dict[str, Any] = dict(
        notification_id=notification_id,
        account=account,
        entry_reference=entry_reference,
        status=_text(ntry, "c:Sts/c:Cd") or _required(ntry, "c:Sts/c:Prtry"),
        reversal=_text(ntry, "c:RvslInd") in ("true", "1"),  # xs:boolean
        booking_date=_date(ntry, "c:BookgDt"),
        value_date=_date(ntry, "c:ValDt"),
    )
    entry_total, entry_currency = _amount(entry_amount)
    entry_direction = _required(ntry, "c:CdtDbtInd")
    if not txs:
        return [
            Camt054Entry(
                **common,
                tx_index=0,
                amount=entry_total,
                currency=entry_currency,
                credit_debit=entry_direction,
                end_to_end_id=None,
                uetr=None,
                instruction_id=None,
                transaction_id=None,
                bank_reference=_text(ntry, "c:AcctSvcrRef"),
            )
        ]
    result = []
    for tx_index, tx in enumerate(txs):
        amount_el = tx.find("c:Amt", _N)
        if amount_el is None:
            amount_el = tx.find("c:AmtDtls/c:TxAmt/c:Amt", _N)
        if amount_el is None:
            if len(txs) > 1:  # the entry total cannot be split between its transactions
                raise Camt054Invalid(
                    [f"line {tx.sourceline}: TxDtls has no amount and its entry has {len(txs)} transactions"]
                )
            amount_el = entry_amount
        amount, currency = _amount(amount_el)
        end_to_end_id = _text(tx, "c:Refs/c:EndToEndId")
        uetr = _text(tx, "c:Refs/c:UETR")
        result.append(
            Camt054Entry(
                **common,
                tx_index=tx_index,
                amount=amount,
                currency=currency,
                credit_debit=_text(tx, "c:CdtDbtInd") or _required(ntry, "c:CdtDbtInd"),
                end_to_end_id=None if end_to_end_id == "NOTPROVIDED" else end_to_end_id,
                uetr=uetr.lower() if uetr else None,
                instruction_id=_text(tx, "c:Refs/c:InstrId"),
                transaction_id=_text(tx, "c:Refs/c:TxId"),
                bank_reference=_text(tx, "c:Refs/c:AcctSvcrRef") or _text(ntry, "c:AcctSvcrRef"),
                debtor_agent_bic=_bic(_text(tx, "c:RltdAgts/c:DbtrAgt/c:FinInstnId/c:BICFI")),
            )
        )
    _check_entry_agrees(ntry, entry_reference, entry_total, entry_currency, entry_direction, result)
    return result


def _check_entry_agrees(
    ntry: etree._Element,
    reference: str,
    total: Decimal,
    currency: str,
    direction: str,
    transactions: list[Camt054Entry],
) -> None:
    """The Ntry's own amount and direction are the booking; its TxDtls only split it.
    Details that disagree with their entry (other currency or direction, parts that do
    not add up to the total) would let the details book what the entry did not: the
    whole message is refused, naming the entry."""
    where = f"line {ntry.sourceline}: Ntry {reference}"
    errors = [
        f"{where}: TxDtls[{t.tx_index}] is {t.currency}, the entry is {currency}"
        for t in transactions
        if t.currency != currency
    ] + [
        f"{where}: TxDtls[{t.tx_index}] is {t.credit_debit}, the entry is {direction}"
        for t in transactions
        if t.credit_debit != direction
    ]
    parts = sum((t.amount for t in transactions), Decimal(0))
    if not errors and parts != total:
        errors.append(
            f"{where}: its TxDtls add up to {format(parts, 'f')} {currency}, the entry books {format(total, 'f')}"
        )
    if errors:
        raise Camt054Invalid(errors)


# --------------------------------------------------------------------------- writer


@dataclass(frozen=True)
class BookingSpec:
    end_to_end_id: str | None
    amount: Decimal
    currency: str
    entry_reference: str  # written as Ntry/AcctSvcrRef
    status: str = "BOOK"
    credit_debit: str = "CRDT"
    reversal: bool = False
    uetr: str | None = None
    bank_reference: str | None = None  # TxDtls/Refs/AcctSvcrRef
    booking_date: datetime.date | None = None
    account: str = "AE070331234567890123456"  # an IBAN of DelTran's settlement account
    debtor_agent_bic: str | None = None  # TxDtls/RltdAgts/DbtrAgt


def _sub(parent: etree._Element, tag: str, text: str | None = None, **attrib: str) -> etree._Element:
    el = etree.SubElement(parent, f"{{{NS}}}{tag}", attrib)
    if text is not None:
        el.text = text
    return el


def _amount_text(amount: Decimal) -> str:
    return format(amount, "f")  # str() could give "1E+3", which is not an xs:decimal


def build_camt054(
    bookings: Sequence[BookingSpec],
    message_id: str,
    created_at: datetime.datetime | None = None,
    notification_id: str | None = None,
) -> bytes:
    """A valid camt.054.001.08: one Ntfctn per account (first-seen order), one Ntry with one
    TxDtls per booking."""
    return build_camt054_multi([[b] for b in bookings], message_id, created_at, notification_id)


def build_camt054_multi(
    entries: Sequence[Sequence[BookingSpec]],
    message_id: str,
    created_at: datetime.datetime | None = None,
    notification_id: str | None = None,
) -> bytes:
    """Like build_camt054, but each inner sequence becomes one Ntry with one TxDtls per
    booking (a batch booking). The Ntry takes its reference, status, dates, direction and
    account from the first booking and the sum of the amounts; all must share currency,
    direction and account. Ids are `notification_id` (default `message_id`), suffixed
    "-1", "-2"... when there are several accounts. Raises Camt054Invalid if the result
    breaks the schema (e.g. a reference over 35 characters)."""
    accounts: dict[str, list[Sequence[BookingSpec]]] = {}
    for group in entries:
        if not group:
            raise ValueError("an entry needs at least one booking")
        if len({(b.currency, b.credit_debit, b.account) for b in group}) > 1:
            raise ValueError("bookings of one entry must share currency, credit_debit and account")
        accounts.setdefault(group[0].account, []).append(group)

    created_at = created_at or datetime.datetime.now(datetime.UTC)
    doc = etree.Element(_DOCUMENT, nsmap={None: NS})
    msg = _sub(doc, "BkToCstmrDbtCdtNtfctn")
    header = _sub(msg, "GrpHdr")
    _sub(header, "MsgId", message_id)
    _sub(header, "CreDtTm", created_at.isoformat())
    base_id = notification_id or message_id
    for n, (account, groups) in enumerate(accounts.items(), start=1):
        ntfctn = _sub(msg, "Ntfctn")
        _sub(ntfctn, "Id", base_id if len(accounts) == 1 else f"{base_id}-{n}")
        _sub(ntfctn, "CreDtTm", created_at.isoformat())
        _sub(_sub(_sub(ntfctn, "Acct"), "Id"), "IBAN", account)
        for group in groups:
            _write_entry(ntfctn, group)

    errors = schema_errors(load_schema(SCHEMA), doc)
    if errors:
        raise Camt054Invalid(errors)
    return etree.tostring(doc, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _write_entry(ntfctn: etree._Element, group: Sequence[BookingSpec]) -> None:
    # Element order follows ReportEntry10 / EntryTransaction10 in the XSD (sequence order matters).
    first = group[0]
    ntry = _sub(ntfctn, "Ntry")
    _sub(ntry, "Amt", _amount_text(sum((b.amount for b in group), Decimal(0))), Ccy=first.currency)
    _sub(ntry, "CdtDbtInd", first.credit_debit)
    if first.reversal:
        _sub(ntry, "RvslInd", "true")
    # ExternalEntryStatus1Code is at most 4 characters; anything else can only be proprietary.
    _sub(_sub(ntry, "Sts"), "Cd" if len(first.status) <= 4 else "Prtry", first.status)
    if first.booking_date:
        _sub(_sub(ntry, "BookgDt"), "Dt", first.booking_date.isoformat())
        _sub(_sub(ntry, "ValDt"), "Dt", first.booking_date.isoformat())
    _sub(ntry, "AcctSvcrRef", first.entry_reference)
    # Mandatory bank transaction code: payments / received or issued credit transfer / cross-border.
    domain = _sub(_sub(ntry, "BkTxCd"), "Domn")
    _sub(domain, "Cd", "PMNT")
    fmly = _sub(domain, "Fmly")
    _sub(fmly, "Cd", "RCDT" if first.credit_debit == "CRDT" else "ICDT")
    _sub(fmly, "SubFmlyCd", "XBCT")
    details = _sub(ntry, "NtryDtls")
    for b in group:
        tx = _sub(details, "TxDtls")
        if b.bank_reference or b.end_to_end_id or b.uetr:
            refs = _sub(tx, "Refs")
            if b.bank_reference:
                _sub(refs, "AcctSvcrRef", b.bank_reference)
            if b.end_to_end_id:
                _sub(refs, "EndToEndId", b.end_to_end_id)
            if b.uetr:
                _sub(refs, "UETR", b.uetr.lower())
        _sub(tx, "Amt", _amount_text(b.amount), Ccy=b.currency)
        _sub(tx, "CdtDbtInd", b.credit_debit)
        if b.debtor_agent_bic:
            _sub(_sub(_sub(_sub(tx, "RltdAgts"), "DbtrAgt"), "FinInstnId"), "BICFI", b.debtor_agent_bic)


def _bic(text: str | None) -> str | None:
    """A BIC as participants are stored (EBILAEADXXX is EBILAEAD); as sent if it is not one
    (it then names no participant)."""
    if text is None:
        return None
    try:
        return normalize_bic(text)
    except ValueError:
        return text
