"""pacs.008.001.08 reader/writer: third-party and own messages, rule checks, hostile bodies."""

from __future__ import annotations

import datetime
import hashlib
import importlib
import importlib.util
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree

from deltran.iso20022.camt054 import BookingSpec, build_camt054
from deltran.iso20022.pacs008 import (
    ENVELOPE_NS,
    HEAD_NS,
    HEAD_SCHEMA,
    NS,
    SCHEMA,
    FieldError,
    Pacs008Invalid,
    Pacs008Message,
    Pacs008Spec,
    build_pacs008,
    parse_pacs008,
)
from deltran.iso20022.xml_safety import SCHEMA_DIR, XmlRejected, load_schema
from tests.support.hostile_xml import BILLION_LAUGHS, xxe

UTC = datetime.UTC
CREATED = datetime.datetime(2025, 3, 14, 9, 30, tzinfo=UTC)
UETR = "8a562c67-ca16-48ba-b074-65581be6f001"
DEBTOR_IBAN = "AE070331234567890123456"
CREDITOR_IBAN = "GB33BUKB20201555555555"
# PyPI "pacs008", an independent generator of pacs.008 messages. It loads pandas and pyarrow
# (half a second): imported by the tests that generate, not by every test process's collection.
THIRD_PARTY = "pacs008"
THIRD_PARTY_DIR = Path(str(importlib.util.find_spec(THIRD_PARTY).origin)).parent / "templates" / "pacs.008.001.08"


def _generate(rows: list[dict[str, str]]) -> str:
    generator = importlib.import_module(THIRD_PARTY)
    return generator.generate_xml_string(
        rows, "pacs.008.001.08", str(THIRD_PARTY_DIR / "template.xml"), str(THIRD_PARTY_DIR / SCHEMA)
    )


def _spec(**kw) -> Pacs008Spec:
    base = dict(
        end_to_end_id="E2E-1",
        amount=Decimal("100000.00"),
        currency="AED",
        debtor_name="Al Noor Trading LLC",
        debtor_agent_bic="EBILAEAD",
        debtor_iban=DEBTOR_IBAN,
        creditor_name="Ganesh Textiles Pvt Ltd",
        creditor_agent_bic="SBININBB",
        creditor_account="30001234567",
        uetr=UETR,
        remittance_info="Invoice 118",
        settlement_date=datetime.date(2025, 3, 14),
    )
    return Pacs008Spec(**{**base, **kw})


def _body(*specs: Pacs008Spec, **kw) -> bytes:
    kw = {"message_id": "MSG-1", "instructing_agent_bic": "EBILAEAD", "created_at": CREATED, **kw}
    return build_pacs008(list(specs) or [_spec()], **kw)


def _three() -> bytes:
    return _body(
        _spec(),
        _spec(end_to_end_id="E2E-2", uetr="0f6e5d4c-3b2a-4c1d-8e9f-a0b1c2d3e4f5"),
        _spec(end_to_end_id="E2E-3", uetr="5b7a3c1e-2f4d-4e8a-9b6c-1d2e3f4a5b6c"),
    )


def _invalid(body: bytes) -> list[FieldError]:
    with pytest.raises(Pacs008Invalid) as exc:
        parse_pacs008(body)
    errors = exc.value.errors
    assert errors and all(isinstance(e, FieldError) and e.field and e.message for e in errors)
    return errors


def _fields(errors: list[FieldError]) -> set[tuple[str, int | None]]:
    return {(e.field, e.transaction) for e in errors}


def _with_prefixes(body: bytes, prefixes: dict[str, str]) -> bytes:
    """The same message, every element in a prefixed namespace (no default namespace)."""

    def clone(el: etree._Element, parent: etree._Element | None) -> etree._Element:
        ns = etree.QName(el).namespace
        nsmap = {prefixes[ns]: ns}
        new = (
            etree.Element(el.tag, dict(el.attrib), nsmap=nsmap)
            if parent is None
            else etree.SubElement(parent, el.tag, dict(el.attrib), nsmap=nsmap)
        )
        new.text, new.tail = el.text, el.tail
        for child in el:
            clone(child, new)
        return new

    return etree.tostring(clone(etree.fromstring(body), None), xml_declaration=True, encoding="UTF-8")


# --------------------------------------------------------------------------- schema files


def test_schemas_are_the_official_files():
    digests = {name: hashlib.sha256((SCHEMA_DIR / name).read_bytes()).hexdigest() for name in (SCHEMA, HEAD_SCHEMA)}
    assert digests == {
        SCHEMA: "9bb360555d1981be8635aa3ed295abfe8b2d221d316193434114ad722107dcde",
        HEAD_SCHEMA: "60f4b0abf9da2511e9215a1f5ce92838c788bc64315fe39b9f77613c0f9a4470",
    }
    # The third-party generator validates against the very same file.
    assert (THIRD_PARTY_DIR / SCHEMA).read_bytes() == (SCHEMA_DIR / SCHEMA).read_bytes()
    assert load_schema(SCHEMA) is load_schema(SCHEMA)


