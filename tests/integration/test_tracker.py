"""The tracker over HTTP: `GET /v1/track/{uetr}` gives each agent the payment's timeline
in its own references, and nothing to anyone else."""

from __future__ import annotations

import uuid

from lxml import etree

from tests.support.auditor import SANCTIONED
from tests.support.payments import (
    auth,
    camt054_for,
    complete_gross_payment,
    payment_body,
    screening_row,
    wait_for_status,
)


async def _track(http, key: str, uetr: str):
    return await http.get(f"/v1/track/{uetr}", headers=auth(key))


def _timeline(response) -> list[tuple[str, str | None]]:
    assert response.status_code == 200, response.text
    events = response.json()["events"]
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)
    return [(e["state"], e["message_type"]) for e in events]


async def test_both_agents_follow_a_payment_by_its_uetr(http, credentials, e2e_id):
    debtor_key, creditor_key = credentials["banks"]["EBILAEAD"], credentials["banks"]["SBININBB"]
    uetr = str(uuid.uuid4())
    accepted = await http.post(
        "/v1/payments", json={**payment_body(e2e_id), "uetr": uetr, "urgent": True}, headers=auth(debtor_key)
    )
    assert accepted.status_code == 202, accepted.text
    payment_id = accepted.json()["payment_id"]
    await wait_for_status(http, payment_id, auth(debtor_key), {"AWAITING_SETTLEMENT"})
    assert _timeline(await _track(http, debtor_key, uetr)) == [
        ("SCREENING", None),  # sent as JSON: no ISO message
        ("AWAITING_SETTLEMENT", "pacs.002.001.10"),
    ]
    camt054 = camt054_for(e2e_id, entry_reference=f"TRK-{e2e_id}")
    booked = await http.post(
        "/v1/notifications/camt054",
        content=camt054,
        headers={**auth(credentials["settlement_agent"]), "Content-Type": "application/xml"},
    )
    assert booked.status_code == 200, booked.text
    await wait_for_status(http, payment_id, auth(debtor_key), {"COMPLETED"})

    sent = await _track(http, debtor_key, uetr)
    assert (sent.json()["payment_id"], sent.json()["status"]) == (payment_id, "COMPLETED")
    assert _timeline(sent) == [
        ("SCREENING", None),
        ("AWAITING_SETTLEMENT", "pacs.002.001.10"),
        ("BOOKED", "camt.054.001.08"),
        ("SETTLED", None),
        ("COMPLETED", "pacs.002.001.10"),
    ]
    camt054_msg_id = etree.fromstring(camt054).findtext(".//{*}GrpHdr/{*}MsgId")
    assert sent.json()["events"][2]["message_id"] == camt054_msg_id

    received = await _track(http, creditor_key, uetr)
    assert _timeline(received) == [
        ("AWAITING_SETTLEMENT", "pacs.002.001.10"),
        ("BOOKED", "camt.054.001.08"),
        ("SETTLED", None),
        ("COMPLETED", "pacs.008.001.08"),  # the payment as DelTran forwarded it
    ]
    forwarded = await http.get(f"/v1/payments/{payment_id}/pacs008", headers=auth(creditor_key))
    assert received.json()["events"][-1]["message_id"] == etree.fromstring(forwarded.content).findtext(
        ".//{*}GrpHdr/{*}MsgId"
    )
    other = await _track(http, credentials["banks"]["CITIUS33"], uetr)
    assert other.status_code == 404


async def test_the_creditor_agent_tracks_by_the_uetr_it_was_forwarded(http, credentials):
    payment_id = await complete_gross_payment(http, credentials, "321.00", prefix="TRK")  # sent without a UETR
    creditor_key = credentials["banks"]["SBININBB"]
    forwarded = await http.get(f"/v1/payments/{payment_id}/pacs008", headers=auth(creditor_key))
    uetr = etree.fromstring(forwarded.content).findtext(".//{*}PmtId/{*}UETR")
    received = await _track(http, creditor_key, uetr)
    assert received.json()["payment_id"] == payment_id and _timeline(received)[-1] == ("COMPLETED", "pacs.008.001.08")
    # The debtor agent never had that UETR: it is not a reference of its payment.
    assert (await _track(http, credentials["banks"]["EBILAEAD"], uetr)).status_code == 404


async def test_a_rejected_payment_is_the_senders_only(http, credentials, e2e_id):
    debtor_key = credentials["banks"]["EBILAEAD"]
    uetr = str(uuid.uuid4())
    body = {**payment_body(e2e_id, creditor_name=SANCTIONED), "uetr": uetr}
    accepted = await http.post("/v1/payments", json=body, headers=auth(debtor_key))
    assert accepted.status_code == 202, accepted.text
    await wait_for_status(http, accepted.json()["payment_id"], auth(debtor_key), {"REJECTED"})
    assert _timeline(await _track(http, debtor_key, uetr)) == [("SCREENING", None), ("REJECTED", "pacs.002.001.10")]
    # No tipping off: the creditor agent was never told of it.
    assert (await _track(http, credentials["banks"]["SBININBB"], uetr)).status_code == 404


async def test_who_may_track_and_what(http, credentials):
    unknown = str(uuid.uuid4())
    assert (await _track(http, credentials["banks"]["EBILAEAD"], unknown)).status_code == 404
    assert (await _track(http, credentials["settlement_agent"], unknown)).status_code == 403
    assert (await _track(http, credentials["banks"]["EBILAEAD"], "not-a-uetr")).status_code == 422


async def test_a_payment_still_screening_is_unknown_to_its_creditor_agent(http, credentials, sessions, e2e_id):
    uetr = uuid.uuid4()
    async with sessions() as session, session.begin():  # recorded, its workflow not started: it stays SCREENING
        session.add(screening_row(e2e_id, "75.00", f"payment-test-{e2e_id}", uetr=uetr))
    assert _timeline(await _track(http, credentials["banks"]["EBILAEAD"], str(uetr))) == [("SCREENING", None)]
    assert (await _track(http, credentials["banks"]["SBININBB"], str(uetr))).status_code == 404
