"""ISO 20022 pacs.008.001.08 (FI-to-FI customer credit transfer, CBPR+ flavour): reader and writer.

The reader turns a bank's pacs.008 into flat transactions, one per CdtTrfTxInf, that map
onto deltran.intake.payments.NewPayment. It accepts the Document bare or wrapped in any envelope
together with a head.001.001.02 AppHdr (CBPR+ style), with any namespace prefixes: elements
are found by namespace, never by prefix. Everything is schema-validated first (the
Document against pacs.008.001.08, the AppHdr against head.001.001.02); then the checks the
XSD cannot do run over every transaction. All problems are collected and raised together
as Pacs008Invalid: the message is accepted whole or rejected whole.

Field paths in errors are relative to FIToFICstmrCdtTrf ("GrpHdr/NbOfTxs",
"CdtTrfTxInf[2]/IntrBkSttlmAmt") or start at "AppHdr"; indexes in them are 0-based, like
FieldError.transaction and Pacs008Transaction.index.

The writer produces such messages for tests, the demo and the load generator.
"""

from __future__ import annotations

import copy
import datetime
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from lxml import etree

from deltran.domain.compliance.checks import check_account, check_bic
from deltran.iso20022.xml_safety import (
    SchemaError,
    XmlRejected,
    find_document,
    load_schema,
    parse_xml,
    schema_violations,
)
from deltran.money import MINOR_UNITS, AmountError, parse_amount

MESSAGE_TYPE = "pacs.008.001.08"
NS = f"urn:iso:std:iso:20022:tech:xsd:{MESSAGE_TYPE}"
SCHEMA = f"{MESSAGE_TYPE}.xsd"
HEAD_NS = "urn:iso:std:iso:20022:tech:xsd:head.001.001.02"
HEAD_SCHEMA = "head.001.001.02.xsd"
# The writer's envelope: ISO 20022 standardises no envelope for AppHdr + Document.
ENVELOPE_NS = "urn:deltran:envelope"
DELTRAN_BIC = "DLTRAEAD"
# Transactions per message: a bound on one intake transaction's size.
MAX_TRANSACTIONS = 1000
DEFAULT_MAX_BYTES = 5 * 1024 * 1024
XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
MAX_FIELD_ERRORS = 1000  # every error of a real message; a hostile one cannot yield megabytes
MAX_REMITTANCE = 140

_N = {"p": NS, "h": HEAD_NS}
_DOCUMENT = f"{{{NS}}}Document"
_APPHDR = f"{{{HEAD_NS}}}AppHdr"
_TX_TAG = f"{{{NS}}}CdtTrfTxInf"
_ATTRIBUTE_ERROR = re.compile(r"^Element '[^']*', attribute '([^']*)'")


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Pacs008Transaction:
    index: int  # 0-based position of the CdtTrfTxInf
    end_to_end_id: str
    instruction_id: str | None
    transaction_id: str | None
    uetr: str | None  # lower-case v4 (the v08 schema pattern enforces it)
    amount: Decimal  # IntrBkSttlmAmt, with exactly the currency's minor units
    currency: str
    settlement_date: datetime.date | None  # IntrBkSttlmDt (tx level, else GrpHdr level)
    charge_bearer: str | None
    debtor_name: str
    debtor_iban: str | None  # DbtrAcct/Id/IBAN
    debtor_account: str | None  # DbtrAcct/Id/Othr/Id
    debtor_agent_bic: str  # DbtrAgt/FinInstnId/BICFI
    creditor_name: str
    creditor_iban: str | None
    creditor_account: str | None
    creditor_agent_bic: str
    instructing_agent_bic: str | None  # tx InstgAgt, else GrpHdr InstgAgt
    remittance_info: str | None  # RmtInf/Ustrd joined with " ", truncated to 140
    urgent: bool = False  # PmtTpInf/InstrPrty (tx level, else GrpHdr) is HIGH: settle gross
    # Cross-currency: InstdAmt in another currency than IntrBkSttlmAmt (what leaves the
    # debtor agent; IntrBkSttlmAmt is then what reaches the creditor agent), and XchgRate.
    # None when InstdAmt is absent or in the settlement currency (it is then not read).
    instructed_amount: Decimal | None = None
    instructed_currency: str | None = None
    exchange_rate: Decimal | None = None