# --------------------------------------------------------------------------- third-party generator


def _third_party_row(**kw) -> dict[str, str]:
    row = {
        "msg_id": "HSBC-2025-0314-01",
        "creation_date_time": "2025-03-14T10:30:00",
        "nb_of_txs": "2",
        "settlement_method": "CLRG",
        "interbank_settlement_date": "2025-03-17",
        "instg_agt_bic": "HSBCGB2L",
        "instd_agt_bic": "DLTRAEAD",
        "end_to_end_id": "E2E-INV-001",
        "instr_id": "INSTR-001",
        "tx_id": "TX-001",
        "uetr": "f47ac10b-58cc-4372-a567-0e02b2c3d479",
        "interbank_settlement_amount": "25000.00",
        "interbank_settlement_currency": "EUR",
        "charge_bearer": "SHAR",
        "debtor_name": "Acme Corp GmbH",
        "debtor_account_iban": "DE89370400440532013000",
        "debtor_agent_bic": "DEUTDEFF",
        "creditor_agent_bic": "BNPAFRPP",
        "creditor_name": "Widget Industries SA",
        "creditor_account_iban": "FR7630006000011234567890189",
        "remittance_information": "Invoice INV-2026-001",
    }
    return {**row, **kw}


def _third_party_message() -> str:
    rows = [
        _third_party_row(),
        _third_party_row(
            end_to_end_id="E2E-INV-002",
            instr_id="",
            tx_id="",
            uetr="0f6e5d4c-3b2a-4c1d-8e9f-a0b1c2d3e4f5",
            interbank_settlement_amount="1500",
            interbank_settlement_currency="USD",
            charge_bearer="DEBT",
            interbank_settlement_date="2025-03-18",
            remittance_information="",
        ),
    ]
    return _generate(rows)


def test_third_party_message_round_trip():
    msg = parse_pacs008(_third_party_message().encode("utf-8"))
    assert (msg.message_id, msg.number_of_transactions, msg.control_sum, msg.settlement_method) == (
        "HSBC-2025-0314-01",
        2,
        None,
        "CLRG",
    )
    assert msg.created_at == datetime.datetime(2025, 3, 14, 10, 30)  # as written: no offset
    assert msg.app_header_from_bic is None
    first, second = msg.transactions
    assert first == first.__class__(
        index=0,
        end_to_end_id="E2E-INV-001",
        instruction_id="INSTR-001",
        transaction_id="TX-001",
        uetr="f47ac10b-58cc-4372-a567-0e02b2c3d479",
        amount=Decimal("25000.00"),
        currency="EUR",
        settlement_date=datetime.date(2025, 3, 17),
        charge_bearer="SHAR",
        debtor_name="Acme Corp GmbH",
        debtor_iban="DE89370400440532013000",
        debtor_account=None,
        debtor_agent_bic="DEUTDEFF",
        creditor_name="Widget Industries SA",
        creditor_iban="FR7630006000011234567890189",
        creditor_account=None,
        creditor_agent_bic="BNPAFRPP",
        instructing_agent_bic="HSBCGB2L",  # only at group level: the fallback
        remittance_info="Invoice INV-2026-001",
    )
    assert (second.index, second.end_to_end_id, second.instruction_id, second.transaction_id) == (
        1,
        "E2E-INV-002",
        None,
        None,
    )
    assert (second.amount, second.currency, second.charge_bearer, second.remittance_info) == (
        Decimal("1500.00"),
        "USD",
        "DEBT",
        None,
    )
    assert second.settlement_date == datetime.date(2025, 3, 18)  # tx level wins over GrpHdr


def test_third_party_message_in_a_business_application_header():
    envelope = importlib.import_module(f"{THIRD_PARTY}.standards.bah").wrap_in_bah(
        _third_party_message(),
        sender_bic="HSBCGB2L",
        receiver_bic="DLTRAEAD",
        biz_msg_idr="HSBC-2025-0314-01",
        msg_def_idr="pacs.008.001.08",
        creation_dt="2025-03-14T10:30:00Z",
    )
    msg = parse_pacs008(envelope.encode("utf-8"))
    assert msg.app_header_from_bic == "HSBCGB2L"
    assert [t.end_to_end_id for t in msg.transactions] == ["E2E-INV-001", "E2E-INV-002"]


