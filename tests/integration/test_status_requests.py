"""Status requests over HTTP: a bank posts a pacs.028 about payments it sends or receives,
in its own references, and gets one pacs.002 back; every message in (written by
build_pacs028, which validates) and out (validated here) is checked against its XSD."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from lxml import etree
from sqlalchemy import select

from deltran.db.tables import Obligation
from deltran.iso20022.pacs008 import build_pacs008
from deltran.iso20022.pacs028 import OriginalMessage, RequestedTransaction, StatusRequest, build_pacs028
from deltran.iso20022.xml_safety import load_schema
from tests.support.auditor import SANCTIONED
from tests.support.payments import auth, complete_gross_payment, pacs008_spec, payment_body, wait_for_status

XML = {"Content-Type": "application/xml"}
P002 = {"p": "urn:iso:std:iso:20022:tech:xsd:pacs.002.001.10"}


def _ask(*, message: tuple[str, str] | None = None, txs=(), instructing: str | None = None) -> bytes:
    return build_pacs028(
        StatusRequest(
            message_id=f"SR-{uuid.uuid4().hex[:16]}",
            created_at=datetime.now(UTC),
            instructing_agent_bic=instructing,
            original_message=OriginalMessage(*message) if message else None,
            transactions=tuple(RequestedTransaction(e2e, tx_id) for e2e, tx_id in txs),
        )
    )


def _report(body: bytes) -> dict:
    """The pacs.002, validated, as {"to", "message", "transactions": [...]}."""
    doc = etree.fromstring(body)
    schema = load_schema("pacs.002.001.10.xsd")
    assert schema.validate(doc), schema.error_log
    top = doc.find("p:FIToFIPmtStsRpt/p:OrgnlGrpInfAndSts/p:OrgnlMsgId", P002)
    return {
        "to": doc.findtext("p:FIToFIPmtStsRpt/p:GrpHdr/p:InstdAgt/p:FinInstnId/p:BICFI", namespaces=P002),
        "message": top.text if top is not None else None,
        "transactions": [
            {
                "message": tx.findtext("p:OrgnlGrpInf/p:OrgnlMsgId", namespaces=P002),
                "e2e": tx.findtext("p:OrgnlEndToEndId", namespaces=P002),
                "tx_id": tx.findtext("p:OrgnlTxId", namespaces=P002),
                "uetr": tx.findtext("p:OrgnlUETR", namespaces=P002),
                "status": tx.findtext("p:TxSts", namespaces=P002),
                "reason": tx.findtext("p:StsRsnInf/p:Rsn/p:Cd", namespaces=P002),
            }
            for tx in doc.iterfind("p:FIToFIPmtStsRpt/p:TxInfAndSts", P002)
        ],
    }


def _kind(response) -> str:
    return response.json()["type"].removeprefix("urn:deltran:problem:")


async def _post(http, key: str, body: bytes):
    return await http.post("/v1/status-requests", content=body, headers={**auth(key), **XML})


async def test_the_debtor_agent_asks_by_message_transaction_or_both(http, credentials, e2e_id):
    bank_key = credentials["banks"]["EBILAEAD"]
    bank = auth(bank_key)
    message_id = f"MSG-{uuid.uuid4().hex[:20]}"
    tx_id = f"TX-{uuid.uuid4().hex[:12]}"
    body = build_pacs008(
        [
            pacs008_spec(e2e_id, amount="2500.00"),
            pacs008_spec(f"{e2e_id}-R", amount="2500.00", creditor_name=SANCTIONED, transaction_id=tx_id),
        ],
        message_id=message_id,
        instructing_agent_bic="EBILAEAD",
    )
    accepted = await http.post("/v1/payments", content=body, headers={**bank, **XML})
    assert accepted.status_code == 202, accepted.text
    first, rejected = (p["payment_id"] for p in accepted.json())
    await wait_for_status(http, first, bank, {"AWAITING_SETTLEMENT"})
    await wait_for_status(http, rejected, bank, {"REJECTED"})

    by_message = await _post(http, bank_key, _ask(message=(message_id, "pacs.008.001.08")))
    assert by_message.status_code == 200, by_message.text
    assert by_message.headers["content-type"].startswith("application/xml")
    report = _report(by_message.content)
    assert report["to"] == "EBILAEAD" and report["message"] == message_id
    assert sorted((t["e2e"], t["status"], t["reason"]) for t in report["transactions"]) == [
        (e2e_id, "ACSP", None),
        (f"{e2e_id}-R", "RJCT", "RR04"),
    ]

    by_tx_id = _report((await _post(http, bank_key, _ask(txs=[(None, tx_id)]))).content)
    assert [(t["e2e"], t["tx_id"]) for t in by_tx_id["transactions"]] == [(f"{e2e_id}-R", tx_id)]
    both = _report(
        (await _post(http, bank_key, _ask(message=(message_id, "pacs.008.001.08"), txs=[(e2e_id, None)]))).content
    )
    assert [t["e2e"] for t in both["transactions"]] == [e2e_id]

    # Two payments from two messages: each transaction names its own original message.
    json_e2e = f"{e2e_id}-J"
    json_payment = await http.post("/v1/payments", json=payment_body(json_e2e), headers=bank)
    assert json_payment.status_code == 202, json_payment.text
    mixed = _report((await _post(http, bank_key, _ask(txs=[(e2e_id, None), (json_e2e, None)]))).content)
    assert mixed["message"] is None
    assert [(t["e2e"], t["message"]) for t in mixed["transactions"]] == [
        (e2e_id, message_id),
        (json_e2e, uuid.UUID(json_payment.json()["payment_id"]).hex),  # a JSON payment's stand-in MsgId
    ]


async def test_the_creditor_agent_asks_in_the_references_deltran_forwarded(http, credentials, sessions):
    payment_id = await complete_gross_payment(http, credentials, "750.00", prefix="SRQ")
    async with sessions() as session:
        obligation_id = await session.scalar(
            select(Obligation.id).where(Obligation.payment_id == uuid.UUID(payment_id))
        )
    creditor_key = credentials["banks"]["SBININBB"]
    forwarded = await http.get(f"/v1/payments/{payment_id}/pacs008", headers=auth(creditor_key))
    assert forwarded.status_code == 200, forwarded.text
    forwarded_msg_id = etree.fromstring(forwarded.content).findtext(".//{*}GrpHdr/{*}MsgId")

    by_message = _report((await _post(http, creditor_key, _ask(message=(forwarded_msg_id, "pacs.008.001.08")))).content)
    assert by_message["to"] == "SBININBB" and by_message["message"] == forwarded_msg_id
    [tx] = by_message["transactions"]
    assert tx["status"] == "ACSC" and tx["tx_id"] == obligation_id.hex and tx["uetr"] is not None

    by_obligation = _report((await _post(http, creditor_key, _ask(txs=[(None, obligation_id.hex)]))).content)
    assert [t["tx_id"] for t in by_obligation["transactions"]] == [obligation_id.hex]
    # The debtor agent's stand-in MsgId is not a reference the creditor agent was given.
    theirs = await _post(http, creditor_key, _ask(message=(uuid.UUID(payment_id).hex, "deltran.payment.json")))
    assert theirs.status_code == 404, theirs.text
    # And the forwarded MsgId is not one the debtor agent sent.
    forwarded_to_debtor = await _post(
        http, credentials["banks"]["EBILAEAD"], _ask(message=(forwarded_msg_id, "pacs.008.001.08"))
    )
    assert forwarded_to_debtor.status_code == 404, forwarded_to_debtor.text


async def test_a_payment_not_yours_is_not_found_and_nothing_is_answered(http, credentials, e2e_id):
    bank = auth(credentials["banks"]["EBILAEAD"])
    accepted = await http.post("/v1/payments", json=payment_body(e2e_id), headers=bank)
    assert accepted.status_code == 202, accepted.text
    other = await _post(http, credentials["banks"]["CITIUS33"], _ask(txs=[(e2e_id, None)]))
    assert other.status_code == 404 and _kind(other) == "payment-not-found"
    # One transaction that names nothing: no report at all, and the problem says which.
    partly = await _post(http, credentials["banks"]["EBILAEAD"], _ask(txs=[(e2e_id, None), (f"{e2e_id}-NONE", None)]))
    assert partly.status_code == 404
    assert [e["field"] for e in partly.json()["errors"]] == ["TxInf[1]"]


async def test_bad_requests_are_refused_with_the_reason(http, credentials, e2e_id):
    bank_key = credentials["banks"]["EBILAEAD"]
    accepted = await http.post("/v1/payments", json=payment_body(e2e_id), headers=auth(bank_key))
    assert accepted.status_code == 202, accepted.text
    asked = _ask(txs=[(e2e_id, None)])
    agent = await _post(http, credentials["settlement_agent"], asked)
    assert agent.status_code == 403
    as_json = await http.post(
        "/v1/status-requests", content=asked, headers={**auth(bank_key), "Content-Type": "application/json"}
    )
    assert as_json.status_code == 415
    for body, kind in [
        (b"not xml", "invalid-xml"),
        (asked.replace(b"pacs.028.001.05", b"pacs.028.001.04"), "invalid-xml"),  # another version
        (asked.replace(b"<OrgnlEndToEndId>" + e2e_id.encode() + b"</OrgnlEndToEndId>", b""), "invalid-pacs028"),
        (asked.replace(b"<MsgId>", b"<MsgId>" + b"X" * 40), "invalid-pacs028"),  # over Max35Text
    ]:
        refused = await _post(http, bank_key, body)
        assert (refused.status_code, _kind(refused)) == (400, kind), refused.text
    empty = await _post(
        http, bank_key, asked.replace(b"<OrgnlEndToEndId>" + e2e_id.encode() + b"</OrgnlEndToEndId>", b"")
    )
    assert empty.json()["errors"][0]["field"] == "TxInf[0]"
    as_another = await _post(http, bank_key, _ask(txs=[(e2e_id, None)], instructing="CITIUS33"))
    assert (as_another.status_code, _kind(as_another)) == (403, "not-your-bic")
    as_itself = await _post(http, bank_key, _ask(txs=[(e2e_id, None)], instructing="EBILAEADXXX"))
    assert as_itself.status_code == 200, as_itself.text  # its head-office BIC with XXX is itself
