"""Clearing windows on the real servers: netting, fundings, settlement, the fallback,
the net debit cap, the cut-off under load, and the schedules.

Each test clears its own currency (EUR, USD, INR) so tests do not share windows; AED,
which the other tests settle gross, never gets a window here.
"""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

from sqlalchemy import func, select

from activities.clearing import ensure_open_window
from deltran.db.tables import Account, ClearingWindow, Obligation
from deltran.shared import ClearingInput
from tests.support.payments import auth, camt054_for, wait_for_status
from worker.schedules import ensure_schedules, schedule_id
from workflows.clearing import ClearingWindowWorkflow

ACCOUNTS = {
    "EBILAEAD": {"iban": "AE070331234567890123456"},
    "NBADAEAA": {"iban": "AE070331234567890123456"},
    "DEUTDEFF": {"iban": "DE89370400440532013000"},
    "BNPAFRPP": {"iban": "FR1420041010050500013M02606"},
    "INGBNL2A": {"iban": "NL91ABNA0417164300"},
}


def party(bic: str, name: str) -> dict:
    return {"name": name, **ACCOUNTS.get(bic, {"account": "30001234567"}), "agent_bic": bic}


def net_payment(e2e: str, payer: str, payee: str, amount: str, currency: str) -> dict:
    return {
        "end_to_end_id": e2e,
        "amount": amount,
        "currency": currency,
        "debtor": party(payer, f"Customer of {payer}"),
        "creditor": party(payee, f"Customer of {payee}"),
    }


async def submit_all(http, credentials, specs, currency):
    """specs: (payer, payee, amount). Returns payment ids once all await settlement."""
    tag = uuid.uuid4().hex[:8]
    responses = await asyncio.gather(
        *(
            http.post(
                "/v1/payments",
                json=net_payment(f"N{tag}-{i}", payer, payee, amount, currency),
                headers=auth(credentials["banks"][payer]),
            )
            for i, (payer, payee, amount) in enumerate(specs)
        )
    )
    assert all(r.status_code == 202 for r in responses), [r.text for r in responses]
    ids = [(r.json()["payment_id"], payer) for r, (payer, _, _) in zip(responses, specs, strict=True)]
    for payment_id, payer in ids:
        state = await wait_for_status(http, payment_id, auth(credentials["banks"][payer]), {"AWAITING_SETTLEMENT"})
        assert state["obligation"]["settlement_mode"] == "NET", state["obligation"]
    return [payment_id for payment_id, _ in ids]


async def fund(http, credentials, instruction, currency):
    xml = camt054_for(
        instruction["reference"], instruction["amount"], currency, entry_reference=f"F{uuid.uuid4().hex[:20]}"
    )
    response = await http.post(
        "/v1/notifications/camt054",
        content=xml,
        headers={**auth(credentials["settlement_agent"]), "Content-Type": "application/xml"},
    )
    assert response.status_code == 200 and response.json()["entries"][0]["matched"], response.text


async def supply_and_fiat(sessions, currency):
    async with sessions() as session:
        rows = (
            await session.execute(
                select(Account.kind, func.sum(Account.credits_posted - Account.debits_posted))
                .where(Account.currency == currency)
                .group_by(Account.kind)
            )
        ).all()
    totals = dict(rows)
    return totals.get("token", Decimal(0)), -totals.get("fiat", Decimal(0))


async def test_a_dozen_payments_net_fund_settle_and_complete(http, credentials, sessions, worker):
    async with sessions() as session, session.begin():
        await ensure_open_window(session, "EUR")
    specs = [
        ("DEUTDEFF", "BNPAFRPP", "120000.00"),
        ("BNPAFRPP", "INGBNL2A", "95000.00"),
        ("INGBNL2A", "DEUTDEFF", "110000.00"),
        ("EBILAEAD", "DEUTDEFF", "40000.00"),
        ("DEUTDEFF", "EBILAEAD", "35000.00"),
        ("SBININBB", "BNPAFRPP", "20000.00"),
        ("BNPAFRPP", "SBININBB", "25000.00"),
        ("CHASUS33", "INGBNL2A", "60000.00"),
        ("INGBNL2A", "CHASUS33", "58000.00"),
        ("HDFCINBB", "EBILAEAD", "15000.00"),
        ("EBILAEAD", "HDFCINBB", "12500.00"),
        ("CITIUS33", "DEUTDEFF", "30000.00"),
    ]
    payment_ids = await submit_all(http, credentials, specs, "EUR")
    admin = auth(credentials["admin"])
    closed = await http.post("/v1/clearing/windows/close?currency=EUR", headers=admin)
    assert closed.status_code == 202, closed.text
    window = closed.json()
    assert window["status"] == "AWAITING_FUNDING" and window["obligations_count"] == len(specs)
    gross = sum(Decimal(a) for _, _, a in specs)
    assert Decimal(window["gross_amount"]) == gross
    nets = [Decimal(p["net"]) for p in window["positions"]]
    assert sum(nets) == 0
    assert Decimal(window["net_amount"]) == -sum(n for n in nets if n < 0) < gross
    assert Decimal(window["liquidity_saved"]) == gross - Decimal(window["net_amount"])
    assert Decimal(0) < Decimal(window["netting_efficiency"]) <= 1
    assert {i["bic"] for i in window["instructions"]} == {
        p["bic"] for p in window["positions"] if Decimal(p["net"]) < 0
    }

    # A bank sees its own position and instruction only.
    as_bank = (
        await http.get(f"/v1/clearing/windows/{window['id']}", headers=auth(credentials["banks"]["DEUTDEFF"]))
    ).json()
    assert {p["bic"] for p in as_bank["positions"]} == {"DEUTDEFF"}

    for instruction in window["instructions"]:
        await fund(http, credentials, instruction, "EUR")
    for payment_id, (payer, _, _) in zip(payment_ids, specs, strict=True):
        done = await wait_for_status(http, payment_id, auth(credentials["banks"][payer]), {"COMPLETED"}, timeout_s=60)
        assert done["obligation"]["clearing_window_id"] == window["id"]
        assert done["token"] is not None
    settled = (await http.get("/v1/clearing/windows/latest?currency=EUR", headers=admin)).json()
    assert settled["id"] == window["id"] and settled["status"] == "SETTLED"
    assert {i["status"] for i in settled["instructions"]} == {"FUNDED"}
    supply, fiat = await supply_and_fiat(sessions, "EUR")
    assert supply == fiat > 0


