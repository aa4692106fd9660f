"""What each bank is told, on the real stack: the event feed (GET /v1/events) and the
webhook deliveries — signed (Standard Webhooks), in order, each event once, to a receiver
that is down for a while and then comes back."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from sqlalchemy import text

from activities.clearing import ensure_open_window
from deltran.webhooks.signing import verify
from tests.support.auditor import SANCTIONED
from tests.support.payments import auth, camt054_for, new_bank, pay_between_new_banks, payment_body, wait_for_status
from tests.support.webhook_receiver import Receiver

PAYER_TYPES = ["payment.accepted", "payment.awaiting_settlement", "payment.settled", "payment.completed"]
PAYEE_TYPES = ["payment.awaiting_settlement", "payment.settled", "payment.credited"]


async def feed_until(http, headers: dict, count: int, params: dict | None = None) -> list[dict]:
    """The caller's events from the start until there are `count` (events are numbered a
    moment after their change commits)."""
    items: list[dict] = []
    cursor = None
    for _ in range(150):
        query = {**(params or {}), **({"cursor": cursor} if cursor else {})}
        page = await http.get("/v1/events", params=query, headers=headers)
        assert page.status_code == 200, page.text
        body = page.json()
        items += body["items"]
        cursor = body["next_cursor"]
        if len(items) >= count:
            return items
        await asyncio.sleep(0.2)
    raise AssertionError(f"{len(items)} events of {count}: {[i['type'] for i in items]}")


async def test_each_agent_is_told_of_its_payment_in_order(http, credentials):
    done = await pay_between_new_banks(http, credentials, "321.00")
    payer = await feed_until(http, done.debtor, len(PAYER_TYPES))
    payee = await feed_until(http, done.creditor, len(PAYEE_TYPES))
    assert [e["type"] for e in payer] == PAYER_TYPES
    assert [e["type"] for e in payee] == PAYEE_TYPES
    for event in payer + payee:
        assert event["data"]["payment_id"] == done.payment["payment_id"]
        assert (event["data"]["amount"], event["data"]["currency"]) == ("321.00", "AED")
    assert payer[-1]["data"]["status"] == "COMPLETED" and payee[-1]["data"]["status"] == "COMPLETED"
    assert len({e["id"] for e in payer + payee}) == len(payer) + len(payee)

    # Polling on from the last cursor: nothing new, and the cursor stays where it was.
    last = await http.get("/v1/events", headers=done.creditor)
    again = await http.get("/v1/events", params={"cursor": last.json()["next_cursor"]}, headers=done.creditor)
    assert again.json() == {"items": [], "next_cursor": last.json()["next_cursor"]}
    # Admin reads any bank's feed.
    as_admin = await feed_until(http, auth(credentials["admin"]), len(PAYEE_TYPES), {"bic": done.creditor_bic})
    assert [e["id"] for e in as_admin] == [e["id"] for e in payee]


async def test_a_rejection_is_told_to_its_sender_only(http, credentials):
    admin = auth(credentials["admin"])
    payer, payer_key = await new_bank(http, admin, "AE")
    payee, payee_key = await new_bank(http, admin, "IN")
    e2e = f"EVT-{uuid.uuid4().hex[:12]}"
    body = {**payment_body(e2e, debtor_name=SANCTIONED, debtor_bic=payer, creditor_bic=payee), "urgent": True}
    accepted = await http.post("/v1/payments", json=body, headers=payer_key)
    await wait_for_status(http, accepted.json()["payment_id"], payer_key, {"REJECTED"})
    told = await feed_until(http, payer_key, 2)
    assert [e["type"] for e in told] == ["payment.accepted", "payment.rejected"]
    assert told[1]["data"]["rejection_code"]
    await asyncio.sleep(1)  # numbered within 0.2 s: anything for the creditor would be there
    assert (await http.get("/v1/events", headers=payee_key)).json()["items"] == []


@pytest.mark.parametrize(
    ("who", "method", "params", "body", "status"),
    [
        ("bank", "PUT", {}, {"url": "ftp://hooks.example/x"}, 422),
        ("bank", "PUT", {}, {"url": "https://user:pw@hooks.example/x"}, 422),
        ("bank", "PUT", {}, {"url": "not a url"}, 422),
        ("bank", "PUT", {}, {"url": "https://hooks.example/x", "extra": 1}, 422),
        ("bank", "PUT", {"bic": "SBININBB"}, {"url": "http://127.0.0.1:9/x"}, 422),  # another bank's
        ("settlement_agent", "PUT", {}, {"url": "http://127.0.0.1:9/x"}, 403),
        ("settlement_agent", "GET", {}, None, 403),
        ("admin", "GET", {"bic": "ZZZZAEAD"}, None, 404),
        ("bank", "GET", {}, None, 404),  # EBILAEAD has none
        ("settlement_agent", "GET_EVENTS", {}, None, 403),
        ("bank", "GET_EVENTS", {"cursor": "bm90IGEgY3Vyc29y"}, None, 400),
        ("bank", "GET_EVENTS", {"limit": "0"}, None, 422),
    ],
)
async def test_a_bad_webhook_or_events_call_is_refused_clearly(http, credentials, who, method, params, body, status):
    key = credentials["banks"]["EBILAEAD"] if who == "bank" else credentials[who]
    path = "/v1/events" if method == "GET_EVENTS" else "/v1/webhook"
    verb = "GET" if method == "GET_EVENTS" else method
    response = await http.request(verb, path, params=params, json=body, headers=auth(key))
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"


async def test_a_receiver_down_for_a_while_gets_every_event_once_in_order(http, credentials, sessions):
    admin = auth(credentials["admin"])
    payer, payer_key = await new_bank(http, admin, "AE")
    payee, payee_key = await new_bank(http, admin, "IN")
    receiver = Receiver()  # not listening yet: every delivery fails and is retried
    created = await http.put("/v1/webhook", json={"url": receiver.url}, headers=payee_key)
    assert created.status_code == 200, created.text
    secret = created.json()["secret"]
    assert secret.startswith("whsec_")
    assert (await http.get("/v1/webhook", headers=payee_key)).json()["url"] == receiver.url

    payments = []
    for n in range(2):
        e2e = f"HOOK-{n}-{uuid.uuid4().hex[:10]}"
        body = {**payment_body(e2e, amount="50.00", debtor_bic=payer, creditor_bic=payee), "urgent": True}
        accepted = await http.post("/v1/payments", json=body, headers=payer_key)
        payments.append((accepted.json()["payment_id"], e2e))
    for payment_id, e2e in payments:
        await wait_for_status(http, payment_id, payer_key, {"AWAITING_SETTLEMENT"})
        booked = await http.post(
            "/v1/notifications/camt054",
            content=camt054_for(e2e, "50.00", entry_reference=f"N{uuid.uuid4().hex[:20]}"),
            headers={**auth(credentials["settlement_agent"]), "Content-Type": "application/xml"},
        )
        assert booked.status_code == 200, booked.text
        await wait_for_status(http, payment_id, payer_key, {"COMPLETED"})

    # Down: the first event is being retried, none delivered.
    for _ in range(100):
        async with sessions() as session:
            attempts = await session.scalar(
                text("SELECT max(delivery_attempts) FROM events e JOIN participants p ON p.id = e.participant_id"
                     " WHERE p.bic = :b"), {"b": payee}
            )  # fmt: skip
        if attempts and attempts >= 2:
            break
        await asyncio.sleep(0.2)
    assert attempts >= 2 and receiver.received == []

    receiver.start()
    try:
        expected = len(payments) * len(PAYEE_TYPES)
        for _ in range(200):
            if len(receiver.received) >= expected:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # nothing more may come
    finally:
        receiver.stop()
    events = []
    for headers, body in receiver.received:
        verify(secret, headers, body)  # raises on a bad signature
        event = json.loads(body)
        assert headers["webhook-id"] == event["id"]
        events.append(event)
    assert len(events) == expected and len({e["id"] for e in events}) == expected  # once each
    for payment_id, _ in payments:
        mine = [e["type"] for e in events if e["data"]["payment_id"] == payment_id]
        assert mine == PAYEE_TYPES  # in order per payment
    # The same events, with the same ids, are in the feed.
    feed = await feed_until(http, payee_key, expected)
    assert [e["id"] for e in feed] == [e["id"] for e in events]
    async with sessions() as session:
        statuses = await session.scalars(
            text("SELECT DISTINCT delivery_status FROM events e JOIN participants p ON p.id = e.participant_id"
                 " WHERE p.bic = :b"), {"b": payee}
        )  # fmt: skip
        assert set(statuses) == {"DELIVERED"}

    assert (await http.delete("/v1/webhook", headers=payee_key)).status_code == 204
    assert (await http.get("/v1/webhook", headers=payee_key)).status_code == 404


EU_IBANS = {"DEUTDEFF": "DE89370400440532013000", "BNPAFRPP": "FR1420041010050500013M02606"}


def _eur(e2e: str, payer: str, payee: str, amount: str) -> dict:
    def party(bic: str) -> dict:
        return {"name": f"Customer of {bic}", "iban": EU_IBANS[bic], "agent_bic": bic}

    return {"end_to_end_id": e2e, "amount": amount, "currency": "EUR", "debtor": party(payer), "creditor": party(payee)}


async def test_a_window_tells_its_net_debtor_to_fund_and_every_bank_that_it_settled(http, credentials, sessions):
    banks = {bic: auth(credentials["banks"][bic]) for bic in EU_IBANS}
    # Where each bank's feed stands now: only what this window adds is read below.
    start = {bic: (await http.get("/v1/events", params={"limit": 1000}, headers=key)) for bic, key in banks.items()}
    cursors = {bic: r.json()["next_cursor"] for bic, r in start.items()}
    async with sessions() as session, session.begin():
        await ensure_open_window(session, "EUR")
    # A window of this test's own: whatever an earlier test in this process left in the open
    # one (its netting would count it, and wait for its fundings) closes with that window.
    flushed = await http.post("/v1/clearing/windows/close?currency=EUR", headers=auth(credentials["admin"]))
    assert flushed.status_code == 202, flushed.text
    async with sessions() as session, session.begin():
        await ensure_open_window(session, "EUR")
    tag = uuid.uuid4().hex[:8]
    ids = []
    for n, (payer, payee, amount) in enumerate(
        (("DEUTDEFF", "BNPAFRPP", "700.00"), ("BNPAFRPP", "DEUTDEFF", "300.00"))
    ):
        accepted = await http.post(
            "/v1/payments", json=_eur(f"EVW{tag}-{n}", payer, payee, amount), headers=banks[payer]
        )
        assert accepted.status_code == 202, accepted.text
        ids.append((accepted.json()["payment_id"], payer))
    for payment_id, payer in ids:
        state = await wait_for_status(http, payment_id, banks[payer], {"AWAITING_SETTLEMENT"})
        assert state["obligation"]["settlement_mode"] == "NET", state["obligation"]
    closed = await http.post("/v1/clearing/windows/close?currency=EUR", headers=auth(credentials["admin"]))
    assert closed.status_code == 202, closed.text
    window_id = closed.json()["id"]
    [instruction] = [i for i in closed.json()["instructions"] if i["bic"] == "DEUTDEFF"]
    booked = await http.post(
        "/v1/notifications/camt054",
        content=camt054_for(instruction["reference"], instruction["amount"], "EUR", entry_reference=f"F{tag}"),
        headers={**auth(credentials["settlement_agent"]), "Content-Type": "application/xml"},
    )
    assert booked.status_code == 200, booked.text
    for payment_id, payer in ids:
        await wait_for_status(http, payment_id, banks[payer], {"COMPLETED"}, timeout_s=60)

    for bic in EU_IBANS:
        told = []
        for _ in range(100):
            page = await http.get("/v1/events", params={"cursor": cursors[bic], "limit": 1000}, headers=banks[bic])
            told += page.json()["items"]
            cursors[bic] = page.json()["next_cursor"]
            if any(e["type"] == "window.settled" and e["data"]["window_id"] == window_id for e in told):
                break
            await asyncio.sleep(0.2)
        mine = [e for e in told if e["data"].get("window_id") == window_id]
        assert [e["type"] for e in mine] == (
            ["funding.instructed", "window.settled"] if bic == "DEUTDEFF" else ["window.settled"]
        ), told
        if bic == "DEUTDEFF":
            funding = mine[0]["data"]
            assert (funding["amount"], funding["currency"], funding["reference"]) == (
                "400.00",
                "EUR",
                instruction["reference"],
            )
        assert mine[-1]["data"]["status"] == "SETTLED"


async def test_a_removed_webhook_leaves_nothing_pending_and_a_new_one_gets_what_comes_after(
    http, credentials, sessions
):
    admin = auth(credentials["admin"])
    payer, payer_key = await new_bank(http, admin, "AE")
    payee, payee_key = await new_bank(http, admin, "IN")
    down = Receiver()  # never listens
    assert (await http.put("/v1/webhook", json={"url": down.url}, headers=payee_key)).status_code == 200
    first = await _paid(http, credentials, payer, payer_key, payee, "11.00")
    await feed_until(http, payee_key, len(PAYEE_TYPES))

    assert (await http.delete("/v1/webhook", headers=payee_key)).status_code == 204
    async with sessions() as session:
        statuses = set(
            await session.scalars(
                text("SELECT e.delivery_status FROM events e JOIN participants p ON p.id = e.participant_id"
                     " WHERE p.bic = :b AND e.seq IS NOT NULL"), {"b": payee}
            )
        )  # fmt: skip
    assert statuses == {"NO_WEBHOOK"}

    up = Receiver()
    up.start()
    try:
        assert (await http.put("/v1/webhook", json={"url": up.url}, headers=payee_key)).status_code == 200
        second = await _paid(http, credentials, payer, payer_key, payee, "12.00")
        for _ in range(200):
            if len(up.received) >= len(PAYEE_TYPES):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
    finally:
        up.stop()
    told = [json.loads(body) for _, body in up.received]
    assert [e["data"]["payment_id"] for e in told] == [second] * len(PAYEE_TYPES) and first != second


async def _paid(http, credentials, payer: str, payer_key: dict, payee: str, amount: str) -> str:
    """A gross payment from payer to payee, booked and COMPLETED; its id."""
    e2e = f"HOOK-{uuid.uuid4().hex[:12]}"
    body = {**payment_body(e2e, amount=amount, debtor_bic=payer, creditor_bic=payee), "urgent": True}
    payment_id = (await http.post("/v1/payments", json=body, headers=payer_key)).json()["payment_id"]
    await wait_for_status(http, payment_id, payer_key, {"AWAITING_SETTLEMENT"})
    booked = await http.post(
        "/v1/notifications/camt054",
        content=camt054_for(e2e, amount, entry_reference=f"N{uuid.uuid4().hex[:20]}"),
        headers={**auth(credentials["settlement_agent"]), "Content-Type": "application/xml"},
    )
    assert booked.status_code == 200, booked.text
    await wait_for_status(http, payment_id, payer_key, {"COMPLETED"})
    return payment_id