def test_third_party_message_breaking_our_rules():
    rows = [
        _third_party_row(nb_of_txs="3", interbank_settlement_amount="10.001"),
        _third_party_row(end_to_end_id="E2E-2", uetr="", debtor_account_iban="DE89370400440532013001"),
    ]
    body = _generate(rows)
    assert _fields(_invalid(body.encode())) == {
        ("GrpHdr/NbOfTxs", None),
        ("CdtTrfTxInf[0]/IntrBkSttlmAmt", 0),
        ("CdtTrfTxInf[1]/DbtrAcct/Id/IBAN", 1),
    }


# --------------------------------------------------------------------------- our writer


def test_writer_round_trip_one_transaction():
    body = _body()
    assert load_schema(SCHEMA).validate(etree.fromstring(body))
    msg = parse_pacs008(body)
    assert msg == Pacs008Message(
        message_id="MSG-1",
        created_at=CREATED,
        number_of_transactions=1,
        control_sum=Decimal("100000.00"),
        settlement_method="CLRG",
        app_header_from_bic=None,
        transactions=msg.transactions,
    )
    (tx,) = msg.transactions
    assert (tx.index, tx.end_to_end_id, tx.uetr, tx.amount, tx.currency, tx.settlement_date) == (
        0,
        "E2E-1",
        UETR,
        Decimal("100000.00"),
        "AED",
        datetime.date(2025, 3, 14),
    )
    assert (tx.debtor_name, tx.debtor_iban, tx.debtor_account, tx.debtor_agent_bic) == (
        "Al Noor Trading LLC",
        DEBTOR_IBAN,
        None,
        "EBILAEAD",
    )
    assert (tx.creditor_name, tx.creditor_iban, tx.creditor_account, tx.creditor_agent_bic) == (
        "Ganesh Textiles Pvt Ltd",
        None,
        "30001234567",
        "SBININBB",
    )
    assert (tx.instructing_agent_bic, tx.charge_bearer, tx.remittance_info, tx.instruction_id) == (
        "EBILAEAD",
        "SHAR",
        "Invoice 118",
        None,
    )
    # CBPR+: the agents are written per transaction, not in the group header.
    root = etree.fromstring(body)
    assert root.find(f"{{{NS}}}FIToFICstmrCdtTrf/{{{NS}}}GrpHdr/{{{NS}}}InstgAgt") is None
    assert root.findtext(f".//{{{NS}}}CdtTrfTxInf/{{{NS}}}InstdAgt/{{{NS}}}FinInstnId/{{{NS}}}BICFI") == "DLTRAEAD"


def test_writer_round_trip_several_transactions():
    specs = [
        _spec(),
        _spec(
            end_to_end_id="E2E-2",
            amount=Decimal("1500"),
            currency="USD",
            uetr=None,
            instruction_id="I-2",
            debtor_iban=None,
            debtor_account="ACC0001",
            creditor_account=None,
            creditor_iban=CREDITOR_IBAN,
            remittance_info=None,
            charge_bearer="DEBT",
            settlement_date=None,
        ),
        _spec(end_to_end_id="E2E-3", amount=Decimal("7"), currency="JPY", uetr=None),
        _spec(
            end_to_end_id="E2E-4", amount=Decimal("0.125"), currency="KWD", uetr=None, debtor_name="مؤسسة النور للتجارة"
        ),  # non-ASCII survives UTF-8
    ]
    msg = parse_pacs008(_body(*specs, control_sum=False))
    assert msg.number_of_transactions == 4 and msg.control_sum is None
    a, b, c, d = msg.transactions
    assert [t.index for t in msg.transactions] == [0, 1, 2, 3]
    assert [t.end_to_end_id for t in msg.transactions] == ["E2E-1", "E2E-2", "E2E-3", "E2E-4"]
    assert [(t.amount, t.currency) for t in msg.transactions] == [
        (Decimal("100000.00"), "AED"),
        (Decimal("1500.00"), "USD"),
        (Decimal("7"), "JPY"),
        (Decimal("0.125"), "KWD"),
    ]
    assert str(b.amount) == "1500.00"  # always the currency's minor units
    assert (b.debtor_iban, b.debtor_account, b.creditor_iban, b.creditor_account) == (
        None,
        "ACC0001",
        CREDITOR_IBAN,
        None,
    )
    assert (b.instruction_id, b.remittance_info, b.charge_bearer) == ("I-2", None, "DEBT")
    assert b.settlement_date == datetime.datetime.now(UTC).date()  # default: today
    # Generated UETRs: distinct lower-case v4.
    uetrs = {t.uetr for t in (b, c, d)}
    assert len(uetrs) == 3 and all(uuid.UUID(u).version == 4 and u == u.lower() for u in uetrs)
    assert d.debtor_name == "مؤسسة النور للتجارة"
    assert a.uetr == UETR


def test_control_sum_adds_all_currencies():
    body = _body(_spec(), _spec(end_to_end_id="E2E-2", amount=Decimal("0.5"), currency="USD", uetr=None))
    assert parse_pacs008(body).control_sum == Decimal("100000.50")