async def test_fallback_settles_what_the_fundings_cover_and_rolls_the_rest(
    http, credentials, sessions, temporal_env, settings, worker
):
    async with sessions() as session, session.begin():
        await ensure_open_window(session, "USD")
    supply_before, _ = await supply_and_fiat(sessions, "USD")  # other tests mint USD too
    # CHASUS33 owes 40 net and funds it; EBILAEAD owes 30 net and defaults.
    specs = [("CHASUS33", "CITIUS33", "100.00"), ("CITIUS33", "CHASUS33", "60.00"), ("EBILAEAD", "SBININBB", "30.00")]
    payment_ids = await submit_all(http, credentials, specs, "USD")
    handle = await temporal_env.client.start_workflow(
        ClearingWindowWorkflow.run,
        # Long enough for Chase's funding to land through the API with three test processes
        # on two cores; EBILAEAD's default then costs the test this long.
        ClearingInput(currency="USD", funding_timeout_s=6),
        id=f"clearing-USD-test-{uuid.uuid4().hex[:8]}",
        task_queue=settings.task_queue,
    )
    state = None
    for _ in range(100):
        state = await handle.query(ClearingWindowWorkflow.state)
        if state.instructions:
            break
        await asyncio.sleep(0.1)
    assert state is not None and {i.bic: i.amount for i in state.instructions} == {
        "CHASUS33": Decimal("40.00"),
        "EBILAEAD": Decimal("30.00"),
    }
    chase = next(i for i in state.instructions if i.bic == "CHASUS33")
    await fund(http, credentials, {"reference": chase.reference, "amount": "40.00"}, "USD")
    final = await handle.result()
    assert final.status == "PARTIALLY_SETTLED"

    for payment_id, (payer, _, _) in zip(payment_ids[:2], specs[:2], strict=True):
        await wait_for_status(http, payment_id, auth(credentials["banks"][payer]), {"COMPLETED"}, timeout_s=60)
    rolled = (await http.get(f"/v1/payments/{payment_ids[2]}", headers=auth(credentials["banks"]["EBILAEAD"]))).json()
    assert rolled["status"] == "AWAITING_SETTLEMENT"
    assert rolled["obligation"]["rolled_from_window_id"] == str(final.window_id)
    assert rolled["obligation"]["clearing_window_id"] != str(final.window_id)
    assert "fallback" in rolled["obligation"]["fallback_reason"]
    window = (await http.get(f"/v1/clearing/windows/{final.window_id}", headers=auth(credentials["admin"]))).json()
    assert {i["bic"]: i["status"] for i in window["instructions"]} == {"CHASUS33": "FUNDED", "EBILAEAD": "EXPIRED"}
    supply, fiat = await supply_and_fiat(sessions, "USD")
    assert supply == fiat and supply - supply_before == Decimal("40.00")


