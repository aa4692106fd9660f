"""camt.053.001.08 (bank-to-customer statement): a bank's DelTran token account over a
period, as `GET /v1/accounts/{currency}/statement` answers with `Accept: application/xml`.

One Stmt per page of the statement (StmtPgntn: its number, whether it is the last): the
account (DelTran's identifier for it, its currency, its owner's BIC, DelTran the
servicer); the opening booked balance (OPBD) at the period's start on the first page and
the closing booked balance (CLBD) at its end on the last, interim booked balances (ITBD)
where a page begins or ends inside the period; the page's totals; one booked Ntry per
posting (deltran/iso20022/token_account.py). FrToDt is inclusive in ISO 20022: its end
is the period's exclusive end less a microsecond, the ledger's resolution. Validated
against the official XSD before it leaves.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from lxml import etree

from deltran.domain.statements import Statement
from deltran.iso20022.token_account import ReportWriter, amount_text, time_text
from deltran.iso20022.xml_safety import load_schema, schema_errors

NS = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"
SCHEMA = "camt.053.001.08.xsd"
_RESOLUTION = timedelta(microseconds=1)
_w = ReportWriter(NS)


class Camt053Invalid(Exception):
    """The statement cannot be written as a valid camt.053 (an amount beyond its 18 digits)."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def statement_id(statement: Statement) -> str:
    """The same for every page of a period, and for the period asked again."""
    period = f"{statement.bic}|{statement.currency}|{statement.start.astimezone(UTC).isoformat()}|"
    period += statement.end.astimezone(UTC).isoformat()
    return "STMT" + hashlib.sha256(period.encode()).hexdigest()[:31]


def build_camt053(statement: Statement, *, servicer_bic: str, message_id: str) -> bytes:
    """The page as a camt.053; `message_id` (at most 35 characters) names this message
    uniquely, Stmt/Id the statement (`statement_id`)."""
    ccy, sub = statement.currency, _w.sub
    last_instant = statement.end - _RESOLUTION
    doc = etree.Element(f"{{{NS}}}Document", nsmap={None: NS})
    root = sub(doc, "BkToCstmrStmt")
    header = sub(root, "GrpHdr")
    sub(header, "MsgId", message_id)
    sub(header, "CreDtTm", time_text(statement.read_at))
    paging = sub(header, "MsgPgntn")
    sub(paging, "PgNb", str(statement.page))
    sub(paging, "LastPgInd", "true" if statement.last_page else "false")
    stmt = sub(root, "Stmt")
    sub(stmt, "Id", statement_id(statement))
    paging = sub(stmt, "StmtPgntn")
    sub(paging, "PgNb", str(statement.page))
    sub(paging, "LastPgInd", "true" if statement.last_page else "false")
    sub(stmt, "CreDtTm", time_text(statement.read_at))
    period = sub(stmt, "FrToDt")
    sub(period, "FrDtTm", time_text(statement.start))
    sub(period, "ToDtTm", time_text(last_instant))
    _w.account(stmt, statement.bic, ccy, servicer_bic)
    first_posting = statement.postings[0].booked_at if statement.postings else statement.start
    if statement.page == 1:
        _balance(stmt, "OPBD", statement.opening, ccy, statement.start)
    else:
        _balance(stmt, "ITBD", statement.page_opening, ccy, first_posting)
    if statement.last_page:
        _balance(stmt, "CLBD", statement.closing, ccy, last_instant)
    else:
        _balance(stmt, "ITBD", statement.page_closing, ccy, statement.postings[-1].booked_at)
    credits = [p.amount for p in statement.postings if p.credit]
    debits = [p.amount for p in statement.postings if not p.credit]
    summary = sub(stmt, "TxsSummry")
    total = sub(summary, "TtlNtries")
    sub(total, "NbOfNtries", str(len(statement.postings)))
    if statement.postings:
        net = sum(credits, Decimal(0)) - sum(debits, Decimal(0))
        sub(total, "Sum", amount_text(sum(credits + debits, Decimal(0)), ccy))
        sub(total, "TtlNetNtry").extend(
            [_w.el("Amt", amount_text(abs(net), ccy)), _w.el("CdtDbtInd", "CRDT" if net >= 0 else "DBIT")]
        )
    for tag, group in (("TtlCdtNtries", credits), ("TtlDbtNtries", debits)):
        part = sub(summary, tag)
        sub(part, "NbOfNtries", str(len(group)))
        sub(part, "Sum", amount_text(sum(group, Decimal(0)), ccy))
    for posting in statement.postings:
        _w.entry(stmt, posting, ccy, statement.bic)

    errors = schema_errors(load_schema(SCHEMA), doc)
    if errors:
        raise Camt053Invalid(errors)
    return etree.tostring(doc, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _balance(stmt: etree._Element, code: str, amount: Decimal, ccy: str, at: datetime) -> None:
    bal = _w.sub(stmt, "Bal")
    _w.sub(_w.sub(_w.sub(bal, "Tp"), "CdOrPrtry"), "Cd", code)
    _w.sub(bal, "Amt", amount_text(abs(amount), ccy), Ccy=ccy)
    _w.sub(bal, "CdtDbtInd", "CRDT" if amount >= 0 else "DBIT")
    _w.sub(_w.sub(bal, "Dt"), "DtTm", time_text(at))
