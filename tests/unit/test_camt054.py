"""camt.054.001.08 reader/writer and the hardened XML parsing under it."""

from __future__ import annotations

import datetime
import hashlib
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree

from deltran.iso20022.camt054 import (
    NS,
    SCHEMA,
    BookingSpec,
    Camt054Invalid,
    build_camt054,
    build_camt054_multi,
    parse_camt054,
)
from deltran.iso20022.xml_safety import SCHEMA_DIR, XmlRejected, load_schema, parse_xml
from tests.support.hostile_xml import BILLION_LAUGHS, xxe

FIXTURES = Path(__file__).with_name("fixtures")
UTC = datetime.UTC
UETR = "8a562c67-ca16-48ba-b074-65581be6f001"


def _booking(**kw) -> BookingSpec:
    base = dict(end_to_end_id="E2E-1", amount=Decimal("100.50"), currency="AED", entry_reference="BK-1")
    return BookingSpec(**{**base, **kw})


def _valid_body() -> bytes:
    return build_camt054([_booking()], "MSG-1", datetime.datetime(2025, 1, 2, 10, 0, tzinfo=UTC))


# --------------------------------------------------------------------------- schema file


def test_schema_is_the_official_file():
    digest = hashlib.sha256((SCHEMA_DIR / SCHEMA).read_bytes()).hexdigest()
    assert digest == "2b392a1f7e70e70902fd0d803ff85989613bd1cae351663240b0bb9243be2c28"
    assert load_schema(SCHEMA) is load_schema(SCHEMA)  # cached


# --------------------------------------------------------------------------- writer + round trip


def test_round_trip_and_validates_against_xsd():
    bookings = [
        _booking(uetr=UETR.upper(), bank_reference="TX-1", booking_date=datetime.date(2025, 1, 2)),
        _booking(
            end_to_end_id=None,
            amount=Decimal("7"),
            currency="USD",
            entry_reference="BK-2",
            status="PDNG",
            credit_debit="DBIT",
            reversal=True,
            account="GB33BUKB20201555555555",
        ),
        _booking(end_to_end_id="E2E-3", amount=Decimal("0.001"), currency="KWD", entry_reference="BK-3"),
    ]
    created = datetime.datetime(2025, 1, 2, 10, 0, tzinfo=UTC)
    body = build_camt054(bookings, "MSG-1", created, notification_id="NTF")

    assert load_schema(SCHEMA).validate(etree.fromstring(body))
    msg = parse_camt054(body)
    assert msg.message_id == "MSG-1" and msg.created_at == created
    # One Ntfctn per account, in first-seen order: the KWD booking joins the first account,
    # and entries come back in document order.
    a, c, b = msg.entries
    assert [e.notification_id for e in msg.entries] == ["NTF-1", "NTF-1", "NTF-2"]
    assert [e.account for e in msg.entries] == [
        "AE070331234567890123456",
        "AE070331234567890123456",
        "GB33BUKB20201555555555",
    ]
    assert (a.entry_reference, a.amount, a.currency, a.end_to_end_id, a.uetr, a.bank_reference) == (
        "BK-1",
        Decimal("100.50"),
        "AED",
        "E2E-1",
        UETR,
        "TX-1",
    )
    assert a.booking_date == a.value_date == datetime.date(2025, 1, 2)
    assert (a.status, a.credit_debit, a.reversal, a.tx_index) == ("BOOK", "CRDT", False, 0)
    assert (b.status, b.credit_debit, b.reversal, b.end_to_end_id, b.booking_date) == ("PDNG", "DBIT", True, None, None)
    assert b.bank_reference == "BK-2"  # no TxDtls/Refs/AcctSvcrRef: falls back to Ntry/AcctSvcrRef
    assert c.amount == Decimal("0.001") and isinstance(c.amount, Decimal)


def test_single_account_uses_the_notification_id_as_is():
    body = build_camt054([_booking(), _booking(entry_reference="BK-2")], "MSG-9")
    msg = parse_camt054(body)
    assert {e.notification_id for e in msg.entries} == {"MSG-9"}
    assert msg.created_at.tzinfo is not None  # default: now, in UTC


