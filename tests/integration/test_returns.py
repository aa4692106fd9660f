"""Returns on the real stack: a creditor agent sends a settled payment back (POST
/v1/returns, JSON or pacs.004), in part or whole; tokens move back to the debtor agent in
one ledger transaction, never more than was paid, never twice for the same return; an
accepted recall becomes a return. Every pacs.004 in and out is checked against its XSD."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from lxml import etree
from sqlalchemy import func, select, text

from deltran.db.tables import Account, Obligation, Payment, PaymentReturn
from deltran.iso20022.pacs004 import PaymentReturnMessage, build_pacs004
from deltran.iso20022.xml_safety import load_schema
from deltran.payment_references import forwarding_uetr
from tests.integration.test_accounts import read_statement
from tests.support.payments import auth, complete_gross_payment, wait_for_status

XML = {"Content-Type": "application/xml"}
P004 = {"p": "urn:iso:std:iso:20022:tech:xsd:pacs.004.001.09"}


async def _tokens(sessions, payment_id: str) -> tuple[Decimal, Decimal]:
    """The debtor agent's and the creditor agent's token balances in the payment's currency."""
    async with sessions() as session:
        obligation = await session.scalar(select(Obligation).where(Obligation.payment_id == uuid.UUID(payment_id)))
        assert obligation is not None
        balances = []
        for bank in (obligation.payer_id, obligation.payee_id):
            balances.append(
                await session.scalar(
                    select(Account.credits_posted - Account.debits_posted).where(
                        Account.participant_id == bank, Account.currency == obligation.currency, Account.kind == "token"
                    )
                )
            )
        return balances[0], balances[1]


async def _supply_equals_fiat(sessions) -> None:
    async with sessions() as session:
        rows = (
            await session.execute(
                text(
                    "SELECT currency, sum(credits_posted - debits_posted) FILTER (WHERE kind IN ('token', 'reserved')),"
                    " sum(debits_posted - credits_posted) FILTER (WHERE kind = 'fiat')"
                    " - coalesce(sum(credits_posted - debits_posted) FILTER (WHERE kind = 'paid_out'), 0)"
                    " FROM accounts GROUP BY currency"
                )
            )
        ).all()
    assert all(supply == backing for _, supply, backing in rows), rows


async def _return(http, credentials, payment_id: str, amount: str, reason: str = "AC04", *, key=None, bic="SBININBB"):
    headers = auth(credentials["banks"][bic]) | ({"Idempotency-Key": key} if key else {})
    return await http.post(
        "/v1/returns", json={"payment_id": payment_id, "amount": amount, "reason_code": reason}, headers=headers
    )


def _pacs004(body: bytes) -> dict:
    doc = etree.fromstring(body)
    schema = load_schema("pacs.004.001.09.xsd")
    assert schema.validate(doc), schema.error_log
    tx = "p:PmtRtr/p:TxInf/"
    return {
        "to": doc.findtext("p:PmtRtr/p:GrpHdr/p:InstdAgt/p:FinInstnId/p:BICFI", namespaces=P004),
        "e2e": doc.findtext(tx + "p:OrgnlEndToEndId", namespaces=P004),
        "message": doc.findtext(tx + "p:OrgnlGrpInf/p:OrgnlMsgId", namespaces=P004),
        "amount": doc.findtext(tx + "p:RtrdIntrBkSttlmAmt", namespaces=P004),
        "reason": doc.findtext(tx + "p:RtrRsnInf/p:Rsn/p:Cd", namespaces=P004),
    }