def test_remittance_lines_are_joined_and_truncated():
    body = _body(_spec(remittance_info="Invoice 118")).replace(
        b"<Ustrd>Invoice 118</Ustrd>",
        b"<Ustrd>Invoice 118</Ustrd><Ustrd>  </Ustrd>" + b"<Ustrd>" + b"x" * 140 + b"</Ustrd>",
    )
    info = parse_pacs008(body).transactions[0].remittance_info
    assert info == ("Invoice 118 " + "x" * 140)[:140] and len(info) == 140


def test_writer_refuses_to_emit_schema_invalid_xml():
    with pytest.raises(Pacs008Invalid) as exc:
        _body(_spec(end_to_end_id="X" * 36))
    assert _fields(exc.value.errors) == {("CdtTrfTxInf[0]/PmtId/EndToEndId", 0)}
    with pytest.raises(ValueError):
        build_pacs008([], message_id="M", instructing_agent_bic="EBILAEAD")


def test_writer_never_uses_exponent_notation():
    body = _body(_spec(amount=Decimal("1E+3")))
    assert b">1000<" in body and parse_pacs008(body).transactions[0].amount == Decimal(1000)


# --------------------------------------------------------------------------- envelopes and prefixes


def test_app_header_envelope():
    body = _body(with_app_header=True)
    root = etree.fromstring(body)
    assert root.tag == f"{{{ENVELOPE_NS}}}Envelope"
    header = root.find(f"{{{HEAD_NS}}}AppHdr")
    assert load_schema(HEAD_SCHEMA).validate(etree.ElementTree(header))
    assert header.findtext(f"{{{HEAD_NS}}}MsgDefIdr") == "pacs.008.001.08"
    assert header.findtext(f"{{{HEAD_NS}}}BizMsgIdr") == "MSG-1"
    assert (
        header.findtext(f"{{{HEAD_NS}}}To/{{{HEAD_NS}}}FIId/{{{HEAD_NS}}}FinInstnId/{{{HEAD_NS}}}BICFI") == "DLTRAEAD"
    )
    msg = parse_pacs008(body)
    assert msg.app_header_from_bic == "EBILAEAD"
    assert msg.transactions == parse_pacs008(_body()).transactions


@pytest.mark.parametrize("with_app_header", [False, True], ids=["bare", "wrapped"])
def test_any_prefix(with_app_header):
    body = _body(_spec(), _spec(end_to_end_id="E2E-2", uetr=None), with_app_header=with_app_header)
    prefixed = _with_prefixes(body, {NS: "pacs", HEAD_NS: "head", ENVELOPE_NS: "env"})
    assert b"<pacs:Document" in prefixed and b"xmlns=" not in prefixed
    msg = parse_pacs008(prefixed)
    assert [t.end_to_end_id for t in msg.transactions] == ["E2E-1", "E2E-2"]
    assert msg.app_header_from_bic == ("EBILAEAD" if with_app_header else None)


def test_invalid_app_header():
    body = _body(with_app_header=True)
    errors = _invalid(body.replace(b"<BizMsgIdr>MSG-1</BizMsgIdr>", b""))
    assert [(e.field, e.transaction) for e in errors] == [("AppHdr/MsgDefIdr", None)]
    assert "Expected is ( BizMsgIdr )" in errors[0].message and errors[0].message.startswith("line ")
    errors = _invalid(body.replace(b"<MsgDefIdr>pacs.008.001.08<", b"<MsgDefIdr>camt.054.001.08<"))
    assert _fields(errors) == {("AppHdr/MsgDefIdr", None)}


def test_unsupported_or_repeated_app_header():
    body = _body(with_app_header=True)
    with pytest.raises(XmlRejected, match="head.001.001.01"):
        parse_pacs008(body.replace(HEAD_NS.encode(), b"urn:iso:std:iso:20022:tech:xsd:head.001.001.01"))
    header = etree.tostring(etree.fromstring(body).find(f"{{{HEAD_NS}}}AppHdr"))
    with pytest.raises(XmlRejected, match="found 2 AppHdr"):
        parse_pacs008(body.replace(b"<Document", header + b"<Document"))


def test_two_documents_are_rejected():
    doc = _body().split(b"?>", 1)[1]
    with pytest.raises(XmlRejected, match="found 2"):
        parse_pacs008(b"<Envelope>" + doc + doc + b"</Envelope>")


def test_schema_errors_in_an_envelope_carry_the_original_line_numbers():
    body = _body(with_app_header=True).replace(b"<ChrgBr>SHAR</ChrgBr>", b"")
    line = next(i for i, text in enumerate(body.splitlines(), 1) if b"<InstgAgt>" in text)
    (error,) = _invalid(body)
    assert (error.field, error.transaction) == ("CdtTrfTxInf[0]/InstgAgt", 0)
    assert error.message.startswith(f"line {line}: Element 'InstgAgt': This element is not expected")
    assert "urn:iso" not in error.message


