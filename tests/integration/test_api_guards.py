"""Authentication, authorisation and bad input: a clear 4xx, and nothing changes."""
from __future__ import annotations

from sqlalchemy import func, select

from deltran.db.tables import Camt054Message, Payment
from tests.support.payments import auth, camt054_for, payment_body


async def count(sessions, model) -> int:
    async with sessions() as session:
        return await session.scalar(select(func.count()).select_from(model))


async def test_requests_without_a_valid_key_are_401(http, e2e_id):
    assert (await http.post("/v1/payments", json=payment_body(e2e_id))).status_code == 401
    wrong = await http.post("/v1/payments", json=payment_body(e2e_id), headers=auth("not-a-key"))
    assert wrong.status_code == 401


async def test_bank_cannot_submit_as_another_bank(http, credentials, sessions, e2e_id):
    before = await count(sessions, Payment)
    response = await http.post(
        "/v1/payments", json=payment_body(e2e_id), headers=auth(credentials["banks"]["HDFCINBB"])
    )
    assert response.status_code == 403
    assert await count(sessions, Payment) == before


async def test_bank_cannot_read_other_banks_payment(http, credentials, e2e_id):
    accepted = await http.post("/v1/payments", json=payment_body(e2e_id), headers=auth(credentials["banks"]["EBILAEAD"]))
    payment_id = accepted.json()["payment_id"]
    outsider = await http.get(f"/v1/payments/{payment_id}", headers=auth(credentials["banks"]["CHASUS33"]))
    assert outsider.status_code == 404
    admin = await http.get(f"/v1/payments/{payment_id}", headers=auth(credentials["admin"]))
    assert admin.status_code == 200


async def test_only_the_settlement_agent_posts_camt054(http, credentials, sessions, e2e_id):
    before = await count(sessions, Camt054Message)
    response = await http.post(
        "/v1/notifications/camt054",
        content=camt054_for(e2e_id, entry_reference=e2e_id),
        headers={**auth(credentials["banks"]["EBILAEAD"]), "Content-Type": "application/xml"},
    )
    assert response.status_code == 403
    assert await count(sessions, Camt054Message) == before


async def test_invalid_payments_are_422_and_store_nothing(http, credentials, sessions, e2e_id):
    bank = auth(credentials["banks"]["EBILAEAD"])
    before = await count(sessions, Payment)
    bad_iban = payment_body(e2e_id)
    bad_iban["debtor"]["iban"] = "AE070331234567890123457"  # check digits broken
    too_many_decimals = payment_body(e2e_id, amount="10.001")
    float_amount = {**payment_body(e2e_id), "amount": 10.5}
    both_accounts = payment_body(e2e_id)
    both_accounts["creditor"]["iban"] = "AE070331234567890123456"
    unknown_currency = payment_body(e2e_id, currency="XXX")
    for body in (bad_iban, too_many_decimals, float_amount, both_accounts, unknown_currency):
        response = await http.post("/v1/payments", json=body, headers=bank)
        assert response.status_code == 422, (body, response.text)
    assert await count(sessions, Payment) == before


async def test_hostile_or_malformed_camt054_is_400_and_stores_nothing(http, credentials, sessions):
    agent = {**auth(credentials["settlement_agent"]), "Content-Type": "application/xml"}
    before = await count(sessions, Camt054Message)
    xxe = b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><Document>&x;</Document>'
    for body in (xxe, b"<not-closed>", b"<Document xmlns='urn:other'/>"):
        response = await http.post("/v1/notifications/camt054", content=body, headers=agent)
        assert response.status_code == 400, response.text
    wrong_type = await http.post(
        "/v1/notifications/camt054", content=b"{}", headers={**auth(credentials["settlement_agent"]), "Content-Type": "application/json"}
    )
    assert wrong_type.status_code == 415
    assert await count(sessions, Camt054Message) == before


async def test_oversized_body_is_413(http, credentials, settings):
    agent = {**auth(credentials["settlement_agent"]), "Content-Type": "application/xml"}
    response = await http.post("/v1/notifications/camt054", content=b"<a>" + b"x" * settings.max_body_bytes + b"</a>", headers=agent)
    assert response.status_code == 413


async def test_healthz_reports_both_dependencies(http):
    response = await http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "temporal": "ok"}
