"""The recall and return messages: camt.056 and pacs.004 read (what the XSD lets through
and DelTran refuses), camt.029 and pacs.004 written valid against their XSDs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from deltran.iso20022.camt029 import Camt029Invalid, Resolution, build_camt029
from deltran.iso20022.camt056 import Camt056Invalid, RecallRequest, build_camt056, parse_camt056
from deltran.iso20022.pacs004 import Pacs004Invalid, PaymentReturnMessage, build_pacs004, parse_pacs004

NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
RECALL = RecallRequest(
    case_id="CASE-1", created_at=NOW, assigner_bic="EBILAEAD", assignee_bic="DLTRAEAD", reason_code="DUPL",
    additional_info="sent twice", uetr=uuid.uuid4(), end_to_end_id="E2E-1", original_message_id="MSG-1",
    original_message_name="pacs.008.001.08",
)  # fmt: skip
RETURN = PaymentReturnMessage(
    message_id="RT-1", created_at=NOW, instructing_agent_bic="SBININBB", instructed_agent_bic="DLTRAEAD",
    return_id="R-1", amount=Decimal("250.50"), currency="AED", reason_code="AC04", additional_info=None,
    uetr=uuid.uuid4(), end_to_end_id="E2E-1", transaction_id="TX-1",
)  # fmt: skip


SECOND_TX = b"<TxInf><OrgnlEndToEndId>E2E-2</OrgnlEndToEndId></TxInf>"


def test_a_recall_round_trips():
    assert parse_camt056(build_camt056(RECALL)) == RECALL


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda x: x.replace(b"<Id>CASE-1</Id>", b"<Id>   </Id>", 1), "Assgnmt/Id"),
        (lambda x: x.replace(b"</TxInf>", b"</TxInf>" + SECOND_TX), "Undrlyg/TxInf"),
        (lambda x: x.replace(b"T10:00:00+00:00</CreDtTm>", b"T24:00:00</CreDtTm>"), "Assgnmt/CreDtTm"),
    ],
)  # fmt: skip
def test_what_the_schema_lets_through_a_recall_refuses(change, field):
    with pytest.raises(Camt056Invalid) as refused:
        parse_camt056(change(build_camt056(RECALL)))
    assert refused.value.errors[0]["field"] == field


def test_a_recall_naming_no_payment_is_refused():
    bare = RecallRequest(**{**RECALL.__dict__, "uetr": None, "end_to_end_id": None, "original_message_id": None})
    with pytest.raises(Camt056Invalid):
        parse_camt056(build_camt056(bare))


@pytest.mark.parametrize("status", ["CNCL", "PDCR", "RJCR"])
def test_every_answer_is_a_valid_camt029(status):
    body = build_camt029(
        Resolution(
            message_id="DTR1", created_at=NOW, from_bic="DLTRAEAD", to_bic="EBILAEAD", case_id="CASE-1",
            status=status, end_to_end_id="E2E-1", uetr=None, amount=Decimal("100"), currency="INR",
            reason_code="ARJR" if status == "RJCR" else None, additional_info="x" * 200,
        )
    )  # fmt: skip
    assert f"<Conf>{status}</Conf>".encode() in body


def test_an_unknown_answer_is_not_written():
    with pytest.raises(Camt029Invalid):
        build_camt029(
            Resolution(
                message_id="DTR1", created_at=NOW, from_bic="DLTRAEAD", to_bic="EBILAEAD", case_id="C",
                status="ACCR", end_to_end_id="E", uetr=None, amount=Decimal(1), currency="AED",
            )
        )  # fmt: skip


def test_a_return_round_trips():
    assert parse_pacs004(build_pacs004(RETURN)) == RETURN


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda x: x.replace(b"<NbOfTxs>1</NbOfTxs>", b"<NbOfTxs>2</NbOfTxs>"), "GrpHdr/NbOfTxs"),
        (lambda x: x.replace(b"<RtrId>R-1</RtrId>", b""), "TxInf/RtrId"),
        (lambda x: x.replace(b">250.50<", b">250.505<"), "TxInf/RtrdIntrBkSttlmAmt"),
        (lambda x: x.replace(b'Ccy="AED">250.50', b'Ccy="XYZ">250.50'), "TxInf/RtrdIntrBkSttlmAmt"),
    ],
)
def test_what_the_schema_lets_through_a_return_refuses(change, field):
    with pytest.raises(Pacs004Invalid) as refused:
        parse_pacs004(change(build_pacs004(RETURN)))
    assert field in [e["field"] for e in refused.value.errors]