# --------------------------------------------------------------------------- rules the XSD cannot check


def test_number_of_transactions_mismatch():
    errors = _invalid(_three().replace(b"<NbOfTxs>3<", b"<NbOfTxs>2<"))
    assert [(e.field, e.transaction) for e in errors] == [("GrpHdr/NbOfTxs", None)]
    assert "3 CdtTrfTxInf" in errors[0].message


def test_notprovided_end_to_end_id_is_refused():
    errors = _invalid(_body(_spec(end_to_end_id="NOTPROVIDED")))
    assert _fields(errors) == {("CdtTrfTxInf[0]/PmtId/EndToEndId", 0)}


def test_control_sum_mismatch():
    errors = _invalid(_three().replace(b"<CtrlSum>300000.00<", b"<CtrlSum>300000.01<"))
    assert _fields(errors) == {("GrpHdr/CtrlSum", None)}
    assert "300000.00" in errors[0].message
    # The same value written differently is equal.
    assert parse_pacs008(_three().replace(b"<CtrlSum>300000.00<", b"<CtrlSum>300000<")).control_sum == 300000


def test_total_interbank_settlement_amount_mismatch():
    total = b'<TtlIntrBkSttlmAmt Ccy="AED">%s</TtlIntrBkSttlmAmt><SttlmInf>'
    body = _three().replace(b"<SttlmInf>", total % b"300000.00", 1)
    assert parse_pacs008(body).number_of_transactions == 3
    assert _fields(_invalid(body.replace(b">300000.00</Ttl", b">1.00</Ttl"))) == {("GrpHdr/TtlIntrBkSttlmAmt", None)}


@pytest.mark.parametrize("amount, currency", [("100.001", "AED"), ("7.5", "JPY"), ("0.0001", "KWD")])
def test_too_many_decimals(amount, currency):
    (error,) = _invalid(_body(_spec(amount=Decimal(amount), currency=currency)))
    assert (error.field, error.transaction) == ("CdtTrfTxInf[0]/IntrBkSttlmAmt", 0)
    assert "decimals" in error.message and currency in error.message


def test_trailing_zeros_are_not_extra_decimals():
    tx = parse_pacs008(_body(_spec(amount=Decimal("7.000"), currency="JPY"))).transactions[0]
    assert tx.amount == Decimal(7) and str(tx.amount) == "7"


@pytest.mark.parametrize("currency", ["CHF", "XYZ"])
def test_unknown_currency(currency):
    (error,) = _invalid(_body(_spec(currency=currency)))
    assert (error.field, error.transaction) == ("CdtTrfTxInf[0]/IntrBkSttlmAmt/@Ccy", 0)
    assert currency in error.message and "not supported" in error.message


def test_malformed_currency_is_a_schema_error():
    (error,) = _invalid(_body().replace(b'Ccy="AED"', b'Ccy="aed"'))
    assert (error.field, error.transaction) == ("CdtTrfTxInf[0]/IntrBkSttlmAmt/@Ccy", 0)


@pytest.mark.parametrize("amount", ["0", "0.00", "-1.00", "-0.01"])
def test_zero_or_negative_amount(amount):
    body = _body().replace(b">100000.00</IntrBkSttlmAmt>", f">{amount}</IntrBkSttlmAmt>".encode())
    body = body.replace(b"<CtrlSum>100000.00</CtrlSum>", f"<CtrlSum>{amount}</CtrlSum>".encode())
    # Zero passes the XSD (minInclusive 0) and fails our rule; negatives fail the XSD.
    assert ("CdtTrfTxInf[0]/IntrBkSttlmAmt", 0) in _fields(_invalid(body))


@pytest.mark.parametrize(
    "spec, field",
    [
        (_spec(debtor_iban="AE070331234567890123457"), "CdtTrfTxInf[0]/DbtrAcct/Id/IBAN"),  # check digits
        (_spec(creditor_account=None, creditor_iban="GB00BUKB20201555555555"), "CdtTrfTxInf[0]/CdtrAcct/Id/IBAN"),
        (_spec(creditor_account="30-001"), "CdtTrfTxInf[0]/CdtrAcct/Id/Othr/Id"),
        (_spec(debtor_iban=None), "CdtTrfTxInf[0]/DbtrAcct"),  # no account at all
    ],
    ids=["iban-check-digits", "creditor-iban", "other-id", "missing"],
)
def test_invalid_account(spec, field):
    (error,) = _invalid(_body(spec))
    assert (error.field, error.transaction) == (field, 0)
    assert "account" in error.message or "IBAN" in error.message


