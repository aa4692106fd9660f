"""GET /v1/payments: a bank's own payments, sent and received, newest first, a keyset page
at a time; every payment for admin; filters; bad queries refused.

The paging tests write their payments as rows (final, REJECTED: nothing else in the
suite acts on them) between two banks of their own, with chosen creation times — three
of them at the same instant, so the order's tie-break on the id is exercised."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from api import cursor
from api.payment_views import PAGE_TIMEOUT_MS, PageQuery, page_of_payments
from api.routes import payments as payments_route
from tests.support.auditor import SANCTIONED
from tests.support.payments import (
    auth,
    complete_gross_payment,
    new_bank,
    payment_body,
    screening_row,
    wait_for_status,
)

T0 = datetime(2031, 3, 1, 12, 0, tzinfo=UTC)  # after anything the rest of the suite writes


async def _rows(sessions, specs: list[tuple[str, str, datetime, str]]) -> list[dict]:
    """(debtor agent, creditor agent, created at, currency) → stored REJECTED payments."""
    rows = []
    async with sessions() as session, session.begin():
        for debtor, creditor, at, currency in specs:
            e2e = f"LIST-{uuid.uuid4().hex[:12]}"
            row = screening_row(
                e2e, "10.00", f"payment-{e2e}", instructing_bic=debtor, debtor_agent_bic=debtor,
                creditor_agent_bic=creditor, currency=currency, created_at=at, status="REJECTED",
                rejection_code="AG01", rejection_reason="written by the test",
            )  # fmt: skip
            session.add(row)
            rows.append({"id": str(row.id), "at": at, "debtor": debtor, "creditor": creditor, "currency": currency})
    return rows


def _newest_first(rows: list[dict]) -> list[str]:
    return [r["id"] for r in sorted(rows, key=lambda r: (r["at"], uuid.UUID(r["id"])), reverse=True)]


async def _all_pages(http, headers: dict, **params) -> tuple[list[str], int]:
    ids: list[str] = []
    pages = 0
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await http.get("/v1/payments", params=query, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"items", "next_cursor"}
        assert len(body["items"]) <= int(params.get("limit", 100))
        ids += [item["payment_id"] for item in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return ids, pages
        assert pages < 50, "the cursor does not advance"


async def test_a_bank_pages_through_its_sent_and_received_payments_newest_first(http, credentials, sessions):
    admin = auth(credentials["admin"])
    a, a_key = await new_bank(http, admin, "AE")
    b, b_key = await new_bank(http, admin, "IN")
    c, _ = await new_bank(http, admin, "AE")
    tie = T0 + timedelta(minutes=5)
    sent = await _rows(
        sessions, [(a, b, T0 + timedelta(minutes=i), "AED") for i in range(4)] + [(a, b, tie, "AED")] * 3
    )
    received = await _rows(sessions, [(b, a, T0 + timedelta(minutes=i, seconds=30), "INR") for i in range(5)])
    others = await _rows(sessions, [(b, c, T0 + timedelta(minutes=2, seconds=10), "AED")])
    # Sent and received at the same instant: the two scans' merge breaks the tie by id.
    sent += await _rows(sessions, [(a, b, T0 + timedelta(minutes=3, seconds=30), "AED")])
    a_and_c = await _rows(sessions, [(a, c, T0 + timedelta(minutes=1, seconds=10), "AED")])
    sent += a_and_c

    ids, pages = await _all_pages(http, a_key, limit=3, since=T0.isoformat())
    assert ids == _newest_first(sent + received)  # every one once, in order, across pages
    assert pages == 5  # 14 payments by 3: the last page says there is no next

    assert (await _all_pages(http, a_key, role="debtor", limit=2, since=T0.isoformat()))[0] == _newest_first(sent)
    assert (await _all_pages(http, a_key, role="creditor", since=T0.isoformat()))[0] == _newest_first(received)
    # B sees what it sent and received, and nothing of A's and C's between themselves.
    b_ids, _ = await _all_pages(http, b_key, limit=500, since=T0.isoformat())
    assert b_ids == _newest_first([r for r in sent if r not in a_and_c] + received + others)
    # Admin sees every payment; narrowed to this test's banks by time, they are all here.
    admin_ids, _ = await _all_pages(
        http, admin, limit=4, since=T0.isoformat(), until=(T0 + timedelta(minutes=6)).isoformat()
    )
    assert _newest_first(sent + received + others) == [
        i for i in admin_ids if i in {r["id"] for r in sent + received + others}
    ]


async def test_filters_by_status_currency_and_time(http, credentials, sessions):
    admin = auth(credentials["admin"])
    a, a_key = await new_bank(http, admin, "AE")
    b, _ = await new_bank(http, admin, "IN")
    start = T0 + timedelta(days=1)
    rows = await _rows(sessions, [(a, b, start + timedelta(minutes=i), "AED" if i % 2 else "INR") for i in range(6)])

    inr, _ = await _all_pages(http, a_key, currency="INR", since=start.isoformat())
    assert inr == _newest_first([r for r in rows if r["currency"] == "INR"])
    # since is inclusive, until exclusive.
    window, _ = await _all_pages(
        http, a_key, since=(start + timedelta(minutes=1)).isoformat(), until=(start + timedelta(minutes=4)).isoformat()
    )
    assert window == _newest_first(rows[1:4])
    rejected, _ = await _all_pages(http, a_key, status="REJECTED", since=start.isoformat())
    assert rejected == _newest_first(rows)
    assert (await _all_pages(http, a_key, status="COMPLETED", since=start.isoformat()))[0] == []


async def test_an_item_is_the_payment_as_get_shows_it(http, credentials, e2e_id):
    bank = auth(credentials["banks"]["EBILAEAD"])
    since = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    completed = await complete_gross_payment(http, credentials, "2500.00", prefix="LIST")
    accepted = await http.post(
        "/v1/payments", json={**payment_body(e2e_id, debtor_name=SANCTIONED), "urgent": True}, headers=bank
    )
    assert accepted.status_code == 202, accepted.text
    rejected = accepted.json()["payment_id"]
    await wait_for_status(http, rejected, bank, {"REJECTED"})

    shown = {}
    for payment_id, status in ((completed, "COMPLETED"), (rejected, "REJECTED")):
        listed = await http.get("/v1/payments", params={"status": status, "since": since}, headers=bank)
        assert listed.status_code == 200, listed.text
        items = {item["payment_id"]: item for item in listed.json()["items"]}
        assert all(item["status"] == status for item in items.values())
        one = await http.get(f"/v1/payments/{payment_id}", headers=bank)
        assert one.status_code == 200, one.text
        assert items[payment_id] == one.json()  # obligation, token, references: the same
        shown[payment_id] = items[payment_id]
    assert shown[rejected]["obligation"] is None and shown[completed]["token"] is not None
    # The creditor agent lists the payment it received.
    received = await http.get(
        "/v1/payments", params={"role": "creditor", "since": since}, headers=auth(credentials["banks"]["SBININBB"])
    )
    assert completed in {item["payment_id"] for item in received.json()["items"]}


def _raw_cursor(value) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


@pytest.mark.parametrize(
    ("who", "params", "status", "field"),
    [
        ("bank", {"limit": "0"}, 422, "limit"),
        ("bank", {"limit": "501"}, 422, "limit"),
        ("bank", {"limit": "ten"}, 422, "limit"),
        ("bank", {"role": "sender"}, 422, "role"),
        ("admin", {"role": "debtor"}, 422, "role"),
        ("bank", {"status": "PAID"}, 422, "status"),
        ("bank", {"currency": "aed"}, 422, "currency"),
        ("bank", {"currency": "XYZ"}, 422, "currency"),
        ("bank", {"since": "2026-12-07T09:00:00"}, 422, "since"),
        ("bank", {"since": "yesterday"}, 422, "since"),
        ("bank", {"since": "0001-01-01T00:00:00+01:00"}, 422, "since"),
        ("bank", {"until": "9999-12-31T23:59:59-05:00"}, 422, "until"),
        ("bank", {"since": "2026-12-07T09:00:00Z", "until": "2026-12-07T09:00:00Z"}, 422, "until"),
        ("bank", {"cursor": "not-a-cursor"}, 400, None),
        ("bank", {"cursor": "WyIyMDI2LTEyLTA3VDA5OjAwOjAwIiwiMSJd"}, 400, None),  # naive time, bad id
        ("bank", {"cursor": _raw_cursor(["2026-12-07T09:00:00", str(uuid.UUID(int=1))])}, 400, None),  # naive time
        ("bank", {"cursor": _raw_cursor({"a": 1, "b": 2})}, 400, None),
        ("bank", {"cursor": _raw_cursor(1)}, 400, None),
        ("bank", {"cursor": _raw_cursor("ab")}, 400, None),
        ("bank", {"cursor": "é"}, 400, None),
        ("bank", {"cursor": ""}, 400, None),
        ("bank", {"cursor": "x" * 201}, 422, "cursor"),
        (
            "bank",
            {
                "cursor": cursor.encode(
                    cursor.Position(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))), uuid.UUID(int=1))
                )
            },
            400,
            None,
        ),
        ("settlement_agent", {}, 403, None),
        (None, {}, 401, None),
    ],
)
async def test_a_bad_list_query_is_refused_clearly(http, credentials, who, params, status, field):
    headers = {}
    if who == "bank":
        headers = auth(credentials["banks"]["EBILAEAD"])
    elif who is not None:
        headers = auth(credentials[who])
    response = await http.get("/v1/payments", params=params, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    if field is not None:
        assert field in {e["field"] for e in response.json()["errors"]}, response.json()


async def test_a_query_that_would_read_too_far_is_refused_with_a_hint(http, credentials, monkeypatch):
    """A filter a bank's payments rarely match walks its index far; the page query is cut
    off by its statement timeout, and the bank is told to narrow it, not given a 5xx."""

    class Canceled(Exception):
        sqlstate = "57014"

    async def cut_off(session, query):
        raise DBAPIError("SELECT …", {}, Canceled())

    monkeypatch.setattr(payments_route, "page_of_payments", cut_off)
    response = await http.get(
        "/v1/payments", params={"status": "SCREENING"}, headers=auth(credentials["banks"]["EBILAEAD"])
    )
    assert response.status_code == 422, response.text
    assert {e["field"] for e in response.json()["errors"]} == {"since"}


async def test_the_page_query_runs_under_its_statement_timeout(sessions):
    query = PageQuery(
        bic="EBILAEAD", role=None, status=None, currency=None, since=None, until=None, after=None, limit=1
    )
    async with sessions() as session:
        await page_of_payments(session, query)
        setting = text("SELECT setting FROM pg_settings WHERE name = 'statement_timeout'")  # in ms
        assert await session.scalar(setting) == str(PAGE_TIMEOUT_MS)
        await session.rollback()  # SET LOCAL: the page's transaction only
        assert await session.scalar(setting) != str(PAGE_TIMEOUT_MS)
