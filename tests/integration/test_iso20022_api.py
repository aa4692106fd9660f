"""The API as a bank gateway: pacs.008 in, camt.054 in, pacs.002 out, over HTTP."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from deltran.db.tables import Payment
from deltran.iso20022.pacs002 import parse_pacs002_status
from deltran.iso20022.pacs008 import Pacs008Spec, build_pacs008
from tests.support.payments import auth, camt054_for, wait_for_status
from tests.support.payments import pacs008_spec as spec

XML = {"Content-Type": "application/xml"}


def pacs008(*specs: Pacs008Spec, app_header: bool = False, instructing: str = "EBILAEAD") -> bytes:
    return build_pacs008(
        list(specs),
        message_id=f"MSG-{uuid.uuid4().hex[:20]}",
        instructing_agent_bic=instructing,
        with_app_header=app_header,
    )


async def test_pacs008_to_camt054_to_pacs002(http, credentials, e2e_id):
    bank = auth(credentials["banks"]["EBILAEAD"])
    e2e_other = f"{e2e_id}-2"
    uetr = str(uuid.uuid4())
    body = pacs008(spec(e2e_id, uetr=uetr), spec(e2e_other, amount="1500.25"), app_header=True)
    accepted = await http.post("/v1/payments", content=body, headers={**bank, **XML})
    assert accepted.status_code == 202, accepted.text
    listed = accepted.json()
    assert [t["end_to_end_id"] for t in listed] == [e2e_id, e2e_other]
    payment_id = listed[0]["payment_id"]

    await wait_for_status(http, payment_id, bank, {"AWAITING_SETTLEMENT"})
    pending = await http.get(f"/v1/payments/{payment_id}/pacs002", headers=bank)
    assert pending.headers["content-type"].startswith("application/xml")
    report = parse_pacs002_status(pending.content)
    assert report["status"] == "ACSP" and report["original_uetr"] == uetr

    booked = await http.post(
        "/v1/notifications/camt054",
        content=camt054_for(e2e_id, entry_reference=f"NTRY-{e2e_id}"),
        headers={**auth(credentials["settlement_agent"]), **XML},
    )
    assert booked.json()["entries"][0]["matched"] is True
    await wait_for_status(http, payment_id, bank, {"COMPLETED"})

    # Content negotiation: XML when asked for, JSON otherwise.
    as_xml = await http.get(f"/v1/payments/{payment_id}", headers={**bank, "Accept": "application/xml"})
    assert parse_pacs002_status(as_xml.content)["status"] == "ACSC"
    as_json = await http.get(f"/v1/payments/{payment_id}", headers={**bank, "Accept": "application/json"})
    assert as_json.json()["status"] == "COMPLETED"

    # The same message again is the same payments, nothing new.
    again = await http.post("/v1/payments", content=body, headers={**bank, **XML})
    assert again.status_code == 202 and again.json()[0]["payment_id"] == payment_id


async def test_rejected_payment_reports_rjct_with_its_reason(http, credentials, e2e_id):
    bank = auth(credentials["banks"]["EBILAEAD"])
    accepted = await http.post(
        "/v1/payments",
        content=pacs008(spec(e2e_id, creditor_name="Shadow Trading LLC")),
        headers={**bank, **XML},
    )
    payment_id = accepted.json()[0]["payment_id"]
    await wait_for_status(http, payment_id, bank, {"REJECTED", "AWAITING_SETTLEMENT"})
    report = parse_pacs002_status((await http.get(f"/v1/payments/{payment_id}/pacs002", headers=bank)).content)
    assert report == {**report, "status": "RJCT", "reason_code": "RR04", "original_end_to_end_id": e2e_id}


async def test_a_message_with_one_invalid_transaction_is_rejected_whole(http, credentials, sessions, e2e_id):
    bank = auth(credentials["banks"]["EBILAEAD"])
    good, bad = spec(e2e_id), spec(f"{e2e_id}-B", amount="10.001")
    response = await http.post("/v1/payments", content=pacs008(good, bad), headers={**bank, **XML})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    errors = response.json()["errors"]
    assert errors and all(e["transaction"] == 1 for e in errors)
    async with sessions() as session:
        count = await session.scalar(
            select(func.count()).select_from(Payment).where(Payment.end_to_end_id.like(f"{e2e_id}%"))
        )
    assert count == 0


async def test_a_bank_cannot_instruct_as_another(http, credentials, sessions, e2e_id):
    as_other = await http.post(
        "/v1/payments",
        content=pacs008(spec(e2e_id), instructing="EBILAEAD"),
        headers={**auth(credentials["banks"]["HDFCINBB"]), **XML},
    )
    assert as_other.status_code == 403
    assert {e["field"].split("/")[-1] for e in as_other.json()["errors"]} >= {"DbtrAgt"}
    async with sessions() as session:
        assert (
            await session.scalar(select(func.count()).select_from(Payment).where(Payment.end_to_end_id == e2e_id)) == 0
        )


async def test_repeated_end_to_end_id_within_a_message_is_400(http, credentials, e2e_id):
    bank = auth(credentials["banks"]["EBILAEAD"])
    response = await http.post(
        "/v1/payments",
        content=pacs008(spec(e2e_id), spec(e2e_id, amount="5.00")),
        headers={**bank, **XML},
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["transaction"] == 1


async def test_a_uetr_identifies_one_payment_only(http, credentials, e2e_id):
    bank = auth(credentials["banks"]["EBILAEAD"])
    uetr = str(uuid.uuid4())
    first = await http.post("/v1/payments", content=pacs008(spec(e2e_id, uetr=uetr)), headers={**bank, **XML})
    assert first.status_code == 202
    other = await http.post("/v1/payments", content=pacs008(spec(f"{e2e_id}-U", uetr=uetr)), headers={**bank, **XML})
    assert other.status_code == 409 and other.json()["errors"][0]["field"] == "uetr"