def test_iban_pattern_is_a_schema_error():
    errors = _invalid(_body().replace(DEBTOR_IBAN.encode(), b"ae07 0331"))
    assert _fields(errors) == {("CdtTrfTxInf[0]/DbtrAcct/Id/IBAN", 0)}


@pytest.mark.parametrize(
    "body, field",
    [
        (_body().replace(b"<BICFI>SBININBB<", b"<BICFI>SBINXXBB<"), "CdtTrfTxInf[0]/CdtrAgt/FinInstnId/BICFI"),
        (_body().replace(b"<BICFI>SBININBB<", b"<BICFI>sbininbb<"), "CdtTrfTxInf[0]/CdtrAgt/FinInstnId/BICFI"),
        (_body(instructing_agent_bic="EBILQQAD"), "CdtTrfTxInf[0]/InstgAgt/FinInstnId/BICFI"),
        (_body(_spec(debtor_agent_bic="EBILZZAD")), "CdtTrfTxInf[0]/DbtrAgt/FinInstnId/BICFI"),
    ],
    ids=["unknown-country", "schema-pattern", "instructing-agent", "debtor-agent"],
)
def test_invalid_bic(body, field):
    (error,) = _invalid(body)
    assert (error.field, error.transaction) == (field, 0)


def test_invalid_group_level_instructing_agent():
    body = (
        _body()
        .replace(b"<SttlmInf>", b"<SttlmInf>", 1)
        .replace(b"</SttlmInf>", b"</SttlmInf><InstgAgt><FinInstnId><BICFI>EBILQQAD</BICFI></FinInstnId></InstgAgt>", 1)
    )
    (error,) = _invalid(body)
    assert (error.field, error.transaction) == ("GrpHdr/InstgAgt/FinInstnId/BICFI", None)
    assert "EBILQQAD" in error.message


def test_agent_without_bic():
    body = _body().replace(b"<BICFI>SBININBB</BICFI>", b"<Nm>State Bank of India</Nm>")
    (error,) = _invalid(body)
    assert (error.field, error.transaction) == ("CdtTrfTxInf[0]/CdtrAgt/FinInstnId/BICFI", 0)


def test_end_to_end_id_longer_than_35():
    (error,) = _invalid(_body().replace(b"<EndToEndId>E2E-1<", b"<EndToEndId>" + b"E" * 36 + b"<"))
    assert (error.field, error.transaction) == ("CdtTrfTxInf[0]/PmtId/EndToEndId", 0)
    assert "length" in error.message


def test_blank_or_missing_end_to_end_id():
    (error,) = _invalid(_body().replace(b"<EndToEndId>E2E-1<", b"<EndToEndId>   <"))
    assert (error.field, error.transaction) == ("CdtTrfTxInf[0]/PmtId/EndToEndId", 0)
    (error,) = _invalid(_body().replace(b"<EndToEndId>E2E-1</EndToEndId>", b""))
    assert (error.field, error.transaction) == ("CdtTrfTxInf[0]/PmtId/UETR", 0)  # "expected EndToEndId"
    assert "EndToEndId" in error.message


@pytest.mark.parametrize(
    "uetr",
    [UETR.upper(), "8a562c67-ca16-18ba-b074-65581be6f001", "8a562c67-ca16-48ba-7074-65581be6f001", "not-a-uuid"],
    ids=["uppercase", "version-1", "bad-variant", "garbage"],
)
def test_invalid_uetr(uetr):
    (error,) = _invalid(_body().replace(UETR.encode(), uetr.encode()))
    assert (error.field, error.transaction) == ("CdtTrfTxInf[0]/PmtId/UETR", 0)


def test_duplicate_identifiers_in_one_message():
    body = _body(_spec(), _spec(), _spec(end_to_end_id="E2E-3", uetr=None))
    assert _fields(_invalid(body)) == {("CdtTrfTxInf[1]/PmtId/EndToEndId", 1), ("CdtTrfTxInf[1]/PmtId/UETR", 1)}


@pytest.mark.parametrize("nm", [b"", b"<Nm>   </Nm>"], ids=["missing", "blank"])
def test_missing_debtor_name(nm):
    errors = _invalid(_body().replace(b"<Nm>Al Noor Trading LLC</Nm>", nm))
    assert [(e.field, e.transaction) for e in errors] == [("CdtTrfTxInf[0]/Dbtr/Nm", 0)]
    assert "debtor name" in errors[0].message