async def test_returned_in_part_then_in_whole_never_more_never_twice(http, credentials, sessions):
    payment_id = await complete_gross_payment(http, credentials, "3000.00", prefix="RTN")
    debtor_before, creditor_before = await _tokens(sessions, payment_id)

    first = await _return(http, credentials, payment_id, "1000.00")
    assert first.status_code == 201, first.text
    assert first.json()["payment_status"] == "PARTIALLY_RETURNED" and first.json()["amount"] == "1000.00"
    again = await _return(http, credentials, payment_id, "1000.00")  # the same request: the same return
    assert again.status_code == 200 and again.json()["return_id"] == first.json()["return_id"]
    debtor, creditor = await _tokens(sessions, payment_id)
    assert (debtor - debtor_before, creditor_before - creditor) == (Decimal(1000), Decimal(1000))

    too_much = await _return(http, credentials, payment_id, "2000.01", key="second")
    assert too_much.status_code == 422, too_much.text
    odd_units = await _return(http, credentials, payment_id, "1.001", key="third")
    assert odd_units.status_code == 422
    assert (
        await _return(http, credentials, payment_id, "10.00", bic="EBILAEAD")
    ).status_code == 404  # not its to return

    rest = await _return(http, credentials, payment_id, "2000.00", reason="CUST", key="second")
    assert rest.status_code == 201 and rest.json()["payment_status"] == "RETURNED", rest.text
    after_all = await _return(http, credentials, payment_id, "0.01", key="fourth")
    assert after_all.status_code == 409
    debtor, creditor = await _tokens(sessions, payment_id)
    assert (debtor - debtor_before, creditor_before - creditor) == (Decimal(3000), Decimal(3000))
    await _supply_equals_fiat(sessions)

    bank = auth(credentials["banks"]["EBILAEAD"])
    shown = (await http.get(f"/v1/payments/{payment_id}", headers=bank)).json()
    assert shown["status"] == "RETURNED"
    assert [(r["amount"], r["reason_code"]) for r in shown["returns"]] == [("1000.00", "AC04"), ("2000.00", "CUST")]
    # The debtor agent's pacs.004 names the payment as it sent it; only the two agents see it.
    out = await http.get(f"/v1/returns/{first.json()['return_id']}/pacs004", headers=bank)
    assert out.status_code == 200, out.text
    message = _pacs004(out.content)
    assert message["to"] == "EBILAEAD" and message["amount"] == "1000.00" and message["reason"] == "AC04"
    assert message["e2e"] == shown["end_to_end_id"]
    stranger = auth(credentials["banks"]["DEUTDEFF"])
    assert (await http.get(f"/v1/returns/{first.json()['return_id']}", headers=stranger)).status_code == 404
    async with sessions() as session:
        told = (
            await session.execute(
                text("SELECT count(*) FROM events WHERE type = 'payment.returned' AND data->>'payment_id' = :id"),
                {"id": payment_id},
            )
        ).scalar_one()
    assert told == 4  # two returns, each to both agents


async def test_forty_returns_at_once_never_exceed_the_payment(http, credentials, sessions):
    payment_id = await complete_gross_payment(http, credentials, "1000.00", prefix="RTN")
    same = await asyncio.gather(*(_return(http, credentials, payment_id, "100.00", key="one") for _ in range(20)))
    assert {r.status_code for r in same} <= {200, 201} and len({r.json()["return_id"] for r in same}) == 1
    distinct = await asyncio.gather(*(_return(http, credentials, payment_id, "100.00", key=f"k{i}") for i in range(40)))
    assert {r.status_code for r in distinct} <= {201, 409, 422}, [r.text for r in distinct if r.status_code >= 500]
    assert sum(r.status_code == 201 for r in distinct) == 9  # 100 + 9 × 100 = the payment
    async with sessions() as session:
        total = await session.scalar(
            select(func.sum(PaymentReturn.amount)).where(PaymentReturn.payment_id == uuid.UUID(payment_id))
        )
        status = await session.scalar(select(Payment.status).where(Payment.id == uuid.UUID(payment_id)))
    assert total == Decimal(1000) and status == "RETURNED"
    await _supply_equals_fiat(sessions)


async def test_a_pacs004_in_the_forwarded_references_returns_it(http, credentials, sessions, settings):
    payment_id = await complete_gross_payment(http, credentials, "1200.00", prefix="RTN")
    async with sessions() as session:
        payment = await session.get(Payment, uuid.UUID(payment_id))
        assert payment is not None
        uetr = uuid.UUID(forwarding_uetr(payment))
    creditor = auth(credentials["banks"]["SBININBB"])

    def message(return_id: str, *, amount="200.00", currency="AED", instructing="SBININBB") -> bytes:
        return build_pacs004(
            PaymentReturnMessage(
                message_id=f"RT-{uuid.uuid4().hex[:12]}",
                created_at=datetime.now(UTC),
                instructing_agent_bic=instructing,
                instructed_agent_bic=settings.bic,
                return_id=return_id,
                amount=Decimal(amount),
                currency=currency,
                reason_code="AC06",
                additional_info="account blocked",
                uetr=uetr,
            )  # fmt: skip
        )

    assert (
        await http.post("/v1/returns", content=message("R-1", instructing="HDFCINBB"), headers=creditor | XML)
    ).status_code == 403
    assert (
        await http.post("/v1/returns", content=message("R-1", currency="USD"), headers=creditor | XML)
    ).status_code == 422
    assert (await http.post("/v1/returns", content=b"<Document/>", headers=creditor | XML)).status_code == 400
    made = await http.post("/v1/returns", content=message("R-1"), headers=creditor | XML)
    assert made.status_code == 201, made.text
    assert made.json()["payment_id"] == payment_id and made.json()["payment_status"] == "PARTIALLY_RETURNED"
    assert (await http.post("/v1/returns", content=message("R-1"), headers=creditor | XML)).status_code == 200
    # The creditor agent reads its own return back in the references it used.
    own = _pacs004((await http.get(f"/v1/returns/{made.json()['return_id']}/pacs004", headers=creditor)).content)
    assert own["to"] == settings.bic and own["amount"] == "200.00"
    track = (await http.get(f"/v1/track/{uetr}", headers=creditor)).json()
    assert track["events"][-1]["state"] == "PARTIALLY_RETURNED"
    assert track["events"][-1]["message_type"] == "pacs.004.001.09"