def test_multi_txdtls_writer():
    group = [_booking(end_to_end_id=f"E2E-{i}", amount=Decimal(i)) for i in (1, 2, 3)]
    body = build_camt054_multi([group, [_booking(entry_reference="BK-2")]], "MSG-2")
    root = etree.fromstring(body)
    assert root.findtext(f"{{{NS}}}BkToCstmrDbtCdtNtfctn/{{{NS}}}Ntfctn/{{{NS}}}Ntry/{{{NS}}}Amt") == "6"
    entries = parse_camt054(body).entries
    assert [(e.entry_reference, e.tx_index, e.amount) for e in entries] == [
        ("BK-1", 0, Decimal(1)),
        ("BK-1", 1, Decimal(2)),
        ("BK-1", 2, Decimal(3)),
        ("BK-2", 0, Decimal("100.50")),
    ]
    with pytest.raises(ValueError):
        build_camt054_multi([[_booking(), _booking(currency="USD")]], "MSG-3")


def test_writer_refuses_to_emit_schema_invalid_xml():
    with pytest.raises(Camt054Invalid) as exc:
        build_camt054([_booking(entry_reference="X" * 36)], "MSG-1")
    assert any("AcctSvcrRef" in e for e in exc.value.errors)


def test_writer_never_uses_exponent_notation():
    body = build_camt054([_booking(amount=Decimal("1E+3"))], "MSG-1")
    assert parse_camt054(body).entries[0].amount == Decimal(1000)


# --------------------------------------------------------------------------- hand-written messages


def test_several_notifications_entries_and_transactions():
    msg = parse_camt054((FIXTURES / "camt054_multi.xml").read_bytes())
    assert msg.message_id == "ENBD-20250314-0001"
    assert msg.created_at == datetime.datetime(
        2025, 3, 14, 9, 30, 0, 250000, tzinfo=datetime.timezone(datetime.timedelta(hours=4))
    )
    got = [
        (e.notification_id, e.account, e.entry_reference, e.tx_index, e.amount, e.currency, e.credit_debit)
        for e in msg.entries
    ]
    assert got == [
        ("NTF-A", "AE070331234567890123456", "BATCH-001", 0, Decimal("1000.50"), "AED", "CRDT"),
        ("NTF-A", "AE070331234567890123456", "BATCH-001", 1, Decimal("500.2"), "AED", "CRDT"),  # AmtDtls/TxAmt
        ("NTF-A", "AE070331234567890123456", "BATCH-001", 2, Decimal("0.05"), "AED", "CRDT"),  # 2nd NtryDtls
        ("NTF-A", "AE070331234567890123456", "NREF-2", 0, Decimal("250"), "USD", "CRDT"),  # no TxDtls
        ("NTF-B", "DELTRAN-NOSTRO-USD", "NTF-B:0", 0, Decimal("99.99"), "USD", "DBIT"),  # Ntry/Amt fallback
        ("NTF-B", "DELTRAN-NOSTRO-USD", "NOSTRO-77", 0, Decimal("20"), "USD", "CRDT"),
        ("NTF-B", "DELTRAN-NOSTRO-USD", "NOSTRO-77", 1, Decimal("10"), "USD", "CRDT"),
    ]
    first, second, third, pending, reversal, prtry, _ = msg.entries
    assert (first.end_to_end_id, first.uetr, first.instruction_id, first.transaction_id, first.bank_reference) == (
        "E2E-1",
        "5b7a3c1e-2f4d-4e8a-9b6c-1d2e3f4a5b6c",
        "INSTR-1",
        "TXID-1",
        "TX-001",
    )
    assert (first.booking_date, first.value_date) == (datetime.date(2025, 3, 14), datetime.date(2025, 3, 15))
    assert second.bank_reference == "BATCH-001" and second.end_to_end_id == "E2E-2"
    assert third.end_to_end_id is None  # NOTPROVIDED
    assert (pending.status, pending.booking_date, pending.value_date) == ("PDNG", datetime.date(2025, 3, 14), None)
    assert pending.bank_reference is None
    assert (reversal.status, reversal.reversal, reversal.end_to_end_id) == ("INFO", True, "E2E-9")
    assert (prtry.status, prtry.reversal) == ("SETTLED-EOD", False)


def test_apphdr_envelope():
    msg = parse_camt054((FIXTURES / "camt054_apphdr.xml").read_bytes())
    assert msg.message_id == "ENBD-20250314-0002"
    (entry,) = msg.entries
    assert (entry.entry_reference, entry.end_to_end_id, entry.amount, entry.uetr) == (
        "ENBD-BK-42",
        "DT-E2E-42",
        Decimal("367.25"),
        "0f6e5d4c-3b2a-4c1d-8e9f-a0b1c2d3e4f5",
    )


