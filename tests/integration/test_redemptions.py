"""Redemptions on the real stack: a bank's tokens reserved, paid out by the settlement
agent (a DBIT camt.054 carrying the payout's reference), burned — or released when the
agent refuses or the deadline passes; supply = booked fiat less paid out after each."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from lxml import etree
from sqlalchemy import func, select, update

from deltran.db.tables import Redemption
from deltran.iso20022.camt054 import BookingSpec, build_camt054
from deltran.iso20022.xml_safety import load_schema
from deltran.reconciliation import backing_by_currency
from tests.integration.test_accounts import read_statement
from tests.integration.test_events_and_webhooks import feed_until
from tests.support.payments import auth, pay_between_new_banks
from worker.sweeper import settle_overdue_redemptions

ACCOUNT = {"account": "30001234567"}
NO_PAYOUT = "RDM-" + "0" * 28  # a reference of the right form that no payout has


def _payout_camt054(reference: str, amount: str, currency: str = "AED") -> bytes:
    entry = f"P{uuid.uuid4().hex[:20]}"
    booking = BookingSpec(
        end_to_end_id=reference, amount=Decimal(amount), currency=currency, entry_reference=entry, credit_debit="DBIT"
    )
    return build_camt054([booking], message_id=f"MSG-{entry}")


async def _redeem(http, bank: dict, amount: str, key: str | None = None, **body) -> object:
    return await http.post(
        "/v1/redemptions",
        json={"currency": "AED", "amount": amount, "payout_account": ACCOUNT, **body},
        headers={**bank, "Idempotency-Key": key or uuid.uuid4().hex},
    )


async def _wait(http, headers: dict, redemption_id: str, statuses: set[str], timeout_s: float = 30) -> dict:
    deadline = time.monotonic() + timeout_s
    body: dict = {}
    while time.monotonic() < deadline:
        body = (await http.get(f"/v1/redemptions/{redemption_id}", headers=headers)).json()
        if body["status"] in statuses:
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"redemption never reached {statuses}: {body}")


async def _balances(http, bank: dict) -> dict:
    [aed] = (await http.get("/v1/accounts", headers=bank)).json()["accounts"]
    return {k: aed[k] for k in ("fiat", "tokens", "reserved", "paid_out")}


async def _books_balance(sessions) -> None:
    """Supply (tokens held and reserved) = booked fiat less paid out, and every tier agrees."""
    async with sessions() as session:
        aed = (await backing_by_currency(session))["AED"]
    assert aed.breaks() == [], aed


@pytest.fixture
async def holder(http, credentials):
    """A bank holding 1,234.50 AED of tokens it received (it never booked fiat itself)."""
    return await pay_between_new_banks(http, credentials, "1234.50")


async def test_a_booked_payout_burns_the_reserved_tokens(http, credentials, sessions, holder):
    bank, agent = holder.creditor, auth(credentials["settlement_agent"])
    accepted = await _redeem(http, bank, "500.00", key="redeem-1")
    assert accepted.status_code == 202, accepted.text
    redemption = accepted.json()
    assert redemption["reference"].startswith("RDM-") and redemption["status"] == "RESERVED"
    assert await _balances(http, bank) == {"fiat": "0.00", "tokens": "734.50", "reserved": "500.00", "paid_out": "0.00"}
    await _books_balance(sessions)

    # The same request again is the same redemption; the same key with other content is refused.
    again = await _redeem(http, bank, "500.00", key="redeem-1")
    assert (again.status_code, again.json()["redemption_id"]) == (200, redemption["redemption_id"])
    conflict = await _redeem(http, bank, "400.00", key="redeem-1")
    assert conflict.status_code == 409, conflict.text

    instructed = await _wait(http, bank, redemption["redemption_id"], {"PAYOUT_INSTRUCTED"})
    payouts = (await http.get("/v1/payouts", headers=agent)).json()["items"]
    [payout] = [p for p in payouts if p["reference"] == redemption["reference"]]
    assert payout == {
        "reference": redemption["reference"], "bic": holder.creditor_bic, "currency": "AED", "amount": "500.00",
        "kind": "redemption", "status": "PAYOUT_INSTRUCTED", "payout_account": ACCOUNT,
        "deadline": instructed["deadline"],
    }  # fmt: skip

    booked = await http.post(
        "/v1/notifications/camt054",
        content=_payout_camt054(redemption["reference"], "500.00"),
        headers={**agent, "Content-Type": "application/xml"},
    )
    assert booked.status_code == 200 and booked.json()["entries"][0]["outcome"] == "MATCHED", booked.text
    await _wait(http, bank, redemption["redemption_id"], {"COMPLETED"})
    assert await _balances(http, bank) == {"fiat": "0.00", "tokens": "734.50", "reserved": "0.00", "paid_out": "500.00"}
    await _books_balance(sessions)
    # A second booking of the same payout is an exception, not a second burn.
    twice = await http.post(
        "/v1/notifications/camt054",
        content=_payout_camt054(redemption["reference"], "500.00"),
        headers={**agent, "Content-Type": "application/xml"},
    )
    assert twice.json()["entries"][0]["outcome"] == "PAYOUT_NOT_AWAITING"
    assert (await _balances(http, bank))["paid_out"] == "500.00"
    told = [e["type"] for e in await feed_until(http, bank, 6)]  # 3 of its payment, 3 of the redemption
    assert [t for t in told if t.startswith("redemption.")] == [
        "redemption.reserved",
        "redemption.payout_instructed",
        "redemption.completed",
    ]


async def test_more_than_the_spendable_tokens_is_refused_and_reserves_nothing(http, sessions, holder):
    bank = holder.creditor
    before = await _balances(http, bank)
    refused = await _redeem(http, bank, "1234.51")
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "amount", refused.text
    assert await _balances(http, bank) == before
    async with sessions() as session:
        count = await session.scalar(
            select(func.count()).select_from(Redemption).where(Redemption.amount == Decimal("1234.51"))
        )
    assert count == 0


async def test_two_redemptions_at_once_cannot_both_spend_the_same_tokens(http, sessions, holder):
    bank = holder.creditor
    first, second = await asyncio.gather(_redeem(http, bank, "800.00"), _redeem(http, bank, "800.00"))
    assert sorted([first.status_code, second.status_code]) == [202, 422], (first.text, second.text)
    assert await _balances(http, bank) == {"fiat": "0.00", "tokens": "434.50", "reserved": "800.00", "paid_out": "0.00"}
    await _books_balance(sessions)


async def test_a_refused_payout_releases_the_tokens(http, credentials, sessions, holder):
    bank, agent = holder.creditor, auth(credentials["settlement_agent"])
    redemption = (await _redeem(http, bank, "200.00")).json()
    await _wait(http, bank, redemption["redemption_id"], {"PAYOUT_INSTRUCTED"})
    refused = await http.post(
        f"/v1/payouts/{redemption['reference']}/refusal", json={"reason": "account closed"}, headers=agent
    )
    assert refused.status_code == 200 and refused.json()["status"] == "RELEASED", refused.text
    assert "account closed" in refused.json()["release_reason"]
    assert await _balances(http, bank) == {"fiat": "0.00", "tokens": "1234.50", "reserved": "0.00", "paid_out": "0.00"}
    # Its workflow ends; a payout booked anyway is an exception to reverse, and burns nothing.
    late = await http.post(
        "/v1/notifications/camt054",
        content=_payout_camt054(redemption["reference"], "200.00"),
        headers={**agent, "Content-Type": "application/xml"},
    )
    assert late.json()["entries"][0]["outcome"] == "PAYOUT_NOT_AWAITING"
    assert (await _balances(http, bank))["tokens"] == "1234.50"
    await _books_balance(sessions)
    again = await http.post(f"/v1/payouts/{redemption['reference']}/refusal", json={"reason": "x"}, headers=agent)
    assert again.status_code == 200 and again.json()["status"] == "RELEASED"


async def test_a_payout_not_booked_by_its_deadline_releases_the_tokens(http, sessions, settings, monkeypatch, holder):
    monkeypatch.setattr(settings, "redemption_deadline_s", 2)
    bank = holder.creditor
    redemption = (await _redeem(http, bank, "100.00")).json()
    released = await _wait(http, bank, redemption["redemption_id"], {"RELEASED"}, timeout_s=30)
    assert released["release_reason"] == "no payout booked by its deadline"
    assert (await _balances(http, bank))["tokens"] == "1234.50"
    await _books_balance(sessions)


@pytest.mark.parametrize(
    ("who", "method", "path", "body", "status"),
    [
        ("bank", "POST", "/v1/redemptions", {"currency": "AED", "amount": "1.00"}, 422),  # no payout account
        ("bank", "POST", "/v1/redemptions", {"currency": "AED", "amount": "0", "payout_account": ACCOUNT}, 422),
        ("bank", "POST", "/v1/redemptions", {"currency": "AED", "amount": "1.001", "payout_account": ACCOUNT}, 422),
        ("bank", "POST", "/v1/redemptions", {"currency": "GBP", "amount": "1.00", "payout_account": ACCOUNT}, 422),
        (
            "bank",
            "POST",
            "/v1/redemptions",
            {"currency": "AED", "amount": "1.00", "payout_account": {"iban": "AE00"}},
            422,
        ),
        (
            "settlement_agent",
            "POST",
            "/v1/redemptions",
            {"currency": "AED", "amount": "1.00", "payout_account": ACCOUNT},
            403,
        ),
        ("bank", "GET", "/v1/payouts", None, 403),
        ("settlement_agent", "POST", f"/v1/payouts/{NO_PAYOUT}/refusal", {"reason": "x"}, 404),
        ("bank", "POST", f"/v1/payouts/{NO_PAYOUT}/refusal", {"reason": "x"}, 403),
        ("settlement_agent", "POST", "/v1/payouts/RDM-NOPE/refusal", {"reason": "x"}, 422),
        ("bank", "GET", "/v1/redemptions/00000000-0000-4000-8000-000000000000", None, 404),
        ("settlement_agent", "POST", "/v1/payouts/RDM-%00/refusal", {"reason": "x"}, 422),
        (
            "settlement_agent",
            "POST",
            f"/v1/payouts/{NO_PAYOUT}/refusal",
            {"reason": "a\u0000b"},
            422,
        ),
    ],
)
async def test_a_bad_redemption_call_is_refused_clearly(http, credentials, who, method, path, body, status):
    key = credentials["banks"]["SBININBB"] if who == "bank" else credentials[who]
    headers = {**auth(key), "Idempotency-Key": uuid.uuid4().hex}
    response = await http.request(method, path, json=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"


async def test_a_redemption_needs_an_idempotency_key(http, credentials):
    body = {"currency": "AED", "amount": "1.00", "payout_account": ACCOUNT}
    response = await http.post("/v1/redemptions", json=body, headers=auth(credentials["banks"]["SBININBB"]))
    assert response.status_code == 422 and "Idempotency-Key" in response.text


async def test_a_payout_booked_with_another_amount_is_never_released(
    http, credentials, sessions, settings, monkeypatch, holder
):
    """The agent paid, but not the amount instructed: the money left, so the tokens stay
    reserved (to settle by hand) — neither the deadline nor a refusal gives them back."""
    monkeypatch.setattr(settings, "redemption_deadline_s", 2)
    bank, agent = holder.creditor, auth(credentials["settlement_agent"])
    redemption = (await _redeem(http, bank, "300.00")).json()
    await _wait(http, bank, redemption["redemption_id"], {"PAYOUT_INSTRUCTED"})
    booked = await http.post(
        "/v1/notifications/camt054",
        content=_payout_camt054(redemption["reference"], "299.99"),
        headers={**agent, "Content-Type": "application/xml"},
    )
    assert booked.json()["entries"][0]["outcome"] == "AMOUNT_MISMATCH", booked.text
    await asyncio.sleep(4)  # past its deadline
    state = (await http.get(f"/v1/redemptions/{redemption['redemption_id']}", headers=bank)).json()
    assert state["status"] == "PAYOUT_INSTRUCTED"
    refused = await http.post(f"/v1/payouts/{redemption['reference']}/refusal", json={"reason": "x"}, headers=agent)
    assert refused.status_code == 409, refused.text
    assert (await _balances(http, bank))["reserved"] == "300.00"
    listed = (await http.get("/v1/payouts", headers=agent)).json()["items"]
    assert redemption["reference"] in {p["reference"] for p in listed}


async def test_a_statement_shows_the_reservation_under_the_payout_s_reference(http, holder):
    bank = holder.creditor
    redemption = (await _redeem(http, bank, "50.00")).json()
    statement = await read_statement(http, bank, datetime.now(UTC), **{"from": holder.before.isoformat()})
    [reserved] = [p for p in statement["postings"] if p["kind"] == "reserved"]
    assert (reserved["direction"], reserved["amount"], reserved["end_to_end_id"]) == (
        "DBIT",
        "50.00",
        redemption["reference"],
    )
    xml = await http.get(
        "/v1/accounts/AED/statement",
        params={"from": statement["from"], "to": statement["to"]},
        headers={**bank, "Accept": "application/xml"},
    )
    load_schema("camt.053.001.08").assertValid(etree.fromstring(xml.content))


async def test_the_sweeper_finishes_what_a_dead_workflow_left(http, credentials, sessions, temporal_env, holder):
    """A redemption whose workflow was terminated: its booked payout is still burned, and
    one past its deadline with nothing booked is still released — by the sweeper."""
    bank, agent = holder.creditor, auth(credentials["settlement_agent"])
    booked, overdue = (await _redeem(http, bank, "40.00")).json(), (await _redeem(http, bank, "60.00")).json()
    for redemption in (booked, overdue):
        await _wait(http, bank, redemption["redemption_id"], {"PAYOUT_INSTRUCTED"})
        await temporal_env.client.get_workflow_handle(f"redemption-{redemption['redemption_id']}").terminate("test")
    matched = await http.post(
        "/v1/notifications/camt054",
        content=_payout_camt054(booked["reference"], "40.00"),
        headers={**agent, "Content-Type": "application/xml"},
    )
    assert matched.json()["entries"][0]["outcome"] == "MATCHED"
    async with sessions() as session, session.begin():
        await session.execute(
            update(Redemption)
            .where(Redemption.id == uuid.UUID(overdue["redemption_id"]))
            .values(deadline=func.now() - timedelta(hours=1))
        )
    assert await settle_overdue_redemptions(sessions, grace=timedelta(0)) >= 2
    assert (await _wait(http, bank, booked["redemption_id"], {"COMPLETED"}))["status"] == "COMPLETED"
    assert (await _wait(http, bank, overdue["redemption_id"], {"RELEASED"}))["release_reason"].startswith("past its")
    assert await _balances(http, bank) == {"fiat": "0.00", "tokens": "1194.50", "reserved": "0.00", "paid_out": "40.00"}
    await _books_balance(sessions)
