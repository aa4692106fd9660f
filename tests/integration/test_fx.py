"""FX on the real stack: providers post rate sheets within the pairs the admin allows, a
debtor agent locks the best rate in either direction (source or target fixed), and a
quote is used once, by its own debtor agent, before it expires."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from deltran import fx
from deltran.db.tables import Participant
from deltran.errors import Conflict, NotFound, Refused
from tests.support.payments import auth, fresh_bic, new_bank, screening_row

PROVIDER = "MASHAEAD"  # the demo seed's FX provider


@pytest.fixture(autouse=True)
async def corridor_pair(http, credentials) -> None:
    """AED/INR allowed with the demo seed's limits and no sheet posted, whatever an earlier
    test (the OpenAPI fuzzer runs as admin too, test_fx_payments.py posts sheets) left."""
    admin = auth(credentials["admin"])
    for pair in ("INR/AED", "AED/INR"):  # a pair's sheets go with it
        await http.delete(f"/v1/admin/fx/pairs/{pair}", headers=admin)
    limits = {"max_spread": "0.01", "max_quote_lifetime_s": 300}
    assert (await http.put("/v1/admin/fx/pairs/AED/INR", json=limits, headers=admin)).status_code == 200


def _sheet(*rates: tuple[str, str, str], valid_s: float = 3600) -> dict:
    until = (datetime.now(UTC) + timedelta(seconds=valid_s)).isoformat()
    return {"rates": [{"pair": p, "bid": b, "ask": a, "valid_until": until} for p, b, a in rates]}


async def _new_provider(http, credentials) -> tuple[str, dict]:
    bic = fresh_bic("AE")
    created = await http.post(
        "/v1/admin/banks",
        json={"bic": bic, "name": f"FX desk {bic}", "country": "AE", "fx_provider": True},
        headers=auth(credentials["admin"]),
    )
    assert created.status_code == 201, created.text
    return bic, auth(created.json()["api_key"])


async def test_a_provider_posts_its_sheet_within_the_pairs_limits(http, credentials):
    provider = auth(credentials["fx_providers"][PROVIDER])
    # Two sheets at once (a pricing engine retrying): both taken, one after the other.
    twice = await asyncio.gather(
        *(
            http.put("/v1/fx/rates", json=_sheet(("AED/INR", bid, "22.70")), headers=provider)
            for bid in ("22.59", "22.58")
        )
    )
    assert [r.status_code for r in twice] == [200, 200], [r.text for r in twice]
    posted = await http.put("/v1/fx/rates", json=_sheet(("AED/INR", "22.60", "22.70")), headers=provider)
    assert posted.status_code == 200, posted.text
    assert [(r["pair"], r["bid"], r["ask"]) for r in posted.json()["rates"]] == [("AED/INR", "22.6", "22.7")]
    # Each refused whole, the sheet as it was.
    refused = {
        "a pair not allowed": _sheet(("AED/USD", "0.27", "0.28")),
        "bid above ask": _sheet(("AED/INR", "22.80", "22.70")),
        "wider than 1 %": _sheet(("AED/INR", "22.00", "23.00")),
        "no longer valid": _sheet(("AED/INR", "22.60", "22.70"), valid_s=-1),
        "valid for more than a week": _sheet(("AED/INR", "22.60", "22.70"), valid_s=8 * 86400),
        "a pair twice": _sheet(("AED/INR", "22.60", "22.70"), ("AED/INR", "22.61", "22.70")),
        "too many digits": _sheet(("AED/INR", "22.6000000001", "22.70")),
        "the inverse of an allowed pair": _sheet(("INR/AED", "0.044", "0.0441")),
    }
    for why, body in refused.items():
        answer = await http.put("/v1/fx/rates", json=body, headers=provider)
        assert answer.status_code == 422, (why, answer.text)
    for malformed in (
        {"rates": [{"pair": "aed/inr", "bid": "1", "ask": "1", "valid_until": "2030-01-01T00:00Z"}]},
        {"rates": [{"pair": "AED/INR", "bid": "-1", "ask": "1", "valid_until": "2030-01-01T00:00Z"}]},
        {"rates": [{"pair": "AED/INR", "bid": "1", "ask": "1", "valid_until": "2030-01-01T00:00"}]},
    ):
        assert (await http.put("/v1/fx/rates", json=malformed, headers=provider)).status_code == 422  # fmt: skip
    kept = (await http.get("/v1/fx/rates", headers=provider)).json()
    assert [(r["pair"], r["bid"], r["ask"]) for r in kept["rates"]] == [("AED/INR", "22.6", "22.7")]
    # Only FX providers post sheets.
    for other in (auth(credentials["banks"]["EBILAEAD"]), auth(credentials["settlement_agent"])):
        assert (
            await http.put("/v1/fx/rates", json=_sheet(("AED/INR", "22.6", "22.7")), headers=other)
        ).status_code == 403


async def test_a_quote_takes_the_best_rate_in_either_direction_and_rounds_for_neither_side(http, credentials):
    mashreq = auth(credentials["fx_providers"][PROVIDER])
    other_bic, other = await _new_provider(http, credentials)
    # Mashreq buys AED at 22.60 and sells at 22.70; the other desk 22.65 / 22.75.
    assert (await http.put("/v1/fx/rates", json=_sheet(("AED/INR", "22.60", "22.70")), headers=mashreq)).is_success
    assert (await http.put("/v1/fx/rates", json=_sheet(("AED/INR", "22.65", "22.75")), headers=other)).is_success
    # A bank of the test's own: the quotes it holds are this test's (the fuzzer's bank holds others).
    _, bank = await new_bank(http, auth(credentials["admin"]), "AE")

    # AED → INR, what leaves fixed: the highest bid, the INR rounded down.
    sell = await http.post(
        "/v1/fx/quotes", json={"source_currency": "AED", "target_currency": "INR", "source_amount": "100000.01"},
        headers=bank,
    )  # fmt: skip
    assert sell.status_code == 201, sell.text
    q = sell.json()
    assert (q["provider_bic"], q["rate"], q["source_amount"], q["target_amount"], q["fixed"], q["status"]) == (
        other_bic, "22.65", "100000.01", "2265000.22", "SOURCE", "OPEN",
    )  # fmt: skip
    # INR → AED, what arrives fixed: the lowest ask (1 / 22.70 to 10 decimals, down), the INR rounded up.
    buy = await http.post(
        "/v1/fx/quotes", json={"source_currency": "INR", "target_currency": "AED", "target_amount": "1000.00"},
        headers=bank,
    )  # fmt: skip
    assert buy.status_code == 201, buy.text
    b = buy.json()
    assert (b["provider_bic"], b["rate"], b["target_amount"], b["fixed"]) == (
        PROVIDER,
        "0.0440528634",
        "1000.00",
        "TARGET",
    )
    source, rate = Decimal(b["source_amount"]), Decimal(b["rate"])
    assert source * rate >= Decimal("1000.00") > (source - Decimal("0.01")) * rate
    # A provider never quotes itself: Mashreq asking gets the other desk.
    own = await http.post(
        "/v1/fx/quotes", json={"source_currency": "AED", "target_currency": "INR", "source_amount": "10.00"},
        headers=auth(credentials["banks"][PROVIDER]),
    )  # fmt: skip
    assert own.status_code == 201 and own.json()["provider_bic"] == other_bic

    for why, body in {
        "both sides": {"source_currency": "AED", "target_currency": "INR", "source_amount": "1", "target_amount": "1"},
        "neither side": {"source_currency": "AED", "target_currency": "INR"},
        "one currency": {"source_currency": "AED", "target_currency": "AED", "source_amount": "1"},
        "a pair not allowed": {"source_currency": "AED", "target_currency": "USD", "source_amount": "1"},
        "an unknown currency": {"source_currency": "AED", "target_currency": "XXX", "source_amount": "1"},
        "more decimals than AED has": {"source_currency": "AED", "target_currency": "INR", "source_amount": "1.001"},
        "zero": {"source_currency": "AED", "target_currency": "INR", "source_amount": "0.00"},
        "less than one paisa": {"source_currency": "INR", "target_currency": "AED", "source_amount": "0.01"},
    }.items():
        answer = await http.post("/v1/fx/quotes", json=body, headers=bank)
        assert answer.status_code == 422, (why, answer.text)

    # The quote, for its debtor agent, its provider and the admin only.
    path = f"/v1/fx/quotes/{q['quote_id']}"
    for who, expected in (
        (bank, 200),
        (other, 200),
        (auth(credentials["admin"]), 200),
        (mashreq, 404),
        (auth(credentials["settlement_agent"]), 403),
    ):
        assert (await http.get(path, headers=who)).status_code == expected  # fmt: skip

    # With every sheet withdrawn, no quote.
    for provider in (mashreq, other):
        assert (await http.put("/v1/fx/rates", json={"rates": []}, headers=provider)).json()["rates"] == []
    none = await http.post(
        "/v1/fx/quotes", json={"source_currency": "AED", "target_currency": "INR", "source_amount": "10.00"},
        headers=bank,
    )  # fmt: skip
    assert none.status_code == 409 and none.json()["type"].endswith("no-fx-rate")


async def test_a_quote_is_used_once_by_its_own_debtor_agent_before_it_expires(http, credentials, sessions):
    provider = auth(credentials["fx_providers"][PROVIDER])
    bic, bank = await new_bank(http, auth(credentials["admin"]), "AE")
    assert (
        await http.put("/v1/fx/rates", json=_sheet(("AED/INR", "22.60", "22.70"), valid_s=2.5), headers=provider)
    ).is_success
    asked = {"source_currency": "AED", "target_currency": "INR", "source_amount": "500.00"}
    quotes = [(await http.post("/v1/fx/quotes", json=asked, headers=bank)).json() for _ in range(2)]
    # It lives as long as the sheet it was priced from (under the pair's 300 s).
    assert datetime.fromisoformat(quotes[0]["expires_at"]) <= datetime.now(UTC) + timedelta(seconds=2.5)
    payments = [screening_row(f"FX-{uuid.uuid4().hex[:12]}", "500.00", f"payment-fx-{i}") for i in range(40)]
    async with sessions() as session, session.begin():
        session.add_all(payments)
        debtor_agent = await session.scalar(select(Participant.id).where(Participant.bic == bic))
        other_bank = await session.scalar(select(Participant.id).where(Participant.bic == "NBADAEAA"))
    assert debtor_agent is not None and other_bank is not None

    async def take(payment_id: uuid.UUID, by: uuid.UUID = debtor_agent) -> str:
        async with sessions() as session, session.begin():
            try:
                await fx.take(session, uuid.UUID(quotes[0]["quote_id"]), by, payment_id)
                return "taken"
            except (Conflict, NotFound, Refused) as exc:
                return exc.kind

    # Forty payments name it at once: one gets it.
    outcomes = await asyncio.gather(*(take(p.id) for p in payments))
    assert sorted(set(outcomes)) == ["fx-quote-used", "taken"] and outcomes.count("taken") == 1
    winner = payments[outcomes.index("taken")].id
    assert await take(winner) == "taken"  # the same payment again: a retried step
    # (which payment won is the race's: the others are named by the winner, never by index)
    loser = next(p.id for p in payments if p.id != winner)
    assert await take(loser) == "fx-quote-used"
    async with sessions() as session, session.begin():  # one payment, one quote
        with pytest.raises(Conflict):
            await fx.take(session, uuid.UUID(quotes[1]["quote_id"]), debtor_agent, winner)
    assert await take(loser, other_bank) == "fx-quote-not-found"  # another bank's quote
    used = (await http.get(f"/v1/fx/quotes/{quotes[0]['quote_id']}", headers=bank)).json()
    assert (used["status"], used["payment_id"]) == ("USED", str(winner))

    # The second one, once its sheet's time is up, is refused.
    await asyncio.sleep(
        max(0.0, (datetime.fromisoformat(quotes[1]["expires_at"]) - datetime.now(UTC)).total_seconds()) + 0.2
    )
    async with sessions() as session, session.begin():
        with pytest.raises(Refused) as expired:
            await fx.take(session, uuid.UUID(quotes[1]["quote_id"]), debtor_agent, loser)
    assert expired.value.kind == "fx-quote-expired"


async def test_the_admin_allows_pairs_and_sets_their_limits(http, credentials):
    admin = auth(credentials["admin"])
    await http.delete("/v1/admin/fx/pairs/EUR/USD", headers=admin)  # (test_fx_payments.py allows it)
    assert (
        await http.put(
            "/v1/admin/fx/pairs/INR/AED", json={"max_spread": "0.01", "max_quote_lifetime_s": 60}, headers=admin
        )
    ).status_code == 409
    set_ = await http.put(
        "/v1/admin/fx/pairs/USD/EUR", json={"max_spread": "0.002", "max_quote_lifetime_s": 30}, headers=admin
    )
    assert set_.status_code == 200 and set_.json()["max_spread"] == "0.002", set_.text
    listed = (await http.get("/v1/admin/fx/pairs", headers=admin)).json()["pairs"]
    assert {p["pair"] for p in listed} >= {"AED/INR", "USD/EUR"}
    for body in (
        {"max_spread": "1", "max_quote_lifetime_s": 30},
        {"max_spread": "0.01", "max_quote_lifetime_s": 0},
        {"max_spread": "0.01", "max_quote_lifetime_s": 10**6},
    ):
        assert (await http.put("/v1/admin/fx/pairs/USD/EUR", json=body, headers=admin)).status_code == 422  # fmt: skip
    assert (
        await http.put(
            "/v1/admin/fx/pairs/USD/USD", json={"max_spread": "0.01", "max_quote_lifetime_s": 30}, headers=admin
        )
    ).status_code == 422
    # A pair's legs settle in both its currencies: each one DelTran clears.
    uncleared = await http.put(
        "/v1/admin/fx/pairs/EUR/JPY", json={"max_spread": "0.01", "max_quote_lifetime_s": 30}, headers=admin
    )
    assert uncleared.status_code == 422 and uncleared.json()["type"].endswith("currency-not-cleared"), uncleared.text
    assert (
        await http.put(
            "/v1/admin/fx/pairs/USD/EUR",
            json={"max_spread": "0.01", "max_quote_lifetime_s": 30},
            headers=auth(credentials["banks"]["EBILAEAD"]),
        )
    ).status_code == 403
    # A pair and its inverse, allowed at once: one of them.
    both = await asyncio.gather(
        *(http.put(f"/v1/admin/fx/pairs/{p}", json={"max_spread": "0.01", "max_quote_lifetime_s": 30}, headers=admin)
          for p in ("INR/USD", "USD/INR"))
    )  # fmt: skip
    assert sorted(r.status_code for r in both) == [200, 409]
    for p in ("INR/USD", "USD/INR"):
        await http.delete(f"/v1/admin/fx/pairs/{p}", headers=admin)
    assert (await http.delete("/v1/admin/fx/pairs/USD/EUR", headers=admin)).status_code == 204
    assert (await http.delete("/v1/admin/fx/pairs/USD/EUR", headers=admin)).status_code == 404


async def test_a_bank_holds_a_bounded_number_of_usable_quotes(http, credentials, settings):
    provider = auth(credentials["fx_providers"][PROVIDER])
    assert (await http.put("/v1/fx/rates", json=_sheet(("AED/INR", "22.60", "22.70")), headers=provider)).is_success
    _, bank = await new_bank(http, auth(credentials["admin"]), "AE")
    asked = {"source_currency": "AED", "target_currency": "INR", "source_amount": "10.00"}
    answers = await asyncio.gather(
        *(http.post("/v1/fx/quotes", json=asked, headers=bank) for _ in range(settings.fx_max_open_quotes + 5))
    )
    codes = sorted(a.status_code for a in answers)
    assert codes == [201] * settings.fx_max_open_quotes + [409] * 5, codes
    assert {a.json()["type"].rsplit(":", 1)[-1] for a in answers if a.status_code == 409} == {"too-many-open-fx-quotes"}