@pytest.mark.parametrize("prefix", ["ns0:", "camt:"])
def test_any_prefix(prefix):
    body = _valid_body().decode()
    body = (
        body.replace('xmlns="', f'xmlns:{prefix[:-1]}="')
        .replace("<", f"<{prefix}")
        .replace(f"<{prefix}/", f"</{prefix}")
        .replace(f"<{prefix}?", "<?")
    )
    assert f"<{prefix}Document" in body
    assert parse_camt054(body.encode()).entries[0].entry_reference == "BK-1"


def test_batch_entry_without_transaction_amounts_is_refused():
    body = (FIXTURES / "camt054_multi.xml").read_bytes()
    body = body.replace(b'<n:Amt Ccy="USD">20</n:Amt>', b"").replace(b'<n:Amt Ccy="USD">10</n:Amt>', b"")
    with pytest.raises(Camt054Invalid, match="no amount"):
        parse_camt054(body)


def _nostro_77(first: bytes, second: bytes) -> bytes:
    """The fixture with NOSTRO-77's two TxDtls (20 CRDT, 10 CRDT under a 30 CRDT entry) replaced."""
    body = (FIXTURES / "camt054_multi.xml").read_bytes()
    tx = b'<n:Amt Ccy="USD">%s</n:Amt>\n            <n:CdtDbtInd>CRDT</n:CdtDbtInd>'
    for old, new in ((b"20", first), (b"10", second)):
        assert tx % old in body
        body = body.replace(tx % old, new)
    return body


@pytest.mark.parametrize(
    ("first", "second", "why"),
    [
        # 100 + 100 under a 30 entry would book 200 of fiat the bank never booked.
        (
            b'<n:Amt Ccy="USD">20</n:Amt><n:CdtDbtInd>CRDT</n:CdtDbtInd>',
            b'<n:Amt Ccy="USD">20</n:Amt><n:CdtDbtInd>CRDT</n:CdtDbtInd>',
            "add up to 40 USD, the entry books 30",
        ),
        (
            b'<n:Amt Ccy="USD">20</n:Amt><n:CdtDbtInd>CRDT</n:CdtDbtInd>',
            b'<n:Amt Ccy="USD">5</n:Amt><n:CdtDbtInd>CRDT</n:CdtDbtInd>',
            "add up to 25 USD",
        ),
        # A debit entry whose details call themselves credits must not read as a credit.
        (
            b'<n:Amt Ccy="USD">20</n:Amt><n:CdtDbtInd>CRDT</n:CdtDbtInd>',
            b'<n:Amt Ccy="USD">10</n:Amt><n:CdtDbtInd>DBIT</n:CdtDbtInd>',
            r"TxDtls\[1\] is DBIT, the entry is CRDT",
        ),
        (
            b'<n:Amt Ccy="EUR">20</n:Amt><n:CdtDbtInd>CRDT</n:CdtDbtInd>',
            b'<n:Amt Ccy="USD">10</n:Amt><n:CdtDbtInd>CRDT</n:CdtDbtInd>',
            r"TxDtls\[0\] is EUR, the entry is USD",
        ),
    ],
    ids=["parts-exceed-entry", "parts-short-of-entry", "debit-detail-under-credit", "other-currency"],
)
def test_details_that_disagree_with_their_entry_refuse_the_message(first, second, why):
    with pytest.raises(Camt054Invalid, match=why) as refused:
        parse_camt054(_nostro_77(first, second))
    assert "Ntry NOSTRO-77" in str(refused.value)


def test_debit_entry_with_credit_details_is_refused():
    body = _nostro_77(
        b'<n:Amt Ccy="USD">20</n:Amt><n:CdtDbtInd>CRDT</n:CdtDbtInd>',
        b'<n:Amt Ccy="USD">10</n:Amt><n:CdtDbtInd>CRDT</n:CdtDbtInd>',
    )
    body = body.replace(
        b'<n:Amt Ccy="USD">30</n:Amt>\n        <n:CdtDbtInd>CRDT</n:CdtDbtInd>',
        b'<n:Amt Ccy="USD">30</n:Amt>\n        <n:CdtDbtInd>DBIT</n:CdtDbtInd>',
    )
    with pytest.raises(Camt054Invalid, match="TxDtls.0. is CRDT, the entry is DBIT"):
        parse_camt054(body)


