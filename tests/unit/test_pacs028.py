"""The pacs.028.001.05 reader and writer (deltran/iso20022/pacs028.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from deltran.iso20022.pacs028 import (
    OriginalMessage,
    Pacs028Invalid,
    RequestedTransaction,
    StatusRequest,
    build_pacs028,
    parse_pacs028,
)
from deltran.iso20022.xml_safety import XmlRejected

NS = "urn:iso:std:iso:20022:tech:xsd:pacs.028.001.05"
APP_HEADER_NS = "urn:iso:std:iso:20022:tech:xsd:head.001.001.02"


def _request(**changes) -> StatusRequest:
    fields = dict(
        message_id="SR-1",
        created_at=datetime(2026, 12, 7, 10, 0, tzinfo=UTC),
        instructing_agent_bic="EBILAEAD",
        original_message=OriginalMessage("MSG-1", "pacs.008.001.08"),
        transactions=(RequestedTransaction("E2E-1", None), RequestedTransaction(None, "TX-2")),
    )
    fields.update(changes)
    return StatusRequest(**fields)


def test_what_is_written_reads_back_the_same():
    request = _request()
    assert parse_pacs028(build_pacs028(request)) == request


def test_a_message_alone_or_transactions_alone_is_a_question():
    by_message = _request(transactions=(), instructing_agent_bic=None)
    assert parse_pacs028(build_pacs028(by_message)) == by_message
    by_transaction = _request(original_message=None)
    assert parse_pacs028(build_pacs028(by_transaction)) == by_transaction


def test_a_request_in_an_app_header_envelope_is_read():
    document = build_pacs028(_request()).split(b"?>", 1)[1]
    envelope = f'<Envelope><AppHdr xmlns="{APP_HEADER_NS}"/>'.encode() + document + b"</Envelope>"
    assert parse_pacs028(envelope).message_id == "SR-1"


def test_a_request_that_names_nothing_is_refused_and_says_where():
    with pytest.raises(Pacs028Invalid) as nothing:
        build_pacs028(_request(original_message=None, transactions=()))
    assert nothing.value.errors[0]["field"] == "FIToFIPmtStsReq"
    body = build_pacs028(_request()).replace(b"<OrgnlEndToEndId>E2E-1</OrgnlEndToEndId>", b"")
    with pytest.raises(Pacs028Invalid) as empty_tx:
        parse_pacs028(body)
    assert [e["field"] for e in empty_tx.value.errors] == ["TxInf[0]"]


@pytest.mark.parametrize(
    ("body", "refusal"),
    [
        (b"", XmlRejected),
        (b'<!DOCTYPE x [<!ENTITY a "b">]><Document/>', XmlRejected),
        (f'<Document xmlns="{NS.replace("05", "03")}"/>'.encode(), XmlRejected),  # another version
        (f'<Document xmlns="{NS}"><FIToFIPmtStsReq/></Document>'.encode(), Pacs028Invalid),  # no GrpHdr
    ],
    ids=["empty", "doctype", "other-version", "schema"],
)
def test_what_is_not_a_pacs028_is_refused(body, refusal):
    with pytest.raises(refusal):
        parse_pacs028(body)


def test_a_date_time_the_schema_admits_but_python_cannot_read_is_refused_not_a_crash():
    body = build_pacs028(_request()).replace(b"2026-12-07T10:00:00+00:00", b"2026-12-07T24:00:00")
    with pytest.raises(Pacs028Invalid) as refused:
        parse_pacs028(body)
    assert refused.value.errors[0]["field"] in ("GrpHdr/CreDtTm", "body")


def test_at_most_a_thousand_transactions_are_asked_about_at_once():
    many = tuple(RequestedTransaction(f"E2E-{n}", None) for n in range(1001))
    with pytest.raises(Pacs028Invalid) as refused:
        build_pacs028(_request(transactions=many))
    assert [e["field"] for e in refused.value.errors] == ["TxInf"]
    body = build_pacs028(_request(transactions=many[:1000])).replace(
        b"</FIToFIPmtStsReq>", b"<TxInf><OrgnlEndToEndId>E2E-X</OrgnlEndToEndId></TxInf></FIToFIPmtStsReq>"
    )
    with pytest.raises(Pacs028Invalid):
        parse_pacs028(body)
