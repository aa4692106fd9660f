"""pacs.002.001.10 status report: status mapping, writer (schema-valid output) and reader."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
from decimal import Decimal

import pytest
from lxml import etree

from deltran.iso20022.pacs002 import (
    ADDTL_INF_MAX_CHARS,
    ADDTL_INF_MAX_LINES,
    NS,
    SCHEMA,
    Pacs002Invalid,
    StatusReport,
    TransactionStatus,
    additional_info_lines,
    build_pacs002,
    parse_pacs002_status,
    transaction_status_for,
)
from deltran.iso20022.xml_safety import SCHEMA_DIR, XmlRejected, load_schema
from deltran.reason_codes import ReasonCode
from deltran.vocabulary import PaymentStatus

UTC = datetime.UTC
GST = datetime.timezone(datetime.timedelta(hours=4))
UETR = "8a562c67-ca16-48ba-b074-65581be6f001"
_N = {"p": NS}


def _report(**kw) -> StatusReport:
    base = dict(
        message_id="DLT-STS-0001",
        created_at=datetime.datetime(2025, 1, 2, 10, 0, tzinfo=UTC),
        instructing_agent_bic="DLTRAEAD",
        instructed_agent_bic="EBILAEAD",
        original_message_id="EBIL-MSG-0001",
        original_message_name="pacs.008.001.08",
        original_end_to_end_id="E2E-1",
        original_instruction_id="INSTR-1",
        original_transaction_id="TX-1",
        original_uetr=UETR,
        status=TransactionStatus.ACSP,
        reason_code=None,
        reason_text=None,
        acceptance_datetime=datetime.datetime(2025, 1, 2, 9, 59, 30, tzinfo=UTC),
        settlement_amount=Decimal("100000.00"),
        currency="AED",
    )
    return StatusReport(**{**base, **kw})


def _valid(body: bytes) -> etree._Element:
    root = etree.fromstring(body)
    schema = load_schema(SCHEMA)
    assert schema.validate(root), schema.error_log
    return root


# --------------------------------------------------------------------------- schema file


def test_schema_is_the_official_file():
    digest = hashlib.sha256((SCHEMA_DIR / SCHEMA).read_bytes()).hexdigest()
    assert digest == "2016d5989e93376a85e515ef4874eceea46fc95d35c62292cf1577be31382404"


# --------------------------------------------------------------------------- status mapping


@pytest.mark.parametrize(
    ("payment_status", "expected"),
    [
        (PaymentStatus.SCREENING, TransactionStatus.PDNG),
        (PaymentStatus.AWAITING_SETTLEMENT, TransactionStatus.ACSP),
        (PaymentStatus.SETTLED, TransactionStatus.ACSC),
        (PaymentStatus.COMPLETED, TransactionStatus.ACSC),
    ],
)
def test_non_rejected_statuses_map_without_reason(payment_status, expected):
    assert transaction_status_for(payment_status, None) == (expected, None)
    assert transaction_status_for(payment_status.value, None) == (expected, None)  # plain str
    # A stray rejection code on a live payment is not reported.
    assert transaction_status_for(payment_status, "RR04") == (expected, None)


def test_every_payment_status_is_mapped():
    for payment_status in PaymentStatus:
        code = "RR04" if payment_status is PaymentStatus.REJECTED else None
        status, _ = transaction_status_for(payment_status, code)
        assert isinstance(status, TransactionStatus)


@pytest.mark.parametrize("code", [c.value for c in ReasonCode])
def test_rejected_maps_to_rjct_with_its_code(code):
    assert transaction_status_for("REJECTED", code) == (TransactionStatus.RJCT, code)


def test_rejected_without_code_is_refused():
    with pytest.raises(ValueError, match="rejection code"):
        transaction_status_for(PaymentStatus.REJECTED, None)
    with pytest.raises(ValueError):
        transaction_status_for(PaymentStatus.REJECTED, "  ")


def test_expired_maps_to_rjct_ab01_unless_another_code():
    assert transaction_status_for(PaymentStatus.EXPIRED, None) == (TransactionStatus.RJCT, "AB01")
    assert transaction_status_for(PaymentStatus.EXPIRED, "") == (TransactionStatus.RJCT, "AB01")
    assert transaction_status_for(PaymentStatus.EXPIRED, "AG01") == (TransactionStatus.RJCT, "AG01")


def test_unknown_payment_status_is_refused():
    with pytest.raises(ValueError, match="unknown payment status"):
        transaction_status_for("LOST", None)


# --------------------------------------------------------------------------- writer


def test_full_report_is_valid_and_in_schema_order():
    body = build_pacs002(_report())
    assert body.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    root = _valid(body)
    rpt = root.find("p:FIToFIPmtStsRpt", _N)
    assert [etree.QName(e).localname for e in rpt] == ["GrpHdr", "OrgnlGrpInfAndSts", "TxInfAndSts"]
    assert rpt.findtext("p:GrpHdr/p:MsgId", namespaces=_N) == "DLT-STS-0001"
    assert rpt.findtext("p:GrpHdr/p:CreDtTm", namespaces=_N) == "2025-01-02T10:00:00+00:00"
    assert rpt.findtext("p:GrpHdr/p:InstgAgt/p:FinInstnId/p:BICFI", namespaces=_N) == "DLTRAEAD"
    assert rpt.findtext("p:GrpHdr/p:InstdAgt/p:FinInstnId/p:BICFI", namespaces=_N) == "EBILAEAD"
    assert rpt.findtext("p:OrgnlGrpInfAndSts/p:OrgnlMsgId", namespaces=_N) == "EBIL-MSG-0001"
    assert rpt.findtext("p:OrgnlGrpInfAndSts/p:OrgnlMsgNmId", namespaces=_N) == "pacs.008.001.08"
    tx = rpt.find("p:TxInfAndSts", _N)
    assert [etree.QName(e).localname for e in tx] == [
        "OrgnlInstrId",
        "OrgnlEndToEndId",
        "OrgnlTxId",
        "OrgnlUETR",
        "TxSts",
        "AccptncDtTm",
        "OrgnlTxRef",
    ]
    assert tx.findtext("p:TxSts", namespaces=_N) == "ACSP"
    amt = tx.find("p:OrgnlTxRef/p:IntrBkSttlmAmt", _N)
    assert (amt.text, amt.get("Ccy")) == ("100000.00", "AED")


def test_minimal_report_without_optional_references_is_valid():
    body = build_pacs002(
        _report(
            original_instruction_id=None,
            original_transaction_id=None,
            original_uetr=None,
            acceptance_datetime=None,
            settlement_amount=None,
            currency=None,
            status=TransactionStatus.PDNG,
        )
    )
    tx = _valid(body).find("p:FIToFIPmtStsRpt/p:TxInfAndSts", _N)
    assert [etree.QName(e).localname for e in tx] == ["OrgnlEndToEndId", "TxSts"]


@pytest.mark.parametrize("status", list(TransactionStatus))
def test_every_transaction_status_is_valid(status):
    code = "RR04" if status is TransactionStatus.RJCT else None
    _valid(build_pacs002(_report(status=status, reason_code=code)))


@pytest.mark.parametrize("code", [c.value for c in ReasonCode])
@pytest.mark.parametrize("with_uetr", [True, False])
@pytest.mark.parametrize("with_amount", [True, False])
def test_rjct_with_each_reason_code_is_valid(code, with_uetr, with_amount):
    report = _report(
        status=TransactionStatus.RJCT,
        reason_code=code,
        reason_text=f"rejected by DelTran ({code})",
        original_uetr=UETR if with_uetr else None,
        settlement_amount=Decimal("2500.5") if with_amount else None,
        currency="USD" if with_amount else None,
        acceptance_datetime=None,
    )
    tx = _valid(build_pacs002(report)).find("p:FIToFIPmtStsRpt/p:TxInfAndSts", _N)
    assert tx.findtext("p:TxSts", namespaces=_N) == "RJCT"
    assert tx.findtext("p:StsRsnInf/p:Rsn/p:Cd", namespaces=_N) == code
    assert tx.findtext("p:StsRsnInf/p:AddtlInf", namespaces=_N) == f"rejected by DelTran ({code})"
    assert (tx.find("p:OrgnlUETR", _N) is not None) == with_uetr
    amount = tx.findtext("p:OrgnlTxRef/p:IntrBkSttlmAmt", namespaces=_N)
    assert amount == ("2500.50" if with_amount else None)


def test_reports_built_from_each_payment_status_are_valid():
    for payment_status in PaymentStatus:
        code = "AM02" if payment_status is PaymentStatus.REJECTED else None
        status, reason = transaction_status_for(payment_status, code)
        _valid(build_pacs002(_report(status=status, reason_code=reason)))


def test_rjct_without_reason_code_is_refused():
    for missing in (None, "", "   "):
        with pytest.raises(Pacs002Invalid, match="reason code") as exc:
            build_pacs002(_report(status=TransactionStatus.RJCT, reason_code=missing, reason_text="why"))
        assert isinstance(exc.value, ValueError)


def test_reason_text_without_code_on_pending_is_valid():
    body = build_pacs002(_report(status=TransactionStatus.PDNG, reason_text="screening in progress"))
    tx = _valid(body).find("p:FIToFIPmtStsRpt/p:TxInfAndSts", _N)
    assert tx.find("p:StsRsnInf/p:Rsn", _N) is None
    assert tx.findtext("p:StsRsnInf/p:AddtlInf", namespaces=_N) == "screening in progress"


def test_long_reason_text_stays_schema_valid():
    text = "Sanctions screening hit on creditor name 'Ganesh Textiles Pvt Ltd' " * 20 + "x" * 400
    body = build_pacs002(_report(status=TransactionStatus.RJCT, reason_code="RR04", reason_text=text))
    lines = _valid(body).findall("p:FIToFIPmtStsRpt/p:TxInfAndSts/p:StsRsnInf/p:AddtlInf", _N)
    assert 1 < len(lines) <= ADDTL_INF_MAX_LINES
    assert all(0 < len(line.text) <= ADDTL_INF_MAX_CHARS for line in lines)
    assert lines[0].text.startswith("Sanctions screening hit on creditor name")
    assert lines[-1].text.endswith("…")


def test_reason_text_is_split_at_words_and_cleaned():
    assert additional_info_lines(None) == []
    assert additional_info_lines(" \n\t ") == []
    assert additional_info_lines("a\n\tb  c\x00d") == ["a b c d"]
    words = " ".join(f"word{i:03d}" for i in range(30))  # 239 characters: fits in 3 lines
    lines = additional_info_lines(words)
    assert len(lines) == 3 and all(len(line) <= ADDTL_INF_MAX_CHARS for line in lines)
    assert " ".join(lines) == words  # nothing lost, no word broken
    one_word = "y" * 250
    assert additional_info_lines(one_word) == ["y" * 105, "y" * 105, "y" * 40]


def test_reason_text_with_control_characters_is_valid():
    body = build_pacs002(
        _report(status=TransactionStatus.RJCT, reason_code="RR04", reason_text="hit:\x01\x1f name\r\nline two")
    )
    assert _valid(body).findtext(".//p:AddtlInf", namespaces=_N) == "hit: name line two"


def test_uetr_is_written_in_lower_case():
    body = build_pacs002(_report(original_uetr=UETR.upper()))
    assert _valid(body).findtext(".//p:OrgnlUETR", namespaces=_N) == UETR


def test_other_timezones_and_unlisted_currency_are_valid():
    body = build_pacs002(
        _report(
            created_at=datetime.datetime(2025, 1, 2, 14, 0, 0, 123456, tzinfo=GST),
            acceptance_datetime=datetime.datetime(2025, 1, 2, 13, 59, tzinfo=GST),
            status=TransactionStatus.RJCT,
            reason_code="AM03",
            settlement_amount=Decimal("10.5"),
            currency="CHF",
        )
    )
    root = _valid(body)
    assert root.findtext(".//p:CreDtTm", namespaces=_N) == "2025-01-02T14:00:00.123456+04:00"
    assert root.findtext(".//p:IntrBkSttlmAmt", namespaces=_N) == "10.5"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(created_at=datetime.datetime(2025, 1, 2, 10, 0)), "created_at must be timezone-aware"),
        (dict(acceptance_datetime=datetime.datetime(2025, 1, 2, 10, 0)), "acceptance_datetime"),
        (dict(currency=None), "give both or neither"),
        (dict(settlement_amount=None), "give both or neither"),
        (dict(settlement_amount=Decimal("1.005")), "more decimals than AED"),
        (dict(settlement_amount=Decimal("-1")), "greater than zero"),
        (dict(status="DONE"), "unknown transaction status"),
        (dict(message_id="M" * 36), "MsgId"),
        (dict(original_end_to_end_id="E" * 36), "OrgnlEndToEndId"),
        (dict(instructed_agent_bic="not-a-bic"), "BICFI"),
        (dict(original_uetr="not-a-uuid"), "OrgnlUETR"),
        (dict(status=TransactionStatus.RJCT, reason_code="TOOLONG"), "Cd"),
        (dict(currency="aed", settlement_amount=Decimal("1")), "Ccy"),
    ],
)
def test_invalid_reports_are_refused(changes, message):
    with pytest.raises(Pacs002Invalid, match=message) as exc:
        build_pacs002(_report(**changes))
    assert exc.value.errors


# --------------------------------------------------------------------------- reader


@pytest.mark.parametrize("code", [c.value for c in ReasonCode])
def test_reader_reads_back_a_rejection(code):
    body = build_pacs002(_report(status=TransactionStatus.RJCT, reason_code=code, reason_text="no"))
    assert parse_pacs002_status(body) == {
        "status": "RJCT",
        "reason_code": code,
        "original_end_to_end_id": "E2E-1",
        "original_uetr": UETR,
    }


def test_reader_reads_back_an_acceptance_without_uetr():
    body = build_pacs002(_report(status=TransactionStatus.ACSC, original_uetr=None))
    result = parse_pacs002_status(body)
    assert result == {"status": "ACSC", "reason_code": None, "original_end_to_end_id": "E2E-1", "original_uetr": None}
    assert result["status"] == TransactionStatus.ACSC


def test_reader_finds_by_namespace_not_prefix_and_inside_an_envelope():
    body = build_pacs002(_report(status=TransactionStatus.RJCT, reason_code="DUPL"))
    doc = etree.fromstring(body)
    prefixed = etree.Element(f"{{{NS}}}Document", nsmap={"ps": NS})
    prefixed.extend(list(doc))
    envelope = etree.Element("{urn:example:envelope}Envelope")
    etree.SubElement(envelope, "{urn:iso:std:iso:20022:tech:xsd:head.001.001.02}AppHdr")
    envelope.append(prefixed)
    text = etree.tostring(envelope)
    assert b"<ps:TxSts>" in text
    assert parse_pacs002_status(text)["reason_code"] == "DUPL"


def test_reader_refuses_other_messages_and_invalid_reports():
    with pytest.raises(XmlRejected, match="not a pacs.002.001.10"):
        parse_pacs002_status(b"<Document xmlns='urn:iso:std:iso:20022:tech:xsd:pacs.002.001.12'/>")
    with pytest.raises(XmlRejected, match="DOCTYPE"):
        parse_pacs002_status(b"<!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>")
    broken = build_pacs002(_report()).replace(b"<TxSts>ACSP</TxSts>", b"<TxSts>ACCEPTED</TxSts>")
    with pytest.raises(Pacs002Invalid, match="TxSts"):
        parse_pacs002_status(broken)
    no_tx = etree.fromstring(build_pacs002(_report()))
    tx = no_tx.find("p:FIToFIPmtStsRpt/p:TxInfAndSts", _N)
    tx.getparent().remove(tx)
    with pytest.raises(Pacs002Invalid, match="one TxInfAndSts"):
        parse_pacs002_status(etree.tostring(no_tx))


def test_report_dataclass_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        _report().status = TransactionStatus.RJCT  # type: ignore[misc]