def test_errors_of_several_transactions_carry_their_index():
    body = _body(
        _spec(debtor_iban="AE070331234567890123457"),  # 0: rule: bad IBAN
        _spec(end_to_end_id="E2E-2", uetr=None),  # 1: fine
        _spec(end_to_end_id="E2E-3", uetr=None, amount=Decimal("1.001"), creditor_name="x"),  # 2: decimals
    ).replace(b"<Nm>x</Nm>", b"")  # 2: no creditor name
    body = body.replace(b"<NbOfTxs>3<", b"<NbOfTxs>4<")
    assert _fields(_invalid(body)) == {
        ("CdtTrfTxInf[0]/DbtrAcct/Id/IBAN", 0),
        ("CdtTrfTxInf[2]/IntrBkSttlmAmt", 2),
        ("CdtTrfTxInf[2]/Cdtr/Nm", 2),
        ("GrpHdr/NbOfTxs", None),
    }


def test_schema_errors_of_several_transactions_carry_their_index():
    # All on one line: the index must come from the element's position, not its line.
    body = b"".join(line.strip() for line in _three().splitlines())
    body = body.replace(b'"?><', b'"?>\n<', 1)
    second_uetr = b"0f6e5d4c-3b2a-4c1d-8e9f-a0b1c2d3e4f5"
    body = body.replace(second_uetr, second_uetr.upper())
    parts = body.rsplit(b">100000.00</IntrBkSttlmAmt>", 1)
    body = b">-5</IntrBkSttlmAmt>".join(parts)
    errors = _invalid(body)
    assert _fields(errors) == {("CdtTrfTxInf[1]/PmtId/UETR", 1), ("CdtTrfTxInf[2]/IntrBkSttlmAmt", 2)}


def test_group_header_schema_error_is_message_level():
    (error,) = _invalid(_body().replace(b"<NbOfTxs>1<", b"<NbOfTxs>one<"))
    assert (error.field, error.transaction) == ("GrpHdr/NbOfTxs", None)


def test_errors_are_capped():
    specs = [_spec(end_to_end_id=f"E-{i}", uetr=None, amount=Decimal("1.001")) for i in range(1005)]
    errors = _invalid(_body(*specs))
    # 1,005 amount errors and the message's own: more than 1,000 transactions.
    assert len(errors) == 1001 and errors[-1].message == "... and 6 more errors"
    assert errors[999].transaction == 999


def test_more_transactions_than_one_message_may_carry_are_refused():
    ok = parse_pacs008(_body(*[_spec(end_to_end_id=f"E-{i}", uetr=None) for i in range(1000)]))
    assert len(ok.transactions) == 1000
    errors = _invalid(_body(*[_spec(end_to_end_id=f"E-{i}", uetr=None) for i in range(1001)]))
    assert [(e.field, e.transaction) for e in errors] == [("GrpHdr/NbOfTxs", None)]
    assert "at most 1000" in errors[0].message


def test_app_header_sender_bic_of_no_country_is_refused():
    body = _body(with_app_header=True)
    first = body.index(b"<BICFI>EBILAEAD</BICFI>")
    assert first < body.index(b"<Document")  # the AppHdr's Fr comes first
    body = body[:first] + b"<BICFI>EBILQQAD</BICFI>" + body[first + len(b"<BICFI>EBILAEAD</BICFI>") :]
    errors = _invalid(body)
    assert [(e.field, e.transaction) for e in errors] == [("AppHdr/Fr/FIId/FinInstnId/BICFI", None)]


# --------------------------------------------------------------------------- not a pacs.008.001.08


def test_wrong_message_type():
    camt = build_camt054([BookingSpec("E2E-1", Decimal("1"), "AED", "BK-1")], "MSG-1")
    with pytest.raises(XmlRejected, match="not a pacs.008.001.08.*camt.054.001.08"):
        parse_pacs008(camt)
    with pytest.raises(XmlRejected, match="root element hello"):
        parse_pacs008(b"<hello/>")


def test_wrong_namespace_version():
    with pytest.raises(XmlRejected, match="pacs.008.001.09"):
        parse_pacs008(_body().replace(b"pacs.008.001.08", b"pacs.008.001.09"))


# --------------------------------------------------------------------------- hostile and broken bodies

XXE = xxe(NS, "FIToFICstmrCdtTrf")


@pytest.mark.parametrize(
    "body",
    [
        XXE.encode(),
        BILLION_LAUGHS.encode(),
        XXE.replace('<?xml version="1.0"?>', '<?xml version="1.0" encoding="UTF-16"?>').encode("utf-16"),
        XXE.replace('<?xml version="1.0"?>', '<?xml version="1.0" encoding="UTF-32"?>').encode("utf-32"),
        XXE.replace('<?xml version="1.0"?>', '<?xml version="1.0" encoding="ISO-8859-1"?>').encode("latin-1"),
        _body().replace(b"?>\n", b'?>\n<!DOCTYPE Document SYSTEM "http://example.com/x.dtd">\n', 1),
    ],
    ids=["xxe", "billion-laughs", "utf16-xxe", "utf32-xxe", "latin1-xxe", "external-dtd"],
)
def test_doctype_is_rejected(body):
    with pytest.raises(XmlRejected) as exc:
        parse_pacs008(body)
    assert exc.value.reason == "DOCTYPE declarations are not allowed"


