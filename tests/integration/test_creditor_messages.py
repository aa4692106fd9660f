"""What the creditor agent of a payment reads once its tokens are credited: the payment
as DelTran forwards it (pacs.008.001.08) and the camt.054 of the posting, on the real
stack; both as valid as the official XSDs require and the same every time they are read."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

from lxml import etree
from sqlalchemy import select

from deltran.db.tables import Payment
from deltran.iso20022.camt054_posting import NS as CAMT054
from deltran.iso20022.pacs008 import NS as PACS008
from deltran.iso20022.xml_safety import load_schema
from tests.integration.test_accounts import read_statement
from tests.support.payments import auth, pay_between_new_banks, payment_body, wait_for_status

P = {"p": PACS008}
C = {"c": CAMT054}


async def test_the_creditor_agent_reads_the_payment_as_forwarded_to_it(http, credentials, settings):
    uetr = str(uuid.uuid4())
    done = await pay_between_new_banks(http, credentials, "2500.75", uetr=uetr)
    payment, obligation = done.payment, done.payment["obligation"]
    response = await http.get(f"/v1/payments/{payment['payment_id']}/pacs008", headers=done.creditor)
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/xml")
    doc = etree.fromstring(response.content)
    load_schema("pacs.008.001.08").assertValid(doc)
    tx = doc.find(".//p:CdtTrfTxInf", P)

    def at(path: str) -> str | None:
        return tx.findtext(path, namespaces=P)

    # DelTran instructs this leg; the parties, references and amount are the original's.
    assert (at("p:InstgAgt/p:FinInstnId/p:BICFI"), at("p:InstdAgt/p:FinInstnId/p:BICFI")) == (
        settings.bic,
        done.creditor_bic,
    )
    assert (at("p:DbtrAgt/p:FinInstnId/p:BICFI"), at("p:CdtrAgt/p:FinInstnId/p:BICFI")) == (
        done.debtor_bic,
        done.creditor_bic,
    )
    assert (at("p:PmtId/p:EndToEndId"), at("p:PmtId/p:UETR"), at("p:PmtId/p:TxId")) == (
        done.end_to_end_id,
        uetr,
        uuid.UUID(obligation["id"]).hex,
    )
    assert (Decimal(at("p:IntrBkSttlmAmt")), tx.find("p:IntrBkSttlmAmt", P).get("Ccy")) == (Decimal("2500.75"), "AED")
    assert (at("p:Dbtr/p:Nm"), at("p:Cdtr/p:Nm"), at("p:CdtrAcct/p:Id/p:Othr/p:Id")) == (
        "Al Noor Trading LLC",
        "Ganesh Textiles Pvt Ltd",
        "30001234567",
    )
    assert at("p:IntrBkSttlmDt") == obligation["settled_at"][:10]
    assert doc.findtext(".//p:GrpHdr/p:SttlmInf/p:SttlmMtd", namespaces=P) == "CLRG"
    # The same message every time; its debtor agent may read it too, admin as well.
    for headers in (done.creditor, done.debtor, auth(credentials["admin"])):
        again = await http.get(f"/v1/payments/{payment['payment_id']}/pacs008", headers=headers)
        assert again.content == response.content


async def test_each_agent_reads_the_camt054_of_its_own_posting(http, credentials, settings):
    done = await pay_between_new_banks(http, credentials, "99.10")
    path = f"/v1/payments/{done.payment['payment_id']}/camt054"
    credit = etree.fromstring((await http.get(path, headers=done.creditor)).content)
    debit = etree.fromstring((await http.get(path, headers=done.debtor)).content)
    as_admin = (await http.get(path, headers=auth(credentials["admin"]))).content
    schema = load_schema("camt.054.001.08")
    schema.assertValid(credit)
    schema.assertValid(debit)
    assert as_admin == etree.tostring(credit, xml_declaration=True, encoding="UTF-8", pretty_print=True)

    for doc, owner, direction in ((credit, done.creditor_bic, "CRDT"), (debit, done.debtor_bic, "DBIT")):
        [entry] = doc.iterfind(".//c:Ntfctn/c:Ntry", C)
        assert doc.findtext(".//c:Ntfctn/c:Acct/c:Ownr/c:Id/c:OrgId/c:AnyBIC", namespaces=C) == owner
        assert doc.findtext(".//c:Ntfctn/c:Acct/c:Id/c:Othr/c:Id", namespaces=C) == f"DELTRAN/{owner}/AED/TOKEN"
        assert (entry.findtext("c:CdtDbtInd", namespaces=C), entry.findtext("c:Amt", namespaces=C)) == (
            direction,
            "99.10",
        )
        assert entry.findtext("c:NtryDtls/c:TxDtls/c:Refs/c:EndToEndId", namespaces=C) == done.end_to_end_id
    # The notification's entry is the statement's line: the same posting, the same reference.
    statement = await read_statement(http, done.creditor, datetime.now(UTC), **{"from": done.before.isoformat()})
    [line] = statement["postings"]
    assert credit.findtext(".//c:Ntry/c:AcctSvcrRef", namespaces=C) == uuid.UUID(line["id"]).hex


async def test_before_its_credit_a_payment_has_no_forwarded_messages(http, credentials):
    """Until the tokens are credited there is nothing to forward or notify: a 409 naming
    the payment's state, not an empty or invented message."""
    bank = auth(credentials["banks"]["EBILAEAD"])
    e2e = f"FWD-{uuid.uuid4().hex[:12]}"
    accepted = await http.post("/v1/payments", json={**payment_body(e2e), "urgent": True}, headers=bank)
    payment_id = accepted.json()["payment_id"]
    await wait_for_status(http, payment_id, bank, {"AWAITING_SETTLEMENT"})
    receiver = auth(credentials["banks"]["SBININBB"])
    for message in ("pacs008", "camt054"):
        response = await http.get(f"/v1/payments/{payment_id}/{message}", headers=receiver)
        assert response.status_code == 409, response.text
        assert "AWAITING_SETTLEMENT" in response.json()["detail"]


async def test_only_the_payment_s_banks_and_admin_read_its_messages(http, credentials):
    done = await pay_between_new_banks(http, credentials, "10.00")
    for message in ("pacs008", "camt054"):
        path = f"/v1/payments/{done.payment['payment_id']}/{message}"
        another = await http.get(path, headers=auth(credentials["banks"]["EBILAEAD"]))
        agent = await http.get(path, headers=auth(credentials["settlement_agent"]))
        unknown = await http.get(f"/v1/payments/{uuid.uuid4()}/{message}", headers=done.creditor)
        assert (another.status_code, agent.status_code, unknown.status_code) == (404, 403, 404)


async def test_a_payment_sent_without_a_uetr_is_forwarded_with_a_stable_one(http, credentials, sessions):
    done = await pay_between_new_banks(http, credentials, "10.00")
    async with sessions() as session:
        assert await session.scalar(select(Payment.uetr).where(Payment.id == done.payment["payment_id"])) is None
    path = f"/v1/payments/{done.payment['payment_id']}/pacs008"
    first, second = [etree.fromstring((await http.get(path, headers=done.creditor)).content) for _ in range(2)]
    uetrs = {d.findtext(".//p:CdtTrfTxInf/p:PmtId/p:UETR", namespaces=P) for d in (first, second)}
    [uetr] = uetrs
    assert uuid.UUID(uetr).version == 4
