"""Cross-currency payments on the real stack: a debtor agent's quote becomes two legs
(debtor agent → FX provider in the source currency, provider → creditor agent in the
target currency) that settle together or not at all — gross once both legs are booked,
net each in its own currency's window with the payee's credit in escrow until the other
leg settles — and a leg that cannot be funded leaves no one holding the other.

Net legs clear EUR and USD, which only test_clearing.py otherwise nets (each test here
leaves those windows with nothing pending); gross ones AED → INR, urgent."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from lxml import etree
from sqlalchemy import select

from activities.clearing import close_window, ensure_open_window, net_window, settle_window
from deltran import refunds
from deltran.db.tables import Account, BankNotification, Obligation, Participant, Payment, Refund
from deltran.errors import Refused
from deltran.intake.camt054 import receive_camt054
from deltran.intake.payments import submit_payments
from deltran.iso20022.camt054 import BookingSpec, build_camt054, parse_camt054
from deltran.iso20022.pacs002 import parse_pacs002_status
from deltran.iso20022.pacs008 import build_pacs008, parse_pacs008
from deltran.shared import ClearingInput, WindowSettlement
from deltran.vocabulary import EntryOutcome, ObligationStatus, PaymentStatus
from tests.support.auditor import money_violations
from tests.support.payments import (
    auth,
    camt054_for,
    fresh_bic,
    new_bank,
    new_payment,
    pacs008_spec,
    payment_body,
    wait_for_status,
)
from worker.main import build_worker
from workflows.clearing import ClearingWindowWorkflow
from workflows.payment import PaymentWorkflow

AGENT_XML = "application/xml"


def _sheet(pair: str, bid: str, ask: str) -> dict:
    until = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    return {"rates": [{"pair": pair, "bid": bid, "ask": ask, "valid_until": until}]}


async def _provider(http, credentials, pair: str, bid: str, ask: str) -> tuple[str, dict]:
    """A provider of the test's own, its sheet for `pair` the only one posted: the pair is
    disallowed first (every sheet of it goes: an earlier test's desk quotes no more), then
    allowed again."""
    admin = auth(credentials["admin"])
    base, quote = pair.split("/")
    for either in (f"{quote}/{base}", pair):
        await http.delete(f"/v1/admin/fx/pairs/{either}", headers=admin)
    allowed = await http.put(
        f"/v1/admin/fx/pairs/{pair}", json={"max_spread": "0.01", "max_quote_lifetime_s": 300}, headers=admin
    )
    assert allowed.status_code == 200, allowed.text
    bic = fresh_bic("AE")
    created = await http.post(
        "/v1/admin/banks",
        json={"bic": bic, "name": f"FX desk {bic}", "country": "AE", "fx_provider": True},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    key = auth(created.json()["api_key"])
    posted = await http.put("/v1/fx/rates", json=_sheet(pair, bid, ask), headers=key)
    assert posted.status_code == 200, posted.text
    return bic, key


async def _corridor(http, credentials, pair: str, bid: str, ask: str, **amount: str):
    """A provider of the test's own quoting `pair` (the only one), a debtor agent (AE) and a
    creditor agent (IN) of its own, and the debtor agent's quote of `amount` from that
    provider: (provider BIC, its headers, debtor BIC, headers, creditor BIC, headers, quote)."""
    admin = auth(credentials["admin"])
    provider_bic, provider = await _provider(http, credentials, pair, bid, ask)
    debtor_bic, debtor = await new_bank(http, admin, "AE")
    creditor_bic, creditor = await new_bank(http, admin, "IN")
    source, target = pair.split("/")
    quote = await _quote(http, debtor, source, target, **amount)
    assert quote["provider_bic"] == provider_bic
    return provider_bic, provider, debtor_bic, debtor, creditor_bic, creditor, quote


def _fx_body(e2e: str, quote: dict, debtor_bic: str, creditor_bic: str, **extra) -> dict:
    """A JSON payment taking `quote`: its amount and currency the quote's source side."""
    return {
        **payment_body(e2e, amount=quote["source_amount"], currency=quote["source_currency"], debtor_bic=debtor_bic,
                       creditor_bic=creditor_bic),
        "fx_quote_id": quote["quote_id"],
        **extra,
    }  # fmt: skip


async def _quote(http, bank: dict, source: str, target: str, **amount: str) -> dict:
    answer = await http.post(
        "/v1/fx/quotes", json={"source_currency": source, "target_currency": target, **amount}, headers=bank
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


async def _book(http, credentials, e2e: str, amount: str, currency: str) -> dict:
    answer = await http.post(
        "/v1/notifications/camt054",
        content=camt054_for(e2e, amount, currency, entry_reference=f"X{uuid.uuid4().hex[:20]}"),
        headers={**auth(credentials["settlement_agent"]), "Content-Type": AGENT_XML},
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["entries"][0]


async def _balances(sessions, bic: str, currency: str) -> dict[str, Decimal]:
    """The bank's non-zero account balances in `currency`, by kind (fiat debit-normal)."""
    async with sessions() as session:
        rows = (
            await session.execute(
                select(Account.kind, Account.debits_posted, Account.credits_posted)
                .join(Participant, Participant.id == Account.participant_id)
                .where(Participant.bic == bic, Account.currency == currency)
            )
        ).all()
    held = {r.kind: (r.debits_posted - r.credits_posted if r.kind == "fiat" else r.credits_posted - r.debits_posted)
            for r in rows}  # fmt: skip
    return {kind: amount for kind, amount in held.items() if amount}


async def _legs(sessions, payment_id) -> list[Obligation]:
    async with sessions() as session:
        return list(
            (
                await session.scalars(
                    select(Obligation)
                    .where(Obligation.payment_id == uuid.UUID(str(payment_id)))
                    .order_by(Obligation.leg)
                )
            ).all()
        )


async def test_a_gross_cross_currency_payment_settles_both_legs_once_both_are_booked(http, credentials, sessions):
    provider_bic, provider, debtor_bic, debtor, creditor_bic, creditor, quote = await _corridor(
        http, credentials, "AED/INR", "22.66", "22.70", source_amount="1000.00"
    )
    e2e = f"FXG-{uuid.uuid4().hex[:12]}"
    body = _fx_body(e2e, quote, debtor_bic, creditor_bic, urgent=True, uetr=str(uuid.uuid4()))

    # What does not match its quote is refused, and nothing is recorded.
    for why, wrong, kind in (
        ("another amount", {**body, "amount": "999.00"}, "fx-quote-mismatch"),
        ("another currency", {**body, "currency": "USD"}, "fx-quote-mismatch"),
        ("no such quote", {**body, "fx_quote_id": str(uuid.uuid4())}, "fx-quote-not-found"),
    ):
        answer = await http.post("/v1/payments", json={**wrong, "end_to_end_id": f"{e2e}-X"}, headers=debtor)
        assert answer.status_code in (404, 422) and answer.json()["type"].endswith(kind), (why, answer.text)
    assert quote["provider_bic"] == provider_bic
    # Paying the provider itself: its leg would pay itself.
    to_provider = {
        **payment_body(f"{e2e}-P", amount="1000.00", debtor_bic=debtor_bic, creditor_bic=provider_bic),
        "fx_quote_id": quote["quote_id"],
    }
    answer = await http.post("/v1/payments", json=to_provider, headers=debtor)
    assert answer.status_code == 422 and answer.json()["type"].endswith("fx-provider-is-creditor"), answer.text

    accepted = await http.post("/v1/payments", json=body, headers=debtor)
    assert accepted.status_code == 202, accepted.text
    payment_id = accepted.json()["payment_id"]
    # The quote is used once: another payment naming it is refused; the same one resent is a duplicate.
    again = await http.post(
        "/v1/payments", json={**body, "end_to_end_id": f"{e2e}-2", "uetr": str(uuid.uuid4())}, headers=debtor
    )
    assert again.status_code == 409 and again.json()["type"].endswith("fx-quote-used"), again.text
    assert (await http.post("/v1/payments", json=body, headers=debtor)).status_code == 202

    waiting = await wait_for_status(http, payment_id, debtor, {"AWAITING_SETTLEMENT"})
    fx = waiting["fx"]
    assert (fx["quote_id"], fx["rate"], fx["provider_bic"]) == (quote["quote_id"], quote["rate"], quote["provider_bic"])
    legs = fx["legs"]
    assert [(leg["leg"], leg["currency"], leg["amount"], leg["payer_bic"], leg["payee_bic"]) for leg in legs] == [
        ("SOURCE", "AED", "1000.00", debtor_bic, quote["provider_bic"]),
        ("TARGET", "INR", quote["target_amount"], quote["provider_bic"], creditor_bic),
    ]
    assert {leg["settlement_mode"] for leg in legs} == {"GROSS"} and {leg["status"] for leg in legs} == {"PENDING"}
    assert waiting["obligation"]["id"] == legs[0]["obligation_id"]

    # The provider is told what to book (the payment's EndToEndId, in INR) and may read it.
    [instructed] = await _events(http, provider, 1)
    assert instructed["type"] == "payment.awaiting_settlement", instructed
    assert (instructed["data"]["end_to_end_id"], instructed["data"]["fx"]["target_amount"]) == (
        e2e, quote["target_amount"],
    )  # fmt: skip
    as_provider = await http.get(f"/v1/payments/{payment_id}", headers=provider)
    assert as_provider.status_code == 200 and as_provider.json()["fx"]["legs"][1]["payer_bic"] == provider_bic
    assert (await http.get(f"/v1/payments/{payment_id}/camt054", headers=provider)).status_code == 404

    # The debtor agent's AED booked: nothing moves until the provider's INR is booked too.
    assert (await _book(http, credentials, e2e, "1000.00", "AED"))["matched"]
    await asyncio.sleep(0.5)
    still = (await http.get(f"/v1/payments/{payment_id}", headers=debtor)).json()
    assert still["status"] == "AWAITING_SETTLEMENT" and {leg["status"] for leg in still["fx"]["legs"]} == {"PENDING"}
    assert await _balances(sessions, debtor_bic, "AED") == {}
    # An INR booking of another amount is not the target leg's.
    wrong = await _book(http, credentials, e2e, "1.00", "INR")
    assert not wrong["matched"] and wrong["outcome"] == EntryOutcome.AMOUNT_MISMATCH
    # Another bank's payment with the same EndToEndId (unique per instructing bank only):
    # the INR bookings below, by EndToEndId alone, are told apart by the leg each would pay.
    twin = {**payment_body(e2e, amount="7.00"), "urgent": True}
    assert (await http.post("/v1/payments", json=twin, headers=auth(credentials["banks"]["EBILAEAD"]))).is_success

    # INR the agent says came from another bank than the provider funds no leg (it is that bank's).
    from_debtor = build_camt054(
        [BookingSpec(end_to_end_id=e2e, amount=Decimal(quote["target_amount"]), currency="INR",
                     entry_reference=f"X{uuid.uuid4().hex[:20]}", debtor_agent_bic=debtor_bic)],
        message_id=f"M{uuid.uuid4().hex[:20]}",
    )  # fmt: skip
    posted = await http.post(
        "/v1/notifications/camt054",
        content=from_debtor,
        headers={**auth(credentials["settlement_agent"]), "Content-Type": AGENT_XML},
    )
    assert posted.json()["entries"][0]["outcome"] == EntryOutcome.UNMATCHED, posted.text
    assert (await _book(http, credentials, e2e, quote["target_amount"], "INR"))["matched"]

    done = await wait_for_status(http, payment_id, creditor, {"COMPLETED"})
    assert {leg["status"] for leg in done["fx"]["legs"]} == {"SETTLED"}
    assert done["token"]["currency"] == "INR" and done["token"]["amount"] == quote["target_amount"]
    target = Decimal(quote["target_amount"])
    assert await _balances(sessions, debtor_bic, "AED") == {"fiat": Decimal("1000.00")}
    assert await _balances(sessions, provider_bic, "AED") == {"token": Decimal("1000.00")}
    assert await _balances(sessions, provider_bic, "INR") == {"fiat": target}
    assert await _balances(sessions, creditor_bic, "INR") == {"token": target}
    # A second INR booking for it is an exception (to refund), never a second mint.
    late = await _book(http, credentials, e2e, quote["target_amount"], "INR")
    # (by its EndToEndId alone, with the twin's, no payment awaits it: AMBIGUOUS, kept for ops)
    assert not late["matched"] and late["outcome"] == EntryOutcome.AMBIGUOUS
    assert await _balances(sessions, creditor_bic, "INR") == {"token": target}
    # The creditor agent is told what it was credited: the target side; and its camt.054 is in INR.
    notified = await http.get(f"/v1/payments/{payment_id}/camt054", headers=creditor)
    assert notified.status_code == 200 and b'Ccy="INR"' in notified.content and b'Ccy="AED"' not in notified.content
    told = await _events(http, creditor, 3)
    assert [e["type"] for e in told] == ["payment.awaiting_settlement", "payment.settled", "payment.credited"]
    fx_told = told[-1]["data"]["fx"]
    assert (fx_told["target_amount"], fx_told["target_currency"], fx_told["provider_bic"], fx_told["rate"]) == (
        quote["target_amount"], "INR", provider_bic, quote["rate"],
    )  # fmt: skip
    # Its tracker, as the debtor agent knows it (by its UETR): both bookings, one timeline.
    tracked = await http.get(f"/v1/track/{body['uetr']}", headers=debtor)
    assert tracked.status_code == 200, tracked.text
    states = [e["state"] for e in tracked.json()["events"]]
    assert states[-1] == "COMPLETED" and states.count("BOOKED") == 1, states
    provider_told = await _events(http, provider, 2)
    assert [e["type"] for e in provider_told] == ["payment.awaiting_settlement", "payment.settled"]
    assert await money_violations(sessions) == []


async def _events(http, headers: dict, count: int) -> list[dict]:
    """The bank's first `count` events (numbered a moment after their change commits)."""
    for _ in range(300):  # (30 s: a loaded machine numbers events late)
        items = (await http.get("/v1/events", headers=headers)).json()["items"]
        if len(items) >= count:
            return items
        await asyncio.sleep(0.1)
    raise AssertionError(f"{len(items)} events of {count}")


async def test_a_pacs008_states_its_conversion_and_the_pacs002_and_forwarded_pacs008_report_the_pair(
    http, credentials, sessions
):
    _, _, debtor_bic, debtor, creditor_bic, creditor, quote = await _corridor(
        http, credentials, "AED/INR", "22.68", "22.70", target_amount="50000.00"
    )
    e2e = f"FXX-{uuid.uuid4().hex[:12]}"

    def message(**conversion) -> bytes:
        terms = {
            "instructed_amount": Decimal(quote["source_amount"]),
            "instructed_currency": "AED",
            "exchange_rate": Decimal(quote["rate"]),
            **conversion,
        }
        spec = pacs008_spec(
            e2e, amount="50000.00", currency="INR", debtor_agent_bic=debtor_bic, creditor_agent_bic=creditor_bic,
            urgent=True, **terms,
        )  # fmt: skip
        return build_pacs008([spec], message_id=f"M{uuid.uuid4().hex[:20]}", instructing_agent_bic=debtor_bic)

    xml = {**debtor, "Content-Type": AGENT_XML}
    # Terms no open quote of the bank has, or a conversion without its rate: nothing recorded.
    other_rate = await http.post("/v1/payments", content=message(exchange_rate=Decimal("22.5")), headers=xml)
    assert other_rate.status_code == 422 and other_rate.json()["type"].endswith("fx-quote-no-match"), other_rate.text
    no_rate = await http.post("/v1/payments", content=message(exchange_rate=None), headers=xml)
    assert no_rate.status_code == 400 and "XchgRate" in no_rate.text, no_rate.text
    accepted = await http.post("/v1/payments", content=message(), headers=xml)
    assert accepted.status_code == 202, accepted.text
    [transaction] = accepted.json()
    payment_id = transaction["payment_id"]
    waiting = await wait_for_status(http, payment_id, debtor, {"AWAITING_SETTLEMENT"})
    assert (waiting["amount"], waiting["currency"]) == (quote["source_amount"], "AED")
    assert waiting["fx"]["quote_id"] == quote["quote_id"]
    assert (await _book(http, credentials, e2e, "50000.00", "INR"))["matched"]
    assert (await _book(http, credentials, e2e, quote["source_amount"], "AED"))["matched"]
    await wait_for_status(http, payment_id, debtor, {"COMPLETED"})

    # The debtor agent's pacs.002: what settled in INR, and the AED it instructed.
    report = (await http.get(f"/v1/payments/{payment_id}/pacs002", headers=debtor)).content
    assert parse_pacs002_status(report)["status"] == "ACSC"
    reported = etree.fromstring(report)
    ns = {"p": "urn:iso:std:iso:20022:tech:xsd:pacs.002.001.10"}
    assert reported.find(".//p:OrgnlTxRef/p:IntrBkSttlmAmt", ns).get("Ccy") == "INR"
    assert Decimal(reported.findtext(".//p:OrgnlTxRef/p:IntrBkSttlmAmt", namespaces=ns)) == Decimal("50000.00")
    instructed = reported.find(".//p:OrgnlTxRef/p:Amt/p:InstdAmt", ns)
    assert (instructed.get("Ccy"), Decimal(instructed.text)) == ("AED", Decimal(quote["source_amount"]))
    # The creditor agent's forwarded pacs.008: INR settled, AED instructed, at the quote's rate.
    forwarded = await http.get(f"/v1/payments/{payment_id}/pacs008", headers=creditor)
    assert forwarded.status_code == 200, forwarded.text
    [tx] = parse_pacs008(forwarded.content).transactions
    assert (tx.amount, tx.currency) == (Decimal("50000.00"), "INR")
    assert (tx.instructed_amount, tx.instructed_currency) == (Decimal(quote["source_amount"]), "AED")
    assert tx.exchange_rate == Decimal(quote["rate"])
    assert await money_violations(sessions) == []


async def _run_window(temporal_env, settings, currency: str, funding_timeout_s: int):
    handle = await temporal_env.client.start_workflow(
        ClearingWindowWorkflow.run,
        ClearingInput(currency=currency, funding_timeout_s=funding_timeout_s),
        id=f"clearing-{currency}-fx-{uuid.uuid4().hex[:8]}",
        task_queue=settings.task_queue,
    )
    for _ in range(600):  # (30 s)
        state = await handle.query(ClearingWindowWorkflow.state)
        if state.status != "CLOSING" or state.instructions:
            return handle, state
        await asyncio.sleep(0.05)
    raise AssertionError(f"the {currency} window never netted")


async def _fund(http, credentials, reference: str, amount, currency: str) -> None:
    await _book(http, credentials, reference, str(amount), currency)


async def test_a_net_cross_currency_payment_nets_each_leg_in_its_window_and_pays_both_together(
    http, credentials, sessions, temporal_env, settings, worker
):
    admin = auth(credentials["admin"])
    provider_bic, _, debtor_bic, debtor, creditor_bic, creditor, quote = await _corridor(
        http, credentials, "EUR/USD", "1.0800", "1.0840", target_amount="1080.00"
    )
    assert (quote["target_amount"], quote["fixed"]) == ("1080.00", "TARGET")
    async with sessions() as session, session.begin():
        for currency in ("EUR", "USD"):
            await ensure_open_window(session, currency)
    source = Decimal(quote["source_amount"])
    e2e = f"FXN-{uuid.uuid4().hex[:12]}"
    body = _fx_body(e2e, quote, debtor_bic, creditor_bic)
    accepted = await http.post("/v1/payments", json=body, headers=debtor)
    assert accepted.status_code == 202, accepted.text
    payment_id = accepted.json()["payment_id"]
    legs = (await wait_for_status(http, payment_id, debtor, {"AWAITING_SETTLEMENT"}))["fx"]["legs"]
    assert [(leg["currency"], leg["settlement_mode"]) for leg in legs] == [("EUR", "NET"), ("USD", "NET")]

    # The EUR window: the debtor agent funds its leg; the provider is credited in escrow only.
    eur, state = await _run_window(temporal_env, settings, "EUR", funding_timeout_s=60)
    window = (await http.get(f"/v1/clearing/windows/{state.window_id}", headers=admin)).json()
    positions = {p["bic"]: Decimal(p["net"]) for p in window["positions"]}
    assert positions[debtor_bic] == -source and provider_bic not in positions
    assert Decimal(window["escrowed_amount"]) >= source
    assert sum(positions.values()) + Decimal(window["escrowed_amount"]) == 0
    for instruction in state.instructions:  # (any other bank's obligations in the window too)
        await _fund(http, credentials, instruction.reference, instruction.amount, "EUR")
    assert (await eur.result()).status == "SETTLED"
    for _ in range(600):  # (30 s: the window's signal, then the payment's step)
        legs = await _legs(sessions, payment_id)
        if legs[0].status == ObligationStatus.SETTLED:
            break
        await asyncio.sleep(0.05)
    assert [leg.status for leg in legs] == [ObligationStatus.SETTLED, ObligationStatus.PENDING]
    assert (await http.get(f"/v1/payments/{payment_id}", headers=debtor)).json()["status"] == "AWAITING_SETTLEMENT"
    assert await _balances(sessions, provider_bic, "EUR") == {"escrow": source}

    # The USD window: the provider funds its leg; both legs are paid in one transaction.
    usd, state = await _run_window(temporal_env, settings, "USD", funding_timeout_s=60)
    provider_instruction = next(i for i in state.instructions if i.bic == provider_bic)
    assert provider_instruction.amount == Decimal("1080.00")
    for instruction in state.instructions:
        await _fund(http, credentials, instruction.reference, instruction.amount, "USD")
    assert (await usd.result()).status == "SETTLED"
    done = await wait_for_status(http, payment_id, creditor, {"COMPLETED"})
    assert {leg["status"] for leg in done["fx"]["legs"]} == {"SETTLED"}
    assert done["token"]["currency"] == "USD" and done["token"]["amount"] == "1080.00"
    assert await _balances(sessions, provider_bic, "EUR") == {"token": source}
    assert await _balances(sessions, creditor_bic, "USD") == {"token": Decimal("1080.00")}
    assert await _balances(sessions, debtor_bic, "EUR") == {"fiat": source}
    # The creditor agent's camt.054 and statement show its credit: the escrow paid out to it.
    notified = await http.get(f"/v1/payments/{payment_id}/camt054", headers=creditor)
    assert notified.status_code == 200 and b'Ccy="USD"' in notified.content and b"XBCT" in notified.content
    postings: list = []
    for _ in range(100):  # a statement runs until about a second ago: every posting committed
        postings = (await http.get("/v1/accounts/USD/statement", headers=creditor)).json()["postings"]
        if postings:
            break
        await asyncio.sleep(0.2)
    assert [(p["kind"], p["direction"], p["amount"]) for p in postings] == [("escrow_released", "CRDT", "1080.00")]
    assert await money_violations(sessions) == []


async def _submit_fx(
    skipping_env, sessions, settings, debtor: str, creditor: str, quote: dict, *, urgent: bool = False
):
    new = new_payment(
        f"FXP-{uuid.uuid4().hex[:12]}",
        quote["source_amount"],
        quote["source_currency"],
        instructing_bic=debtor,
        debtor_agent_bic=debtor,
        creditor_agent_bic=creditor,
        urgent=urgent,
        fx_quote_id=uuid.UUID(quote["quote_id"]),
    )
    async with sessions() as session:
        [intake] = await submit_payments(session, skipping_env.client, settings, [new], actor="test")
    for _ in range(600):  # (30 s)
        async with sessions() as session:
            if (await session.get(Payment, intake.payment_id)).status == PaymentStatus.AWAITING_SETTLEMENT:
                return new, intake
        await asyncio.sleep(0.05)
    raise AssertionError("the payment never reached AWAITING_SETTLEMENT")


async def _agent_books(sessions, client, reference: str, amount, currency: str) -> None:
    body = build_camt054(
        [BookingSpec(end_to_end_id=reference, amount=Decimal(amount), currency=currency,
                     entry_reference=f"X{uuid.uuid4().hex[:20]}")],
        message_id=f"M{uuid.uuid4().hex[:20]}",
    )  # fmt: skip
    async with sessions() as session:
        [result] = await receive_camt054(session, client, parse_camt054(body), body, actor="test", start_wait_s=0)
    assert result.outcome == EntryOutcome.MATCHED, result


async def test_a_leg_that_cannot_be_funded_unwinds_the_other_so_no_one_holds_one_leg(
    http, credentials, sessions, settings, skipping_env
):
    """The EUR leg settles into the provider's escrow; the provider never funds the USD
    leg, which its window's fallback rolls; at the deadline the USD leg is released and
    the EUR leg goes back to the debtor agent: the provider holds no EUR, the creditor
    agent no USD. Days of waiting, skipped by the time-skipping server."""
    provider_bic, _, debtor_bic, debtor, creditor_bic, _, quote = await _corridor(
        http, credentials, "EUR/USD", "1.0810", "1.0860", source_amount="500.00"
    )
    task_queue = f"fx-pvp-{uuid.uuid4()}"
    settings = settings.model_copy(update={"task_queue": task_queue, "payment_deadline_s": 3 * 24 * 3600})
    async with sessions() as session, session.begin():
        for currency in ("EUR", "USD"):
            await ensure_open_window(session, currency)
    async with build_worker(skipping_env.client, sessions, settings, task_queue):
        new, intake = await _submit_fx(skipping_env, sessions, settings, debtor_bic, creditor_bic, quote)
        handle = skipping_env.client.get_workflow_handle_for(PaymentWorkflow.run, intake.workflow_id)
        source, target = await _legs(sessions, intake.payment_id)
        assert source.escrowed and target.escrowed

        # EUR: netted, funded by the debtor agent, settled: the leg sits in escrow.
        eur = await _close_and_net(sessions, "EUR")
        for reference, amount in eur.items():
            await _agent_books(sessions, skipping_env.client, reference, amount, "EUR")
        settled = await _settle(sessions, skipping_env, intake.workflow_id, "EUR")
        assert settled.status == "SETTLED"
        assert await _until(lambda legs: legs[0].status == ObligationStatus.SETTLED, sessions, intake.payment_id)
        assert (await _balances(sessions, provider_bic, "EUR"))["escrow"] == Decimal("500.00")

        # USD: the provider does not fund; the fallback rolls its leg into the next window.
        usd = await _close_and_net(sessions, "USD")
        assert len(usd) >= 1
        rolled = await _settle(sessions, skipping_env, intake.workflow_id, "USD")
        assert rolled.status == "PARTIALLY_SETTLED" and rolled.rolled_obligations >= 1
        [_, target] = await _legs(sessions, intake.payment_id)
        assert target.status == ObligationStatus.PENDING and target.rolled_from_window_id == rolled.window_id

        # The deadline: no leg paid.
        await skipping_env.sleep(timedelta(days=3, minutes=1))
        state = await handle.result()
    assert state.status == PaymentStatus.EXPIRED and state.rejection_code == "AB01"
    source, target = await _legs(sessions, intake.payment_id)
    assert (source.status, target.status) == (ObligationStatus.UNWOUND, ObligationStatus.RELEASED)
    assert await _balances(sessions, provider_bic, "EUR") == {}
    assert await _balances(sessions, debtor_bic, "EUR") == {"fiat": Decimal("500.00"), "token": Decimal("500.00")}
    assert await _balances(sessions, creditor_bic, "USD") == {}
    # The debtor agent's statement: its funding minted, the leg out to escrow, and back.
    postings: list = []
    for _ in range(100):  # a statement runs until about a second ago
        postings = (await http.get("/v1/accounts/EUR/statement", headers=debtor)).json()["postings"]
        if len(postings) >= 3:
            break
        await asyncio.sleep(0.2)
    assert [(p["kind"], p["direction"]) for p in postings] == [
        ("fiat_booked", "CRDT"), ("obligation", "DBIT"), ("escrow_unwound", "CRDT")
    ]  # fmt: skip
    assert await money_violations(sessions) == []


async def _close_and_net(sessions, currency: str) -> dict[str, Decimal]:
    """Close the currency's window and net it; its funding instructions, reference → amount."""
    async with sessions() as session, session.begin():
        window_id = await close_window(session, currency, closed_by=f"test-{uuid.uuid4().hex}")
        assert window_id is not None
        summary = await net_window(session, window_id, funding_timeout_s=3600)
    _close_and_net.last = window_id  # type: ignore[attr-defined]
    return {i.reference: i.amount for i in summary.instructions}


async def _settle(sessions, skipping_env, workflow_id: str, currency: str):
    window_id = _close_and_net.last  # type: ignore[attr-defined]
    async with sessions() as session, session.begin():
        outcome = await settle_window(session, window_id)
    # What the window's workflow does next: tell the payments it settled.
    await skipping_env.client.get_workflow_handle(workflow_id).signal(
        PaymentWorkflow.window_settled,
        WindowSettlement(window_id=window_id, settlement_reference=outcome.settlement_reference),
    )
    return outcome


async def _until(check, sessions, payment_id, timeout_s: float = 30) -> bool:
    for _ in range(int(timeout_s / 0.05)):
        if check(await _legs(sessions, payment_id)):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_a_gross_leg_booked_alone_is_refunded_to_its_payer_when_the_payment_expires(
    http, credentials, sessions, settings, skipping_env
):
    provider_bic, _, debtor_bic, _, creditor_bic, _, quote = await _corridor(
        http, credentials, "AED/INR", "22.67", "22.70", source_amount="250.00"
    )
    task_queue = f"fx-gross-{uuid.uuid4()}"
    settings = settings.model_copy(update={"task_queue": task_queue, "payment_deadline_s": 3 * 24 * 3600})
    async with build_worker(skipping_env.client, sessions, settings, task_queue):
        new, intake = await _submit_fx(skipping_env, sessions, settings, debtor_bic, creditor_bic, quote, urgent=True)
        handle = skipping_env.client.get_workflow_handle_for(PaymentWorkflow.run, intake.workflow_id)
        # Only the provider's INR is booked: nothing moves.
        await _agent_books(sessions, skipping_env.client, new.end_to_end_id, quote["target_amount"], "INR")
        await asyncio.sleep(0.3)
        assert [leg.status for leg in await _legs(sessions, intake.payment_id)] == [ObligationStatus.PENDING] * 2
        await skipping_env.sleep(timedelta(days=3, minutes=1))
        state = await handle.result()
    assert state.status == PaymentStatus.EXPIRED
    assert [leg.status for leg in await _legs(sessions, intake.payment_id)] == [ObligationStatus.RELEASED] * 2
    async with sessions() as session:
        entry = await session.scalar(select(BankNotification).where(BankNotification.payment_id == intake.payment_id))
        assert entry.outcome == EntryOutcome.PAYMENT_NOT_AWAITING
    # The sweeper's refund goes to the leg's payer: the provider, not the debtor agent.
    async with sessions() as session, session.begin():
        await refunds.instruct_stranded(session, unmatched_after_s=3600)
    async with sessions() as session:
        refund = await session.scalar(select(Refund).where(Refund.entry_id == entry.id))
        provider_id = await session.scalar(select(Participant.id).where(Participant.bic == quote["provider_bic"]))
    assert refund is not None and refund.participant_id == provider_id
    assert refund.amount == Decimal(quote["target_amount"]) and refund.currency == "INR"
    assert await _balances(sessions, creditor_bic, "INR") == {}
    assert await money_violations(sessions) == []


async def test_with_cross_currency_payments_switched_off_a_quote_is_refused_and_nothing_recorded(
    http, credentials, sessions, settings, temporal_env
):
    debtor_bic, debtor = await new_bank(http, auth(credentials["admin"]), "AE")
    await _provider(http, credentials, "AED/INR", "22.60", "22.70")
    quote = await _quote(http, debtor, "AED", "INR", source_amount="10.00")
    new = new_payment(
        f"FXOFF-{uuid.uuid4().hex[:10]}", "10.00", instructing_bic=debtor_bic, debtor_agent_bic=debtor_bic,
        fx_quote_id=uuid.UUID(quote["quote_id"]),
    )  # fmt: skip
    off = settings.model_copy(update={"fx_payments": False})
    async with sessions() as session:
        with pytest.raises(Refused) as refused:
            await submit_payments(session, temporal_env.client, off, [new], actor="test")
        assert refused.value.kind == "fx-payments-disabled"
        assert await session.scalar(select(Payment.id).where(Payment.end_to_end_id == new.end_to_end_id)) is None
    # One recorded while they were on is still found as what it is: a duplicate, not refused.
    async with sessions() as session:
        [first] = await submit_payments(session, temporal_env.client, settings, [new], actor="test")
    async with sessions() as session:
        [again] = await submit_payments(session, temporal_env.client, off, [new], actor="test")
    assert first.created and not again.created and again.payment_id == first.payment_id


async def test_each_leg_counts_against_its_own_payers_net_debit_cap(http, credentials, sessions, worker):
    admin = auth(credentials["admin"])
    provider_bic, _, debtor_bic, debtor, creditor_bic, _, _ = await _corridor(
        http, credentials, "EUR/USD", "1.0820", "1.0870", source_amount="1.00"
    )
    async with sessions() as session, session.begin():
        for currency in ("EUR", "USD"):
            await ensure_open_window(session, currency)

    async def pay(amount: str) -> dict:
        quote = await _quote(http, debtor, "EUR", "USD", source_amount=amount)
        body = _fx_body(f"FXC-{uuid.uuid4().hex[:10]}", quote, debtor_bic, creditor_bic)
        accepted = await http.post("/v1/payments", json=body, headers=debtor)
        assert accepted.status_code == 202, accepted.text
        return await wait_for_status(http, accepted.json()["payment_id"], debtor, {"REJECTED", "AWAITING_SETTLEMENT"})

    def cap(bic: str, currency: str, amount: str):
        return http.put(f"/v1/admin/banks/{bic}/net-debit-caps/{currency}", json={"cap": amount}, headers=admin)

    # The provider's USD leg past the provider's cap: refused, its limit not told to the debtor agent.
    assert (await cap(provider_bic, "USD", "100.00")).status_code == 200
    refused = await pay("500.00")
    assert (refused["status"], refused["rejection_code"]) == ("REJECTED", "RC11"), refused
    assert "100.00" not in refused["rejection_reason"] and provider_bic in refused["rejection_reason"]
    assert refused["fx"]["legs"] == []  # no leg was written
    # The debtor agent's EUR leg past its own cap: AM14, as for a payment in one currency.
    assert (await cap(provider_bic, "USD", "1000000.00")).status_code == 200
    assert (await cap(debtor_bic, "EUR", "100.00")).status_code == 200
    limited = await pay("500.00")
    assert (limited["status"], limited["rejection_code"]) == ("REJECTED", "AM14"), limited
    assert "net debit cap of 100.00 EUR" in limited["rejection_reason"]
    assert await money_violations(sessions) == []


async def test_a_recall_before_both_legs_are_booked_cancels_both_and_the_booked_fiat_goes_back(
    http, credentials, sessions, temporal_env
):
    provider_bic, provider, debtor_bic, debtor, creditor_bic, _, quote = await _corridor(
        http, credentials, "AED/INR", "22.69", "22.70", source_amount="300.00"
    )
    e2e = f"FXR-{uuid.uuid4().hex[:12]}"
    body = _fx_body(e2e, quote, debtor_bic, creditor_bic, urgent=True)
    accepted = await http.post("/v1/payments", json=body, headers=debtor)
    assert accepted.status_code == 202, accepted.text
    payment_id = accepted.json()["payment_id"]
    await wait_for_status(http, payment_id, debtor, {"AWAITING_SETTLEMENT"})
    # The provider's INR is booked; the debtor agent's AED not yet: the recall cancels both legs.
    assert (await _book(http, credentials, e2e, quote["target_amount"], "INR"))["matched"]
    recalled = await http.post("/v1/cancellations", json={"payment_id": payment_id, "reason": "DUPL"}, headers=debtor)
    assert recalled.status_code == 200 and recalled.json()["payment_status"] == "CANCELLED", recalled.text
    cancelled = (await http.get(f"/v1/payments/{payment_id}", headers=debtor)).json()
    assert {leg["status"] for leg in cancelled["fx"]["legs"]} == {"RELEASED"}
    # The provider is told; its booked INR is to go back to it (the sweeper's refund).
    told = await _events(http, provider, 2)
    assert [e["type"] for e in told] == ["payment.awaiting_settlement", "payment.cancelled"]
    async with sessions() as session, session.begin():
        await refunds.instruct_stranded(session, unmatched_after_s=3600)
    async with sessions() as session:
        entry = await session.scalar(
            select(BankNotification).where(BankNotification.payment_id == uuid.UUID(payment_id))
        )
        refund = await session.scalar(select(Refund).where(Refund.entry_id == entry.id))
        provider_id = await session.scalar(select(Participant.id).where(Participant.bic == provider_bic))
    assert entry.outcome == EntryOutcome.PAYMENT_NOT_AWAITING
    assert refund is not None and refund.participant_id == provider_id and refund.currency == "INR"
    # Its workflow ended with it.
    handle = temporal_env.client.get_workflow_handle_for(PaymentWorkflow.run, accepted.json()["workflow_id"])
    state = await asyncio.wait_for(handle.result(), timeout=10)
    assert state.status == PaymentStatus.CANCELLED
    assert await money_violations(sessions) == []


async def test_a_pacs008_of_several_conversions_takes_one_quote_each_or_records_nothing(http, credentials, sessions):
    _, _, debtor_bic, debtor, creditor_bic, _, first = await _corridor(
        http, credentials, "AED/INR", "22.61", "22.70", source_amount="100.00"
    )
    second = await _quote(http, debtor, "AED", "INR", source_amount="100.00")
    assert (second["target_amount"], second["rate"]) == (first["target_amount"], first["rate"])

    def spec(e2e: str):
        return pacs008_spec(
            e2e, amount=first["target_amount"], currency="INR", debtor_agent_bic=debtor_bic,
            creditor_agent_bic=creditor_bic, urgent=True, instructed_amount=Decimal("100.00"),
            instructed_currency="AED", exchange_rate=Decimal(first["rate"]),
        )  # fmt: skip

    def message(*e2es: str) -> bytes:
        return build_pacs008(
            [spec(e) for e in e2es], message_id=f"M{uuid.uuid4().hex[:20]}", instructing_agent_bic=debtor_bic
        )

    xml = {**debtor, "Content-Type": AGENT_XML}
    tag = uuid.uuid4().hex[:8]
    # Three conversions of the same terms, two quotes: refused whole, nothing taken.
    three = await http.post("/v1/payments", content=message(f"{tag}-1", f"{tag}-2", f"{tag}-3"), headers=xml)
    assert three.status_code == 422 and three.json()["type"].endswith("fx-quote-no-match"), three.text
    async with sessions() as session:
        assert await session.scalar(select(Payment.id).where(Payment.end_to_end_id.like(f"{tag}-%"))) is None
    # Two: each takes its own quote.
    two = await http.post("/v1/payments", content=message(f"{tag}-1", f"{tag}-2"), headers=xml)
    assert two.status_code == 202, two.text
    taken = set()
    for transaction in two.json():
        shown = await wait_for_status(http, transaction["payment_id"], debtor, {"AWAITING_SETTLEMENT"})
        taken.add(shown["fx"]["quote_id"])
    assert taken == {first["quote_id"], second["quote_id"]}