def _declared(encoding: str) -> bytes:
    body = _body()
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n')
    return body.replace(b'encoding="UTF-8"', f'encoding="{encoding}"'.encode(), 1)


def test_non_utf8_encodings_are_rejected():
    latin1 = _declared("ISO-8859-1").decode().replace("Al Noor", "Café Noor").encode("latin-1")
    with pytest.raises(XmlRejected, match="'ISO-8859-1'; ISO 20022 messages must be UTF-8"):
        parse_pacs008(latin1)
    with pytest.raises(XmlRejected, match="ISO-8859-1"):  # even when every byte is ASCII
        parse_pacs008(_declared("ISO-8859-1"))
    utf16 = _declared("UTF-16").decode().encode("utf-16")
    with pytest.raises(XmlRejected, match="UTF-16 or UTF-32"):
        parse_pacs008(utf16)
    with pytest.raises(XmlRejected, match="UTF-16 or UTF-32"):  # no BOM, no declaration
        parse_pacs008(_body().split(b"?>", 1)[1].decode().encode("utf-16-le"))
    # Declared (or defaulted to) UTF-8 but not UTF-8 bytes.
    not_utf8 = _body().replace(b"Al Noor", "Café Noor".encode("latin-1"))
    with pytest.raises(XmlRejected, match="not valid UTF-8 .*offset"):
        parse_pacs008(not_utf8)
    with pytest.raises(XmlRejected, match="not valid UTF-8"):
        parse_pacs008(not_utf8.split(b"?>", 1)[1])


@pytest.mark.parametrize("encoding", ["UTF-8", "utf-8", "UTF8"])
def test_utf8_is_accepted_however_spelled(encoding):
    body = _declared(encoding).replace(b"Al Noor", "Café Noor".encode())
    assert parse_pacs008(body).transactions[0].debtor_name == "Café Noor Trading LLC"
    assert parse_pacs008(b"\xef\xbb\xbf" + body).transactions[0].end_to_end_id == "E2E-1"  # with a BOM


@pytest.mark.parametrize("body", [b"", b"  ", b"<Document", b"not xml", b"<a></b>", b"<a/><b/>", b"\xff\xfe\x00"])
def test_broken_xml_is_rejected(body):
    with pytest.raises(XmlRejected) as exc:
        parse_pacs008(body)
    assert exc.value.reason


def test_truncated_message_is_rejected():
    body = _body()
    with pytest.raises(XmlRejected, match="malformed XML"):
        parse_pacs008(body[: len(body) // 2])


def test_oversized_body_is_rejected():
    body = _body()
    with pytest.raises(XmlRejected, match="limit"):
        parse_pacs008(body, max_bytes=len(body) - 1)
    assert parse_pacs008(body, max_bytes=len(body)).message_id == "MSG-1"


def _mutations(body: bytes):
    """Every element removed, emptied or given odd text, once each; and truncations."""
    root = etree.fromstring(body)
    count = sum(1 for _ in root.iter())
    for i in range(1, count):
        for change in ("remove", "empty", "junk", "long", "negative"):
            tree = etree.fromstring(body)
            el = list(tree.iter())[i]
            if change == "remove":
                el.getparent().remove(el)
            elif len(el) == 0:
                el.text = {"empty": "", "junk": "x\u00e9<>&", "long": "9" * 200, "negative": "-1"}[change]
            else:
                continue
            yield etree.tostring(tree, xml_declaration=True, encoding="UTF-8")
    for cut in range(0, len(body), 97):
        yield body[:cut]


@pytest.mark.parametrize("with_app_header", [False, True], ids=["bare", "wrapped"])
def test_never_another_exception(with_app_header):
    body = _body(_spec(), _spec(end_to_end_id="E2E-2", uetr=None), with_app_header=with_app_header)
    outcomes = {"ok": 0, "rejected": 0, "invalid": 0}
    for mutated in _mutations(body):
        try:
            parse_pacs008(mutated)
            outcomes["ok"] += 1
        except XmlRejected as exc:
            assert exc.reason
            outcomes["rejected"] += 1
        except Pacs008Invalid as exc:
            assert exc.errors and all(e.field and e.message for e in exc.errors)
            outcomes["invalid"] += 1
    assert outcomes["invalid"] > 100 and outcomes["rejected"] > 10 and outcomes["ok"] > 0


def test_high_instruction_priority_marks_the_payment_urgent():
    message = parse_pacs008(
        _body(_spec(urgent=True), _spec(end_to_end_id="E2E-2", uetr="0f6e5d4c-3b2a-4c1d-8e9f-a0b1c2d3e4f5"))
    )
    assert [t.urgent for t in message.transactions] == [True, False]