async def test_net_debit_cap_rejects_the_payment_that_would_breach_it(http, credentials, sessions, worker):
    async with sessions() as session, session.begin():
        await ensure_open_window(session, "INR")
    admin = auth(credentials["admin"])
    cap = await http.put("/v1/admin/banks/ICICINBB/net-debit-caps/INR", json={"cap": "1000.00"}, headers=admin)
    assert cap.status_code == 200, cap.text
    bank = auth(credentials["banks"]["ICICINBB"])
    first = await http.post(
        "/v1/payments",
        json=net_payment(f"CAP-{uuid.uuid4().hex[:8]}", "ICICINBB", "UTIBINBB", "800.00", "INR"),
        headers=bank,
    )
    await wait_for_status(http, first.json()["payment_id"], bank, {"AWAITING_SETTLEMENT"})
    second = await http.post(
        "/v1/payments",
        json=net_payment(f"CAP-{uuid.uuid4().hex[:8]}", "ICICINBB", "UTIBINBB", "300.00", "INR"),
        headers=bank,
    )
    rejected = await wait_for_status(http, second.json()["payment_id"], bank, {"REJECTED", "AWAITING_SETTLEMENT"})
    assert rejected["status"] == "REJECTED" and rejected["rejection_code"] == "AM14"
    assert rejected["obligation"] is None
    # Urgent payments settle gross, outside the window and its cap.
    urgent = await http.post(
        "/v1/payments",
        json={**net_payment(f"CAP-{uuid.uuid4().hex[:8]}", "ICICINBB", "UTIBINBB", "300.00", "INR"), "urgent": True},
        headers=bank,
    )
    routed = await wait_for_status(http, urgent.json()["payment_id"], bank, {"AWAITING_SETTLEMENT", "REJECTED"})
    assert routed["obligation"]["settlement_mode"] == "GROSS" and "urgent" in routed["obligation"]["routing_reason"]


async def test_closing_while_payments_arrive_puts_each_in_exactly_one_window(http, credentials, sessions, worker):
    async with sessions() as session, session.begin():
        first_window = await ensure_open_window(session, "EUR")
    pairs = [("DEUTDEFF", "BNPAFRPP"), ("BNPAFRPP", "DEUTDEFF"), ("INGBNL2A", "DEUTDEFF")]
    tag = uuid.uuid4().hex[:8]

    async def pay(i: int):
        payer, payee = pairs[i % len(pairs)]
        response = await http.post(
            "/v1/payments",
            json=net_payment(f"CUT{tag}-{i}", payer, payee, f"{100 + i}.00", "EUR"),
            headers=auth(credentials["banks"][payer]),
        )
        assert response.status_code == 202
        return response.json()["payment_id"], payer

    async def close_midway():
        await asyncio.sleep(0.3)
        response = await http.post("/v1/clearing/windows/close?currency=EUR", headers=auth(credentials["admin"]))
        assert response.status_code == 202, response.text
        return response.json()

    results = await asyncio.gather(close_midway(), *(pay(i) for i in range(30)))
    closed, submitted = results[0], results[1:]
    for payment_id, payer in submitted:
        await wait_for_status(http, payment_id, auth(credentials["banks"][payer]), {"AWAITING_SETTLEMENT"})
    ids = [uuid.UUID(p) for p, _ in submitted]
    async with sessions() as session:
        windows = (
            (await session.execute(select(Obligation.clearing_window_id).where(Obligation.payment_id.in_(ids))))
            .scalars()
            .all()
        )
        closed_count = await session.scalar(
            select(func.count()).select_from(Obligation).where(Obligation.clearing_window_id == first_window)
        )
        open_window = await session.scalar(
            select(ClearingWindow.id).where(ClearingWindow.currency == "EUR", ClearingWindow.status == "OPEN")
        )
    assert len(windows) == 30 and None not in windows  # none lost, each in a window
    assert set(windows) <= {first_window, open_window}
    # The closed window netted exactly the obligations that joined it, no more, no less.
    assert closed["id"] == str(first_window) and closed["obligations_count"] == closed_count
    for instruction in closed["instructions"]:  # let the closed window finish
        await fund(http, credentials, instruction, "EUR")
    # And the window the late ones joined: nothing left open for the next test that closes
    # EUR in this process (its netting would count these and wait for their fundings).
    second = await http.post("/v1/clearing/windows/close?currency=EUR", headers=auth(credentials["admin"]))
    assert second.status_code == 202, second.text
    for instruction in second.json()["instructions"]:
        await fund(http, credentials, instruction, "EUR")
    for payment_id, payer in submitted:
        await wait_for_status(http, payment_id, auth(credentials["banks"][payer]), {"COMPLETED"}, timeout_s=60)


async def test_schedule_creation_is_idempotent(temporal_env, sessions, settings):
    eur_only = settings.model_copy(update={"supported_currencies": ("EUR",), "clearing_interval_s": 86400})
    handle = temporal_env.client.get_schedule_handle(schedule_id("EUR"))
    try:
        assert await ensure_schedules(temporal_env.client, sessions, eur_only) == ["clearing-EUR"]
        await handle.pause(note="test: never fire")
        assert await ensure_schedules(temporal_env.client, sessions, eur_only) == ["clearing-EUR"]
        ids = [s.id async for s in await temporal_env.client.list_schedules()]
        assert ids.count("clearing-EUR") == 1
        description = await handle.describe()
        assert description.schedule.spec.intervals[0].every.total_seconds() == 86400
        assert description.schedule.policy.overlap.name == "SKIP"
    finally:
        await handle.delete()
    async with sessions() as session:
        open_windows = await session.scalar(
            select(func.count())
            .select_from(ClearingWindow)
            .where(ClearingWindow.currency == "EUR", ClearingWindow.status == "OPEN")
        )
    assert open_windows == 1