async def test_an_accepted_recall_returns_the_payment(http, credentials, sessions):
    payment_id = await complete_gross_payment(http, credentials, "800.00", prefix="RTN")
    debtor_before, _ = await _tokens(sessions, payment_id)
    bank = auth(credentials["banks"]["EBILAEAD"])
    recall = await http.post("/v1/cancellations", json={"payment_id": payment_id, "reason": "DUPL"}, headers=bank)
    assert recall.json()["status"] == "PDCR", recall.text
    cancellation_id = recall.json()["cancellation_id"]
    creditor = auth(credentials["banks"]["SBININBB"])
    assert (await http.post(f"/v1/investigations/{cancellation_id}/accept", headers=bank)).status_code == 404
    accepted = await http.post(f"/v1/investigations/{cancellation_id}/accept", headers=creditor)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "CNCL" and accepted.json()["return_id"] is not None
    again = await http.post(f"/v1/investigations/{cancellation_id}/accept", headers=creditor)
    assert again.status_code == 200 and again.json()["return_id"] == accepted.json()["return_id"]
    refused = await http.post(
        f"/v1/investigations/{cancellation_id}/reject", json={"reason_code": "CUST"}, headers=creditor
    )
    assert refused.status_code == 409

    done = await wait_for_status(http, payment_id, bank, {"RETURNED"})
    assert [(r["amount"], r["reason_code"]) for r in done["returns"]] == [("800.00", "FOCR")]
    answer = await http.post("/v1/cancellations", json={"payment_id": payment_id, "reason": "DUPL"}, headers=bank)
    assert answer.json()["status"] == "CNCL"
    debtor, _ = await _tokens(sessions, payment_id)
    assert debtor - debtor_before == Decimal(800)
    await _supply_equals_fiat(sessions)


async def test_a_full_return_answers_a_pending_recall_and_statements_show_it(http, credentials, sessions):
    payment_id = await complete_gross_payment(http, credentials, "640.00", prefix="RTN")
    started = datetime.now(UTC) - timedelta(seconds=5)  # before the return; statements start in the past
    bank = auth(credentials["banks"]["EBILAEAD"])
    pending = await http.post("/v1/cancellations", json={"payment_id": payment_id, "reason": "CUST"}, headers=bank)
    assert pending.json()["status"] == "PDCR"
    # The creditor agent sends it all back by a return of its own, not by accepting.
    made = await _return(http, credentials, payment_id, "640.00", reason="CUST")
    assert made.status_code == 201 and made.json()["payment_status"] == "RETURNED"
    answer = (
        await http.post("/v1/cancellations", json={"payment_id": payment_id, "reason": "CUST"}, headers=bank)
    ).json()
    assert answer["status"] == "CNCL"
    creditor = auth(credentials["banks"]["SBININBB"])
    listed = (await http.get("/v1/investigations", headers=creditor)).json()["items"]
    assert payment_id not in {i["payment_id"] for i in listed}

    # A recall of a payment already returned in full: refused, already returned (ARDT).
    other = await complete_gross_payment(http, credentials, "90.00", prefix="RTN")
    assert (await _return(http, credentials, other, "90.00")).status_code == 201
    late = (await http.post("/v1/cancellations", json={"payment_id": other, "reason": "DUPL"}, headers=bank)).json()
    assert (late["status"], late["reason"]) == ("RJCR", "ARDT")

    # Each bank's statement shows the return with the other bank as its counterparty.
    for key, counterparty, direction in ((bank, "SBININBB", "CRDT"), (creditor, "EBILAEAD", "DBIT")):
        statement = await read_statement(http, key, datetime.now(UTC), **{"from": started.isoformat()})
        [posting] = [p for p in statement["postings"] if p["kind"] == "returned" and p["payment_id"] == payment_id]
        assert (posting["counterparty_bic"], posting["direction"], posting["amount"]) == (
            counterparty,
            direction,
            "640.00",
        )


async def test_one_return_key_on_two_payments_at_once_is_one_return(http, credentials):
    first, second = [await complete_gross_payment(http, credentials, "50.00", prefix="RTN") for _ in range(2)]
    answers = await asyncio.gather(
        *(_return(http, credentials, p, "10.00", key="shared-key") for p in (first, second) for _ in range(5))
    )
    codes = sorted(r.status_code for r in answers)
    assert 500 not in codes and codes.count(201) == 1 and set(codes) <= {200, 201, 409}, [r.text for r in answers]