@dataclass(frozen=True)
class Pacs008Message:
    message_id: str
    created_at: datetime.datetime
    number_of_transactions: int
    control_sum: Decimal | None
    settlement_method: str
    app_header_from_bic: str | None  # AppHdr/Fr/FIId/FinInstnId/BICFI when wrapped
    transactions: tuple[Pacs008Transaction, ...]


@dataclass(frozen=True)
class FieldError:
    field: str  # e.g. "CdtTrfTxInf[2]/IntrBkSttlmAmt", "GrpHdr/NbOfTxs", "AppHdr/Fr"
    message: str
    transaction: int | None  # index of the transaction, None for message-level errors

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class Pacs008Invalid(ValueError):
    """A pacs.008 that breaks the schema or DelTran's rules; `errors` are client-facing."""

    def __init__(self, errors: list[FieldError]) -> None:
        shown = "; ".join(str(e) for e in errors[:5])
        more = f"; ... ({len(errors)} errors)" if len(errors) > 5 else ""
        super().__init__(f"invalid {MESSAGE_TYPE}: {shown}{more}")
        self.errors = errors


# --------------------------------------------------------------------------- reader


def parse_pacs008(body: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> Pacs008Message:
    """Parse and validate a pacs.008.001.08 body; XmlRejected (not acceptable XML, not a
    pacs.008.001.08) or Pacs008Invalid (schema or rule violations, all of them) if unacceptable."""
    root = parse_xml(body, max_bytes)
    # Deep copies make the Document and the AppHdr roots of their own trees (line numbers
    # are kept), so an envelope's other content can neither fail nor satisfy validation.
    doc = copy.deepcopy(_find_document(root))
    header_el = _find_app_header(root)
    header = copy.deepcopy(header_el) if header_el is not None else None

    errors: list[FieldError] = []
    if header is not None:
        errors += _schema_field_errors(load_schema(HEAD_SCHEMA), header)
    errors += _schema_field_errors(load_schema(SCHEMA), doc)
    if errors:
        raise Pacs008Invalid(errors)

    app_header_from_bic = None
    if header is not None:
        app_header_from_bic = _text(header, "h:Fr/h:FIId/h:FinInstnId/h:BICFI")
        definition = _text(header, "h:MsgDefIdr")
        if definition != MESSAGE_TYPE:
            errors.append(FieldError("AppHdr/MsgDefIdr", f"is {definition!r}; the Document is a {MESSAGE_TYPE}", None))

    reader = _Reader(doc.find("p:FIToFICstmrCdtTrf", _N), errors)
    message = reader.message(app_header_from_bic)
    if errors:
        if len(errors) > MAX_FIELD_ERRORS:
            extra = len(errors) - MAX_FIELD_ERRORS
            errors = errors[:MAX_FIELD_ERRORS] + [FieldError("Document", f"... and {extra} more errors", None)]
        raise Pacs008Invalid(errors)
    return message


def _find_document(root: etree._Element) -> etree._Element:
    return find_document(root, NS, MESSAGE_TYPE)


def _find_app_header(root: etree._Element) -> etree._Element | None:
    """The head.001.001.02 AppHdr next to the Document, if any. An AppHdr of another
    version is refused rather than ignored: the sender meant it to be read."""
    headers = [el for el in root.iter("{*}AppHdr") if etree.QName(el).namespace != NS]
    if len(headers) > 1:
        raise XmlRejected(f"found {len(headers)} AppHdr elements; expected at most one")
    if not headers:
        return None
    namespace = etree.QName(headers[0]).namespace
    if namespace != HEAD_NS:
        raise XmlRejected(f"AppHdr in {namespace or 'no namespace'} is not supported; expected {HEAD_NS}")
    return headers[0]


def _schema_field_errors(schema: etree.XMLSchema, root: etree._Element) -> list[FieldError]:
    violations, total = schema_violations(schema, root)
    errors = [_located(v, root) for v in violations]
    if total > len(violations):
        errors.append(FieldError(_step_name(root), f"... and {total - len(violations)} more schema errors", None))
    return errors


def _located(violation: SchemaError, root: etree._Element) -> FieldError:
    """A schema violation with the readable path of its element and its transaction."""
    message = f"line {violation.line}: {violation.message}" if violation.line else violation.message
    element = None
    if violation.path:
        try:
            found = root.getroottree().xpath(violation.path)
        except etree.XPathError:
            found = []
        if found and isinstance(found[0], etree._Element):
            element = found[0]
    if element is None:
        return FieldError(_step_name(root), message, _transaction_at_line(root, violation.line))
    field, transaction = _field_path(element)
    if attribute := _ATTRIBUTE_ERROR.match(violation.message):
        field += f"/@{attribute.group(1)}"
    return FieldError(field, message, transaction)


def _step_name(root: etree._Element) -> str:
    return etree.QName(root).localname


def _transaction_at_line(root: etree._Element, line: int | None) -> int | None:
    """Fallback when an error names no element: the transaction starting last before `line`."""
    if not line:
        return None
    index = None
    for i, tx in enumerate(root.iter(_TX_TAG)):
        if tx.sourceline is not None and tx.sourceline <= line:
            index = i
    return index


def _field_path(element: etree._Element) -> tuple[str, int | None]:
    """("CdtTrfTxInf[2]/Dbtr/Nm", 2) for an element of a Document tree (relative to
    FIToFICstmrCdtTrf), ("AppHdr/Fr/...", None) for one of an AppHdr tree."""
    steps: list[str] = []
    transaction = None
    node = element
    while node.getparent() is not None:
        parent = node.getparent()
        name = etree.QName(node).localname
        siblings = [s for s in parent if s.tag == node.tag]
        if node.tag == _TX_TAG:
            transaction = siblings.index(node)
            steps.append(f"{name}[{transaction}]")
        elif len(siblings) > 1:
            steps.append(f"{name}[{siblings.index(node)}]")
        else:
            steps.append(name)
        node = parent
    steps.reverse()
    root_name = etree.QName(node).localname
    if node.tag == _DOCUMENT:
        if steps and steps[0] == "FIToFICstmrCdtTrf":
            steps = steps[1:] or steps
        return "/".join(steps) or root_name, transaction
    return "/".join([root_name, *steps]), transaction


def _text(el: etree._Element, path: str) -> str | None:
    value = el.findtext(path, namespaces=_N)
    value = value.strip() if value is not None else None
    return value or None


def _decimal(text: str | None) -> Decimal | None:
    try:  # from the text, never through float
        return Decimal(text.strip()) if text is not None else None
    except InvalidOperation:
        return None


class _Reader:
    """Reads a schema-valid FIToFICstmrCdtTrf, adding every rule violation to `errors`."""

    def __init__(self, msg: etree._Element, errors: list[FieldError]) -> None:
        self.msg = msg
        self.errors = errors
        # GrpHdr/PmtTpInf applies to every transaction that does not say otherwise.
        self.header_priority = _text(msg, "p:GrpHdr/p:PmtTpInf/p:InstrPrty")

    def error(self, field: str, message: str, transaction: int | None = None) -> None:
        self.errors.append(FieldError(field, message, transaction))

    def message(self, app_header_from_bic: str | None) -> Pacs008Message:
        # Schema-valid is not valid: the pattern admits a BIC of a country that does not exist.
        if app_header_from_bic is not None and (problem := check_bic(app_header_from_bic)):
            self.error("AppHdr/Fr/FIId/FinInstnId/BICFI", problem)
        hdr = self.msg.find("p:GrpHdr", _N)
        message_id = _text(hdr, "p:MsgId")
        if message_id is None:
            self.error("GrpHdr/MsgId", "is blank")
        created_at = self._datetime(hdr, "CreDtTm")
        header_date = self._date(hdr, "IntrBkSttlmDt", "GrpHdr", None)
        header_instg = _text(hdr, "p:InstgAgt/p:FinInstnId/p:BICFI")
        if header_instg is not None and (problem := check_bic(header_instg)):
            self.error("GrpHdr/InstgAgt/FinInstnId/BICFI", problem)

        transactions = [
            self.transaction(tx, i, header_date, header_instg)
            for i, tx in enumerate(self.msg.iterfind("p:CdtTrfTxInf", _N))
        ]
        number = int(_text(hdr, "p:NbOfTxs") or "0")  # the schema's pattern: 1 to 15 digits
        if len(transactions) > MAX_TRANSACTIONS:
            self.error(
                "GrpHdr/NbOfTxs",
                f"the message has {len(transactions)} CdtTrfTxInf;"
                f" DelTran accepts at most {MAX_TRANSACTIONS} per message",
            )
        if number != len(transactions):
            self.error("GrpHdr/NbOfTxs", f"is {number} but the message has {len(transactions)} CdtTrfTxInf")

        amounts = [
            _decimal(tx.findtext("p:IntrBkSttlmAmt", namespaces=_N)) or Decimal(0)
            for tx in self.msg.iterfind("p:CdtTrfTxInf", _N)
        ]
        total = sum(amounts, Decimal(0))
        control_sum = _decimal(hdr.findtext("p:CtrlSum", namespaces=_N))
        if control_sum is not None and control_sum != total:
            self.error("GrpHdr/CtrlSum", f"is {control_sum} but the IntrBkSttlmAmt add up to {total}")
        self._check_total(hdr, total)
        self._check_duplicates(transactions)

        return Pacs008Message(
            message_id=message_id or "",
            created_at=created_at or datetime.datetime.min,
            number_of_transactions=number,
            control_sum=control_sum,
            settlement_method=_text(hdr, "p:SttlmInf/p:SttlmMtd") or "",
            app_header_from_bic=app_header_from_bic,
            transactions=tuple(transactions),
        )

    def _check_total(self, hdr: etree._Element, total: Decimal) -> None:
        el = hdr.find("p:TtlIntrBkSttlmAmt", _N)
        if el is None:
            return
        currency = el.get("Ccy")
        stated = _decimal(el.text)
        others = sorted({tx.get("Ccy") for tx in self.msg.iterfind("p:CdtTrfTxInf/p:IntrBkSttlmAmt", _N)} - {currency})
        if others:
            self.error("GrpHdr/TtlIntrBkSttlmAmt", f"is in {currency} but transactions are also in {', '.join(others)}")
        elif stated != total:
            self.error("GrpHdr/TtlIntrBkSttlmAmt", f"is {stated} but the IntrBkSttlmAmt add up to {total}")

    def _check_duplicates(self, transactions: list[Pacs008Transaction]) -> None:
        # EndToEndId (with the instructing bank) is a payment's identity in DelTran, and a
        # UETR is unique by definition: the same one twice in one message is a mistake.
        for attribute, tag in (("end_to_end_id", "PmtId/EndToEndId"), ("uetr", "PmtId/UETR")):
            first: dict[str, int] = {}
            for tx in transactions:
                value = getattr(tx, attribute)
                if not value:
                    continue
                if value in first:
                    self.error(
                        f"CdtTrfTxInf[{tx.index}]/{tag}",
                        f"{value!r} is also used by CdtTrfTxInf[{first[value]}]",
                        tx.index,
                    )
                else:
                    first[value] = tx.index

    def transaction(
        self, tx: etree._Element, index: int, header_date: datetime.date | None, header_instg: str | None
    ) -> Pacs008Transaction:
        at = f"CdtTrfTxInf[{index}]"

        def error(field: str, message: str) -> None:
            self.error(f"{at}/{field}", message, index)

        end_to_end_id = _text(tx, "p:PmtId/p:EndToEndId")
        if end_to_end_id is None:
            error("PmtId/EndToEndId", "is blank")
        elif end_to_end_id.upper() == "NOTPROVIDED":
            # With the instructing bank it is the payment's identity: it must be real.
            error("PmtId/EndToEndId", "NOTPROVIDED is not accepted: give the payment its own EndToEndId")

        amount_el = tx.find("p:IntrBkSttlmAmt", _N)
        currency = amount_el.get("Ccy", "")
        amount = _decimal(amount_el.text) or Decimal(0)
        if currency not in MINOR_UNITS:
            error("IntrBkSttlmAmt/@Ccy", f"currency {currency!r} is not supported")
        else:
            try:
                amount = parse_amount(amount, currency)
            except AmountError as exc:
                error("IntrBkSttlmAmt", str(exc))

        instructed_amount, instructed_currency, exchange_rate = self._conversion(tx, currency, error)

        debtor_iban, debtor_account = self._account(tx, "DbtrAcct", "debtor", error)
        creditor_iban, creditor_account = self._account(tx, "CdtrAcct", "creditor", error)
        debtor_agent_bic = self._agent(tx, "DbtrAgt", "debtor agent", error, required=True)
        creditor_agent_bic = self._agent(tx, "CdtrAgt", "creditor agent", error, required=True)
        instructing_agent_bic = self._agent(tx, "InstgAgt", "instructing agent", error, required=False)
        debtor_name = self._name(tx, "Dbtr", "debtor", error)
        creditor_name = self._name(tx, "Cdtr", "creditor", error)

        lines = [t.strip() for t in (el.text for el in tx.iterfind("p:RmtInf/p:Ustrd", _N)) if t and t.strip()]
        remittance = " ".join(lines)[:MAX_REMITTANCE].rstrip() or None

        return Pacs008Transaction(
            index=index,
            end_to_end_id=end_to_end_id or "",
            instruction_id=_text(tx, "p:PmtId/p:InstrId"),
            transaction_id=_text(tx, "p:PmtId/p:TxId"),
            uetr=_text(tx, "p:PmtId/p:UETR"),
            amount=amount,
            currency=currency,
            settlement_date=self._date(tx, "IntrBkSttlmDt", at, index) or header_date,
            charge_bearer=_text(tx, "p:ChrgBr"),
            debtor_name=debtor_name,
            debtor_iban=debtor_iban,
            debtor_account=debtor_account,
            debtor_agent_bic=debtor_agent_bic or "",
            creditor_name=creditor_name,
            creditor_iban=creditor_iban,
            creditor_account=creditor_account,
            creditor_agent_bic=creditor_agent_bic or "",
            instructing_agent_bic=instructing_agent_bic or header_instg,
            remittance_info=remittance,
            urgent=(_text(tx, "p:PmtTpInf/p:InstrPrty") or self.header_priority) == "HIGH",
            instructed_amount=instructed_amount,
            instructed_currency=instructed_currency,
            exchange_rate=exchange_rate,
        )

    @staticmethod
    def _conversion(
        tx: etree._Element, settlement_currency: str, error
    ) -> tuple[Decimal | None, str | None, Decimal | None]:
        """InstdAmt in another currency, and the XchgRate it then needs; else nothing."""
        instructed = tx.find("p:InstdAmt", _N)
        if instructed is None or instructed.get("Ccy", "") == settlement_currency:
            return None, None, None
        currency = instructed.get("Ccy", "")
        amount = _decimal(instructed.text)
        if currency not in MINOR_UNITS:
            error("InstdAmt/@Ccy", f"currency {currency!r} is not supported")
            return None, None, None
        try:
            amount = parse_amount(amount or Decimal(0), currency)
        except AmountError as exc:
            error("InstdAmt", str(exc))
            return None, None, None
        rate = _decimal(_text(tx, "p:XchgRate"))
        if rate is None:
            error("XchgRate", f"is required: InstdAmt is in {currency}, IntrBkSttlmAmt in {settlement_currency}")
        elif not rate > 0:
            error("XchgRate", "must be greater than zero")
        return amount, currency, rate

    @staticmethod
    def _account(tx: etree._Element, tag: str, party: str, error) -> tuple[str | None, str | None]:
        iban = _text(tx, f"p:{tag}/p:Id/p:IBAN")
        other = _text(tx, f"p:{tag}/p:Id/p:Othr/p:Id")
        if iban is not None:
            if problem := check_account(iban, None, party=party):
                error(f"{tag}/Id/IBAN", problem)
        elif other is not None:
            # ISO 20022 Othr/Id is Max34Text; like the JSON API, DelTran takes 4 to 34
            # letters and digits (domestic account numbers, e.g. in India).
            if problem := check_account(None, other, party=party):
                error(f"{tag}/Id/Othr/Id", problem)
        else:
            error(tag, f"{party} account is missing ({tag}/Id/IBAN or {tag}/Id/Othr/Id is required)")
        return iban, other if iban is None else None

    @staticmethod
    def _agent(tx: etree._Element, tag: str, role: str, error, *, required: bool) -> str | None:
        if tx.find(f"p:{tag}", _N) is None and not required:
            return None
        bic = _text(tx, f"p:{tag}/p:FinInstnId/p:BICFI")
        if bic is None:
            if required:
                error(f"{tag}/FinInstnId/BICFI", f"{role} BIC is missing; DelTran identifies agents by BICFI")
            return None
        if problem := check_bic(bic):
            error(f"{tag}/FinInstnId/BICFI", f"{role} {problem}")
        return bic

    @staticmethod
    def _name(tx: etree._Element, tag: str, party: str, error) -> str:
        name = _text(tx, f"p:{tag}/p:Nm")
        if name is None:
            error(f"{tag}/Nm", f"{party} name is missing")
        return name or ""

    def _date(self, el: etree._Element, tag: str, at: str, index: int | None) -> datetime.date | None:
        value = _text(el, f"p:{tag}")
        if value is None:
            return None
        try:  # xs:date may carry an offset: the date as written is the settlement date
            return datetime.date.fromisoformat(value[:10])
        except ValueError:
            self.error(f"{at}/{tag}", f"unsupported date {value!r}", index)
            return None

    def _datetime(self, hdr: etree._Element, tag: str) -> datetime.datetime | None:
        value = _text(hdr, f"p:{tag}")
        try:  # Python 3.11 reads "Z", offsets and fractions; xs:dateTime "24:00:00" it cannot
            return datetime.datetime.fromisoformat(value or "")
        except ValueError:
            self.error(f"GrpHdr/{tag}", f"unsupported date-time {value!r}")
            return None


# --------------------------------------------------------------------------- writer


@dataclass(frozen=True)
class Pacs008Spec:
    """One CdtTrfTxInf to write. Give each party an IBAN or a domestic account number."""

    end_to_end_id: str
    amount: Decimal
    currency: str
    debtor_name: str
    debtor_agent_bic: str
    creditor_name: str
    creditor_agent_bic: str
    debtor_iban: str | None = None
    debtor_account: str | None = None
    creditor_iban: str | None = None
    creditor_account: str | None = None
    uetr: str | None = None  # a fresh uuid4 when None
    instruction_id: str | None = None
    transaction_id: str | None = None
    remittance_info: str | None = None
    charge_bearer: str = "SHAR"
    settlement_date: datetime.date | None = None  # today (UTC) when None
    urgent: bool = False  # PmtTpInf/InstrPrty HIGH
    # Cross-currency: `amount`/`currency` are then the target side (IntrBkSttlmAmt), these
    # the source side (InstdAmt) and the rate (XchgRate), as a quote gave them.
    instructed_amount: Decimal | None = None
    instructed_currency: str | None = None
    exchange_rate: Decimal | None = None


def _sub(parent: etree._Element, tag: str, text: str | None = None, ns: str = NS, **attrib: str) -> etree._Element:
    el = etree.SubElement(parent, f"{{{ns}}}{tag}", attrib)
    if text is not None:
        el.text = text
    return el


def _amount_text(amount: Decimal) -> str:
    return format(amount, "f")  # str() could give "1E+3", which is not an xs:decimal


def _bic_element(parent: etree._Element, tag: str, bic: str, ns: str = NS) -> None:
    _sub(_sub(_sub(parent, tag, ns=ns), "FinInstnId", ns=ns), "BICFI", bic, ns=ns)


def build_pacs008(
    transactions: Sequence[Pacs008Spec],
    *,
    message_id: str,
    instructing_agent_bic: str,
    instructed_agent_bic: str = DELTRAN_BIC,
    with_app_header: bool = False,
    created_at: datetime.datetime | None = None,
    control_sum: bool = True,
) -> bytes:
    """A schema-valid pacs.008.001.08 (UTF-8, with an XML declaration).

    CBPR+ layout: GrpHdr has MsgId, CreDtTm, NbOfTxs, CtrlSum (unless control_sum=False)
    and SttlmInf/SttlmMtd CLRG (DelTran is the clearing system); each CdtTrfTxInf carries
    its UETR, IntrBkSttlmDt, InstgAgt and InstdAgt (the v08 XSD makes neither agent
    mandatory; CBPR+ wants them per transaction). With with_app_header=True the Document
    is wrapped with a head.001.001.02 AppHdr (Fr = instructing bank, To = instructed agent)
    in an {urn:deltran:envelope}Envelope. Only the schema is enforced, so tests can write
    messages that DelTran's rules reject (an invalid IBAN, too many decimals...); raises
    Pacs008Invalid if the result breaks the schema (e.g. an EndToEndId over 35 characters).
    """
    if not transactions:
        raise ValueError("a pacs.008 needs at least one transaction")
    created_at = created_at or datetime.datetime.now(datetime.UTC)
    today = datetime.datetime.now(datetime.UTC).date()

    doc = etree.Element(_DOCUMENT, nsmap={None: NS})
    msg = _sub(doc, "FIToFICstmrCdtTrf")
    hdr = _sub(msg, "GrpHdr")
    _sub(hdr, "MsgId", message_id)
    _sub(hdr, "CreDtTm", created_at.isoformat())
    _sub(hdr, "NbOfTxs", str(len(transactions)))
    if control_sum:
        _sub(hdr, "CtrlSum", _amount_text(sum((t.amount for t in transactions), Decimal(0))))
    _sub(_sub(hdr, "SttlmInf"), "SttlmMtd", "CLRG")

    for spec in transactions:
        # Element order follows CreditTransferTransaction39 in the XSD (sequence order matters).
        tx = _sub(msg, "CdtTrfTxInf")
        pmt_id = _sub(tx, "PmtId")
        if spec.instruction_id:
            _sub(pmt_id, "InstrId", spec.instruction_id)
        _sub(pmt_id, "EndToEndId", spec.end_to_end_id)
        if spec.transaction_id:
            _sub(pmt_id, "TxId", spec.transaction_id)
        _sub(pmt_id, "UETR", spec.uetr if spec.uetr is not None else str(uuid.uuid4()))
        if spec.urgent:
            _sub(_sub(tx, "PmtTpInf"), "InstrPrty", "HIGH")
        _sub(tx, "IntrBkSttlmAmt", _amount_text(spec.amount), Ccy=spec.currency)
        _sub(tx, "IntrBkSttlmDt", (spec.settlement_date or today).isoformat())
        if spec.instructed_amount is not None and spec.instructed_currency is not None:
            _sub(tx, "InstdAmt", _amount_text(spec.instructed_amount), Ccy=spec.instructed_currency)
        if spec.exchange_rate is not None:
            # BaseOneRate: 11 digits at most, so no trailing zeros.
            _sub(tx, "XchgRate", _amount_text(spec.exchange_rate.normalize()))
        _sub(tx, "ChrgBr", spec.charge_bearer)
        _bic_element(tx, "InstgAgt", instructing_agent_bic)
        _bic_element(tx, "InstdAgt", instructed_agent_bic)
        _sub(_sub(tx, "Dbtr"), "Nm", spec.debtor_name)
        _write_account(tx, "DbtrAcct", spec.debtor_iban, spec.debtor_account)
        _bic_element(tx, "DbtrAgt", spec.debtor_agent_bic)
        _bic_element(tx, "CdtrAgt", spec.creditor_agent_bic)
        _sub(_sub(tx, "Cdtr"), "Nm", spec.creditor_name)
        _write_account(tx, "CdtrAcct", spec.creditor_iban, spec.creditor_account)
        if spec.remittance_info:
            _sub(_sub(tx, "RmtInf"), "Ustrd", spec.remittance_info)

    errors = _schema_field_errors(load_schema(SCHEMA), doc)
    if not with_app_header:
        if errors:
            raise Pacs008Invalid(errors)
        return _serialise(doc)

    header = etree.Element(_APPHDR, nsmap={None: HEAD_NS})
    _bic_element(_sub(header, "Fr", ns=HEAD_NS), "FIId", instructing_agent_bic, ns=HEAD_NS)
    _bic_element(_sub(header, "To", ns=HEAD_NS), "FIId", instructed_agent_bic, ns=HEAD_NS)
    _sub(header, "BizMsgIdr", message_id, ns=HEAD_NS)
    _sub(header, "MsgDefIdr", MESSAGE_TYPE, ns=HEAD_NS)
    _sub(header, "CreDt", created_at.isoformat(), ns=HEAD_NS)
    errors = _schema_field_errors(load_schema(HEAD_SCHEMA), header) + errors
    if errors:
        raise Pacs008Invalid(errors)

    envelope = etree.Element(f"{{{ENVELOPE_NS}}}Envelope", nsmap={None: ENVELOPE_NS})
    envelope.append(header)
    envelope.append(doc)
    return _serialise(envelope)


def _serialise(root: etree._Element) -> bytes:
    # The declaration as ISO 20022 tooling writes it (lxml's own uses single quotes).
    return XML_DECLARATION + etree.tostring(root, xml_declaration=False, encoding="UTF-8", pretty_print=True)


def _write_account(tx: etree._Element, tag: str, iban: str | None, account: str | None) -> None:
    if iban is None and account is None:
        return  # schema-valid (the account is optional there); DelTran's reader refuses it
    ident = _sub(_sub(tx, tag), "Id")
    if iban is not None:
        _sub(ident, "IBAN", iban)
    else:
        _sub(_sub(ident, "Othr"), "Id", account)
