"""Recalls on the real stack: a debtor agent recalls its payment (POST /v1/cancellations).
Before settlement the payment workflow cancels it (CNCL: obligation released, nothing
minted, both agents told); after, its creditor agent is asked (PDCR, an investigation)
and may refuse (RJCR); a payment that ended without settling cannot be recalled (RJCR)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from decimal import Decimal

from lxml import etree
from sqlalchemy import func, select, text

from activities.clearing import ensure_open_window
from deltran.db.tables import Cancellation, LedgerTransfer, Obligation, Payment
from deltran.iso20022.camt056 import RecallRequest, build_camt056
from deltran.iso20022.pacs008 import build_pacs008
from deltran.iso20022.xml_safety import load_schema
from deltran.payment_references import forwarding_uetr
from deltran.temporal.contract import PaymentWorkflowContract
from tests.integration.test_clearing import fund, net_payment
from tests.support.auditor import INVARIANTS, SANCTIONED
from tests.support.payments import (
    auth,
    camt054_for,
    complete_gross_payment,
    pacs008_spec,
    payment_body,
    wait_for_status,
)

XML = {"Content-Type": "application/xml"}


async def _awaiting_gross(http, credentials, e2e: str, amount: str = "1500.00") -> str:
    bank = auth(credentials["banks"]["EBILAEAD"])
    accepted = await http.post("/v1/payments", json={**payment_body(e2e, amount=amount), "urgent": True}, headers=bank)
    assert accepted.status_code == 202, accepted.text
    payment_id = accepted.json()["payment_id"]
    await wait_for_status(http, payment_id, bank, {"AWAITING_SETTLEMENT"})
    return payment_id


async def _recall(http, credentials, payment_id: str, reason: str = "DUPL", bic: str = "EBILAEAD", **extra):
    return await http.post(
        "/v1/cancellations",
        json={"payment_id": payment_id, "reason": reason, **extra},
        headers=auth(credentials["banks"][bic]),
    )


async def _told(sessions, payment_id: str) -> list[tuple[str, str]]:
    """(bank, event type) of every event about the payment, in the order written."""
    async with sessions() as session:
        rows = await session.execute(
            text(
                "SELECT p.bic, e.type FROM events e JOIN participants p ON p.id = e.participant_id"
                " WHERE e.payment_id = CAST(:id AS uuid) OR e.data->>'payment_id' = CAST(:id AS text)"
                " ORDER BY e.written"
            ),
            {"id": payment_id},
        )
        return [(bic, type_) for bic, type_ in rows.all()]


async def test_a_payment_recalled_before_settlement_is_cancelled_and_never_settles(
    http, credentials, sessions, temporal_env, e2e_id
):
    payment_id = await _awaiting_gross(http, credentials, e2e_id)
    recalled = await _recall(http, credentials, payment_id, additional_info="sent twice by our customer")
    assert recalled.status_code == 200, recalled.text
    answer = recalled.json()
    assert answer["status"] == "CNCL" and answer["reason"] == "DUPL" and answer["payment_status"] == "CANCELLED"
    assert answer["reason_detail"] == "sent twice by our customer" and answer["case_id"].startswith("DTX")

    bank = auth(credentials["banks"]["EBILAEAD"])
    payment = (await http.get(f"/v1/payments/{payment_id}", headers=bank)).json()
    assert payment["status"] == "CANCELLED" and payment["rejection_code"] == "DUPL"
    async with sessions() as session:
        row = await session.get(Payment, uuid.UUID(payment_id))
        assert row is not None
        obligation = await session.scalar(select(Obligation).where(Obligation.payment_id == row.id))
        assert obligation is not None and obligation.status == "RELEASED"
    # The workflow ended with it: CANCELLED, no further step.
    handle = temporal_env.client.get_workflow_handle_for(PaymentWorkflowContract.run, row.workflow_id)
    state = await asyncio.wait_for(handle.result(), timeout=10)
    assert state.status == "CANCELLED"
    report = (await http.get(f"/v1/payments/{payment_id}/pacs002", headers=bank)).text
    assert "<TxSts>CANC</TxSts>" in report and "<Cd>DUPL</Cd>" in report

    # The same recall again, and another reason: the first answer, nothing decided twice.
    again = await _recall(http, credentials, payment_id, reason="FRAD")
    assert again.status_code == 200 and again.json() == answer

    # A booking that arrives for it now funds nothing: the entry is to be returned.
    booked = await http.post(
        "/v1/notifications/camt054",
        content=camt054_for(e2e_id, "1500.00", "AED", entry_reference=f"N{uuid.uuid4().hex[:20]}"),
        headers={**auth(credentials["settlement_agent"]), **XML},
    )
    assert booked.status_code == 200 and not booked.json()["entries"][0]["matched"], booked.text
    async with sessions() as session:
        minted = await session.scalar(
            select(func.count()).select_from(LedgerTransfer).where(LedgerTransfer.obligation_id == obligation.id)
        )
    assert minted == 0
    assert sorted(e for e in await _told(sessions, payment_id) if e[1] == "payment.cancelled") == [
        ("EBILAEAD", "payment.cancelled"),
        ("SBININBB", "payment.cancelled"),
    ]


async def test_forty_recalls_at_once_decide_once(http, credentials, sessions, e2e_id):
    payment_id = await _awaiting_gross(http, credentials, e2e_id)
    answers = await asyncio.gather(*(_recall(http, credentials, payment_id) for _ in range(40)))
    assert {r.status_code for r in answers} == {200}, [r.text for r in answers if r.status_code != 200]
    assert len({(r.json()["cancellation_id"], r.json()["status"]) for r in answers}) == 1
    assert answers[0].json()["status"] == "CNCL"
    told = await _told(sessions, payment_id)
    assert told.count(("EBILAEAD", "payment.cancelled")) == 1


async def test_a_net_payment_leaves_its_open_window_and_one_netted_is_for_its_creditor_agent(
    http, credentials, sessions, worker
):
    async with sessions() as session, session.begin():
        await ensure_open_window(session, "EUR")
    tag = uuid.uuid4().hex[:8]
    payer, payee = "DEUTDEFF", "BNPAFRPP"
    payer_key, payee_key = auth(credentials["banks"][payer]), auth(credentials["banks"][payee])
    ids = []
    for i, amount in enumerate(("7000.00", "3000.00")):
        accepted = await http.post(
            "/v1/payments", json=net_payment(f"R{tag}-{i}", payer, payee, amount, "EUR"), headers=payer_key
        )
        assert accepted.status_code == 202, accepted.text
        ids.append(accepted.json()["payment_id"])
    for payment_id in ids:
        state = await wait_for_status(http, payment_id, payer_key, {"AWAITING_SETTLEMENT"})
        assert state["obligation"]["settlement_mode"] == "NET"
    cancelled, kept = ids

    assert (await _recall(http, credentials, cancelled, bic=payer)).json()["status"] == "CNCL"
    admin = auth(credentials["admin"])
    closed = await http.post("/v1/clearing/windows/close?currency=EUR", headers=admin)
    assert closed.status_code == 202, closed.text
    window = closed.json()
    async with sessions() as session:
        released = await session.scalar(select(Obligation).where(Obligation.payment_id == uuid.UUID(cancelled)))
        counted = await session.scalar(
            select(func.coalesce(func.sum(Obligation.amount), 0)).where(
                Obligation.clearing_window_id == uuid.UUID(window["id"]), Obligation.status != "RELEASED"
            )
        )
    assert released is not None and released.status == "RELEASED"
    assert Decimal(window["gross_amount"]) == counted  # netting left the cancelled obligation out

    # Netted in a closed window: too late to cancel; its creditor agent decides.
    pending = await _recall(http, credentials, kept, reason="CUST", bic=payer)
    assert pending.status_code == 200 and pending.json()["status"] == "PDCR", pending.text
    for instruction in window["instructions"]:
        await fund(http, credentials, instruction, "EUR")
    done = await wait_for_status(http, kept, payer_key, {"COMPLETED"}, timeout_s=60)
    assert done["token"] is not None
    listed = (await http.get("/v1/investigations", headers=payee_key)).json()["items"]
    assert [i["payment_id"] for i in listed if i["payment_id"] == kept] == [kept]
    assert ("BNPAFRPP", "cancellation.requested") in await _told(sessions, kept)


async def test_a_settled_payment_is_its_creditor_agents_to_refuse(http, credentials, sessions):
    payment_id = await complete_gross_payment(http, credentials, "2100.00", prefix="RCL")
    pending = await _recall(http, credentials, payment_id, reason="FRAD")
    assert pending.status_code == 200, pending.text
    assert pending.json()["status"] == "PDCR" and pending.json()["payment_status"] == "COMPLETED"
    cancellation_id = pending.json()["cancellation_id"]

    creditor = auth(credentials["banks"]["SBININBB"])
    listed = (await http.get("/v1/investigations", headers=creditor)).json()["items"]
    mine = [i for i in listed if i["cancellation_id"] == cancellation_id]
    assert len(mine) == 1 and mine[0]["reason_code"] == "FRAD" and mine[0]["amount"] == "2100.00"
    debtor = auth(credentials["banks"]["EBILAEAD"])
    assert cancellation_id not in {
        i["cancellation_id"] for i in (await http.get("/v1/investigations", headers=debtor)).json()["items"]
    }
    # Only its creditor agent may answer it: to anyone else it does not exist.
    other = await http.post(
        f"/v1/investigations/{cancellation_id}/reject", json={"reason_code": "CUST"}, headers=debtor
    )
    assert other.status_code == 404

    refused = await http.post(
        f"/v1/investigations/{cancellation_id}/reject",
        json={"reason_code": "AC04", "reason": "the account is closed"},
        headers=creditor,
    )
    assert refused.status_code == 200, refused.text
    assert refused.json()["status"] == "RJCR" and refused.json()["status_reason_code"] == "AC04"
    same = await http.post(
        f"/v1/investigations/{cancellation_id}/reject",
        json={"reason_code": "AC04", "reason": "the account is closed"},
        headers=creditor,
    )
    assert same.status_code == 200 and same.json() == refused.json()
    changed = await http.post(
        f"/v1/investigations/{cancellation_id}/reject", json={"reason_code": "LEGL"}, headers=creditor
    )
    assert changed.status_code == 409
    assert cancellation_id not in {
        i["cancellation_id"] for i in (await http.get("/v1/investigations", headers=creditor)).json()["items"]
    }

    async with sessions() as session:
        payment = await session.get(Payment, uuid.UUID(payment_id))
        assert payment is not None
        forwarded = forwarding_uetr(payment)
    seen = (await http.get(f"/v1/track/{forwarded}", headers=creditor)).json()["events"]
    assert [e["state"] for e in seen][-2:] == ["COMPLETED", "CANCELLATION_REQUESTED"]

    answer = (await _recall(http, credentials, payment_id)).json()
    assert (
        answer["status"] == "RJCR" and answer["reason"] == "AC04" and answer["reason_detail"] == "the account is closed"
    )
    told = await _told(sessions, payment_id)
    assert ("SBININBB", "cancellation.requested") in told and ("EBILAEAD", "cancellation.rejected") in told
    async with sessions() as session:
        tokens = await session.scalar(select(Payment.status).where(Payment.id == uuid.UUID(payment_id)))
    assert tokens == "COMPLETED"  # a refused recall changes nothing


async def test_a_payment_that_ended_unsettled_cannot_be_recalled(http, credentials, e2e_id):
    bank = auth(credentials["banks"]["EBILAEAD"])
    accepted = await http.post("/v1/payments", json=payment_body(e2e_id, creditor_name=SANCTIONED), headers=bank)
    payment_id = accepted.json()["payment_id"]
    await wait_for_status(http, payment_id, bank, {"REJECTED"})
    answer = await _recall(http, credentials, payment_id)
    assert answer.status_code == 200
    assert answer.json()["status"] == "RJCR" and answer.json()["reason"] == "ARJR"
    assert answer.json()["payment_status"] == "REJECTED"


async def test_only_the_debtor_agent_recalls_and_bad_requests_change_nothing(http, credentials, sessions, e2e_id):
    payment_id = await _awaiting_gross(http, credentials, e2e_id)
    assert (await _recall(http, credentials, payment_id, bic="SBININBB")).status_code == 404
    assert (await _recall(http, credentials, str(uuid.uuid4()))).status_code == 404
    assert (await _recall(http, credentials, payment_id, reason="NOPE")).status_code in (400, 422)
    assert (await _recall(http, credentials, payment_id, additional_info="x" * 106)).status_code in (400, 422)
    settlement_agent = await http.post(
        "/v1/cancellations",
        json={"payment_id": payment_id, "reason": "DUPL"},
        headers=auth(credentials["settlement_agent"]),
    )
    assert settlement_agent.status_code == 403
    async with sessions() as session:
        filed = await session.scalar(
            select(func.count()).select_from(Cancellation).where(Cancellation.payment_id == uuid.UUID(payment_id))
        )
    assert filed == 0
    bank_key = auth(credentials["banks"]["EBILAEAD"])
    assert (await http.get(f"/v1/payments/{payment_id}", headers=bank_key)).json()["status"] == "AWAITING_SETTLEMENT"


def _camt029(body: bytes) -> dict:
    """The camt.029, validated against its XSD, as the fields a debtor agent reads."""
    doc = etree.fromstring(body)
    schema = load_schema("camt.029.001.14.xsd")
    assert schema.validate(doc), schema.error_log
    n = {"c": "urn:iso:std:iso:20022:tech:xsd:camt.029.001.14"}
    tx = "c:RsltnOfInvstgtn/c:CxlDtls/c:TxInfAndSts/"
    return {
        "to": doc.findtext("c:RsltnOfInvstgtn/c:Assgnmt/c:Assgne/c:Agt/c:FinInstnId/c:BICFI", namespaces=n),
        "case": doc.findtext("c:RsltnOfInvstgtn/c:RslvdCase/c:Id", namespaces=n),
        "status": doc.findtext("c:RsltnOfInvstgtn/c:Sts/c:Conf", namespaces=n),
        "tx_status": doc.findtext(tx + "c:TxCxlSts", namespaces=n),
        "e2e": doc.findtext(tx + "c:OrgnlEndToEndId", namespaces=n),
        "uetr": doc.findtext(tx + "c:OrgnlUETR", namespaces=n),
        "reason": doc.findtext(tx + "c:CxlStsRsnInf/c:Rsn/c:Cd", namespaces=n),
    }


def _camt056(case_id: str, *, uetr=None, e2e=None, reason="DUPL", assigner="EBILAEAD") -> bytes:
    return build_camt056(
        RecallRequest(
            case_id=case_id,
            created_at=datetime.now(UTC),
            assigner_bic=assigner,
            assignee_bic="DLTRAEAD",
            reason_code=reason,
            additional_info=None,
            uetr=uetr,
            end_to_end_id=e2e,
        )
    )


async def test_a_camt056_is_answered_with_a_camt029(http, credentials, sessions, e2e_id):
    bank_key = credentials["banks"]["EBILAEAD"]
    body = build_pacs008(
        [pacs008_spec(e2e_id, amount="900.00")], message_id=f"M-{e2e_id}", instructing_agent_bic="EBILAEAD"
    )
    accepted = await http.post("/v1/payments", content=body, headers={**auth(bank_key), **XML})
    assert accepted.status_code == 202, accepted.text
    payment_id = accepted.json()[0]["payment_id"]
    await wait_for_status(http, payment_id, auth(bank_key), {"AWAITING_SETTLEMENT"})
    async with sessions() as session:
        uetr = await session.scalar(select(Payment.uetr).where(Payment.id == uuid.UUID(payment_id)))
    assert uetr is not None

    # Another bank's assigner, a reason DelTran does not handle, a payment not there: refused.
    forged = await http.post(
        "/v1/cancellations", content=_camt056("C-1", e2e=e2e_id, assigner="SBININBB"), headers={**auth(bank_key), **XML}
    )
    assert forged.status_code == 403
    odd = await http.post(
        "/v1/cancellations", content=_camt056("C-2", e2e=e2e_id, reason="NARR"), headers={**auth(bank_key), **XML}
    )
    assert odd.status_code == 422
    missing = await http.post(
        "/v1/cancellations", content=_camt056("C-3", e2e="E2E-NOT-THERE"), headers={**auth(bank_key), **XML}
    )
    assert missing.status_code == 404
    garbage = await http.post("/v1/cancellations", content=b"<Document/>", headers={**auth(bank_key), **XML})
    assert garbage.status_code == 400

    answered = await http.post(
        "/v1/cancellations", content=_camt056("CASE-42", uetr=uetr, e2e=e2e_id), headers={**auth(bank_key), **XML}
    )
    assert answered.status_code == 200, answered.text
    assert answered.headers["content-type"].startswith("application/xml")
    resolution = _camt029(answered.content)
    assert resolution == {
        "to": "EBILAEAD", "case": "CASE-42", "status": "CNCL", "tx_status": "ACCR", "e2e": e2e_id,
        "uetr": str(uetr), "reason": None,
    }  # fmt: skip
    assert (await http.get(f"/v1/payments/{payment_id}", headers=auth(bank_key))).json()["status"] == "CANCELLED"
    # The tracker shows the recall (camt.056, its case) and its answer (camt.029).
    timeline = (await http.get(f"/v1/track/{uetr}", headers=auth(bank_key))).json()["events"]
    assert [(e["state"], e["message_type"]) for e in timeline][-2:] == [
        ("CANCELLATION_REQUESTED", "camt.056.001.12"),
        ("CANCELLED", "camt.029.001.14"),
    ]
    assert timeline[-2]["message_id"] == "CASE-42"


async def test_a_payment_whose_workflow_was_ended_by_hand_is_refused_not_retried(
    http, credentials, sessions, temporal_env, e2e_id
):
    payment_id = await _awaiting_gross(http, credentials, e2e_id)
    async with sessions() as session:
        workflow_id = await session.scalar(select(Payment.workflow_id).where(Payment.id == uuid.UUID(payment_id)))
    await temporal_env.client.get_workflow_handle(workflow_id).terminate(reason="ops, by hand (test)")
    refused = await _recall(http, credentials, payment_id)
    assert refused.status_code == 409 and refused.json()["type"].endswith("workflow-ended"), refused.text
    async with sessions() as session:
        filed = await session.scalar(
            select(func.count()).select_from(Cancellation).where(Cancellation.payment_id == uuid.UUID(payment_id))
        )
    assert filed == 0


async def _money_broken(sessions) -> list[str]:
    """The auditor's money invariants (supply = booked fiat less paid out, no balance below
    zero, one token per settled obligation, every booked entry accounted for…) that fail."""
    async with sessions() as session:
        return [f"{name}: {row[0]}" for name, query in INVARIANTS.items() for row in await session.execute(text(query))]


async def test_recalls_racing_the_window_close_each_land_on_one_side_of_it(http, credentials, sessions, worker):
    """Recalls sent while the window closes: each net obligation is either released and
    out of the netting (CNCL) or netted and left to its creditor agent (PDCR) — never
    both, never neither — and the money invariants hold throughout."""
    async with sessions() as session, session.begin():
        await ensure_open_window(session, "EUR")
    payer, payee = "DEUTDEFF", "BNPAFRPP"
    payer_key = auth(credentials["banks"][payer])
    tag = uuid.uuid4().hex[:8]
    accepted = await asyncio.gather(
        *(
            http.post(
                "/v1/payments",
                json=net_payment(f"RACE{tag}-{i}", payer, payee, f"{100 + i}.00", "EUR"),
                headers=payer_key,
            )
            for i in range(8)
        )
    )
    ids = [r.json()["payment_id"] for r in accepted]
    for payment_id in ids:
        assert (await wait_for_status(http, payment_id, payer_key, {"AWAITING_SETTLEMENT"}))["obligation"][
            "settlement_mode"
        ] == "NET"

    admin = auth(credentials["admin"])
    close = asyncio.create_task(http.post("/v1/clearing/windows/close?currency=EUR", headers=admin))

    async def recall_after(delay_s: float, payment_id: str):
        await asyncio.sleep(delay_s)  # spread around the close: some before its cut-off, some after
        return await _recall(http, credentials, payment_id, bic=payer)

    answers = await asyncio.gather(*(recall_after(i * 0.03, p) for i, p in enumerate(ids)))
    closed = await close
    assert closed.status_code == 202, closed.text
    window = closed.json()
    assert {a.status_code for a in answers} == {200}, [a.text for a in answers]

    async with sessions() as session:
        obligations = {
            str(o.payment_id): o
            for o in await session.scalars(
                select(Obligation).where(Obligation.payment_id.in_([uuid.UUID(p) for p in ids]))
            )
        }
        netted = await session.scalar(
            select(func.coalesce(func.sum(Obligation.amount), 0)).where(
                Obligation.clearing_window_id == uuid.UUID(window["id"]), Obligation.status != "RELEASED"
            )
        )
    pending = []
    for payment_id, answer in zip(ids, answers, strict=True):
        ob = obligations[payment_id]
        if answer.json()["status"] == "CNCL":
            assert ob.status == "RELEASED" and answer.json()["payment_status"] == "CANCELLED"
        else:
            assert answer.json()["status"] == "PDCR" and ob.status == "PENDING"
            assert str(ob.clearing_window_id) == window["id"]  # netted by the close it lost to
            pending.append(payment_id)
    assert Decimal(window["gross_amount"]) == netted  # the netting counted exactly the ones not cancelled
    assert not await _money_broken(sessions)

    for instruction in window["instructions"]:
        await fund(http, credentials, instruction, "EUR")
    for payment_id in pending:
        await wait_for_status(http, payment_id, payer_key, {"COMPLETED"}, timeout_s=60)
    assert not await _money_broken(sessions)