# --------------------------------------------------------------------------- hostile and broken bodies

XXE = xxe(NS, "BkToCstmrDbtCdtNtfctn")


@pytest.mark.parametrize(
    "body",
    [
        XXE.encode(),
        BILLION_LAUGHS.encode(),
        # UTF-16 hides "<!DOCTYPE" from a byte scan: the check after parsing must still catch it.
        XXE.replace('<?xml version="1.0"?>', '<?xml version="1.0" encoding="UTF-16"?>').encode("utf-16"),
        # A valid camt.054 with a harmless-looking DOCTYPE is still refused.
        _valid_body().replace(b"?>\n", b'?>\n<!DOCTYPE Document SYSTEM "http://example.com/x.dtd">\n', 1),
    ],
    ids=["xxe", "billion-laughs", "utf16-xxe", "external-dtd"],
)
def test_doctype_is_rejected(body):
    with pytest.raises(XmlRejected, match="DOCTYPE") as exc:
        parse_camt054(body)
    assert exc.value.reason == "DOCTYPE declarations are not allowed"


def test_oversized_body_is_rejected_before_parsing():
    body = _valid_body()
    with pytest.raises(XmlRejected, match="limit"):
        parse_camt054(body, max_bytes=len(body) - 1)
    with pytest.raises(XmlRejected, match="limit"):
        parse_xml(b"<" * 10, max_bytes=5)  # never reaches the parser, so no syntax error


@pytest.mark.parametrize("body", [b"", b"   ", b"<Document", b"not xml", b"<a></b>", b"<a/><b/>", b"\xff\xfe\x00"])
def test_malformed_xml_is_rejected(body):
    with pytest.raises(XmlRejected) as exc:
        parse_camt054(body)
    assert exc.value.reason


def test_schema_invalid_document():
    body = _valid_body().replace(b'Ccy="AED">100.50<', b'Ccy="aed">1.0.0<').replace(b"<CdtDbtInd>CRDT</CdtDbtInd>", b"")
    with pytest.raises(Camt054Invalid) as exc:
        parse_camt054(body)
    errors = exc.value.errors
    assert errors and all(e.startswith("line ") for e in errors)
    assert any("Ccy" in e for e in errors) and any("CdtDbtInd" in e for e in errors)
    assert not any("urn:iso" in e for e in errors)  # namespaces stripped for readability


def test_schema_errors_in_an_envelope_carry_the_original_line_numbers():
    body = (FIXTURES / "camt054_apphdr.xml").read_bytes().replace(b"<Sts><Cd>BOOK</Cd></Sts>", b"")
    line = next(i for i, text in enumerate(body.splitlines(), 1) if b"<BookgDt>" in text)
    with pytest.raises(Camt054Invalid) as exc:
        parse_camt054(body)
    assert any(e.startswith(f"line {line}:") and "Expected is one of ( RvslInd, Sts )" in e for e in exc.value.errors)


def test_wrong_message_type_is_rejected():
    pacs008 = b"""<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pacs.008.001.08">
      <FIToFICstmrCdtTrf><GrpHdr><MsgId>X</MsgId></GrpHdr></FIToFICstmrCdtTrf></Document>"""
    with pytest.raises(XmlRejected, match="pacs.008.001.08"):
        parse_camt054(pacs008)
    with pytest.raises(XmlRejected, match="not a camt.054"):
        parse_camt054(b"<hello/>")
    # An older camt.054 version is a different namespace, hence also not accepted.
    with pytest.raises(XmlRejected, match="camt.054.001.02"):
        parse_camt054(_valid_body().replace(b"camt.054.001.08", b"camt.054.001.02"))


def test_two_documents_in_one_envelope_are_rejected():
    doc = _valid_body().split(b"?>", 1)[1]
    with pytest.raises(XmlRejected, match="found 2"):
        parse_camt054(b"<Envelope>" + doc + doc + b"</Envelope>")


def test_envelope_content_does_not_affect_validation():
    # Junk next to the Document is ignored, the Document alone is validated.
    doc = _valid_body().split(b"?>", 1)[1]
    body = b'<Envelope xmlns:x="urn:other"><x:AppHdr><x:Anything/></x:AppHdr>' + doc + b"</Envelope>"
    assert parse_camt054(body).entries[0].entry_reference == "BK-1"
