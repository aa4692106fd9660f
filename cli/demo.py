"""`deltran demo …`: the README's demo scenarios, against the stack `make up` started.

They talk to the API only (and, for reset, to the database and Temporal the same
DELTRAN_* settings name), with the keys `make up` wrote to $DELTRAN_HOME/credentials.json.

  uae-india   one 100,000 AED payment, Emirates NBD → State Bank of India, step by step;
              SBI told by webhook, then redeeming part of its tokens
  load        payments for N seconds with live throughput, p95 and error rate
  netting     100 payments among a dozen banks, one window: gross vs net per bank
  fx          100,000 AED from Emirates NBD arriving as INR at State Bank of India: a quote,
              two legs netted in their windows, paid together (payment versus payment)
  reset       forget every payment, window and token (participants and keys stay)
  seed        the demo banks, their keys and the schedules
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import httpx
from rich.console import Console
from rich.live import Live
from rich.table import Table

from cli.webhook_receiver import Receiver
from deltran.config import Settings
from deltran.iso20022.camt054 import BookingSpec, build_camt054
from deltran.iso20022.camt056 import RecallRequest, build_camt056
from deltran.vocabulary import FINAL_PAYMENT_STATUSES, WindowStatus

# Soft wrap: long lines stay whole when the output is piped or captured.
console = Console(soft_wrap=True)

# Registry-valid IBANs where the country has them; India and the US use account numbers.
IBANS = {
    "EBILAEAD": "AE070331234567890123456",
    "NBADAEAA": "AE250260001015333439504",
    "ADCBAEAA": "AE880300000123456789012",
    "MASHAEAD": "AE070331234567890123456",
    "DEUTDEFF": "DE89370400440532013000",
    "BNPAFRPP": "FR1420041010050500013M02606",
    "INGBNL2A": "NL91ABNA0417164300",
}
DEMO_BICS = (
    "EBILAEAD",
    "SBININBB",
    "NBADAEAA",
    "ADCBAEAA",
    "MASHAEAD",
    "HDFCINBB",
    "ICICINBB",
    "UTIBINBB",
    "CHASUS33",
    "CITIUS33",
    "DEUTDEFF",
    "BNPAFRPP",
)


class Api:
    """The running stack's API, with the demo keys."""

    def __init__(self, settings: Settings) -> None:
        self.keys = json.loads(settings.credentials_path.read_text())
        self.base_url = f"http://{settings.api_host}:{settings.api_port}"
        self.ui = f"http://127.0.0.1:{settings.temporal_ui_port}/namespaces/{settings.temporal_namespace}/workflows"

    def bank(self, bic: str) -> dict:
        return {"Authorization": f"Bearer {self.keys['banks'][bic]}"}

    @property
    def admin(self) -> dict:
        return {"Authorization": f"Bearer {self.keys['admin']}"}

    @property
    def agent(self) -> dict:
        return {"Authorization": f"Bearer {self.keys['settlement_agent']}", "Content-Type": "application/xml"}


def party(bic: str, name: str) -> dict:
    account = {"iban": IBANS[bic]} if bic in IBANS else {"account": "30001234567"}
    return {"name": name, **account, "agent_bic": bic}


def booking_xml(references: list[tuple[str, str]], currency: str) -> bytes:
    """One camt.054 booking each (EndToEndId, amount) — what the settlement bank sends."""
    return build_camt054(
        [
            BookingSpec(
                end_to_end_id=ref,
                amount=Decimal(amount),
                currency=currency,
                entry_reference=f"E{uuid.uuid4().hex[:24]}",
                bank_reference=f"B{uuid.uuid4().hex[:24]}",
                booking_date=date.today(),
            )
            for ref, amount in references
        ],
        message_id=f"DEMO-{uuid.uuid4().hex[:24]}",
    )


# -- recall --------------------------------------------------------------------------------


def recall(settings: Settings) -> int:
    """The exceptions path, end to end: a payment recalled before it settles (camt.056 in,
    camt.029 CNCL out), one recalled after (PDCR: State Bank of India accepts, a return),
    and one returned in part by the creditor agent (AC04, closed account)."""
    api = Api(settings)
    tag = uuid.uuid4().hex[:8].upper()
    with httpx.Client(base_url=api.base_url, timeout=30) as http:
        console.rule("[bold]Recall and return: Emirates NBD → State Bank of India")
        sent = _recall_payment(http, api, f"RCL-{tag}-1", "5000.00")
        console.print(f"1. sent by mistake    payment {sent} (5,000.00 AED), awaiting its camt.054")
        body = build_camt056(
            RecallRequest(
                case_id=f"CASE-{tag}", created_at=datetime.now(UTC), assigner_bic="EBILAEAD",
                assignee_bic=settings.bic, reason_code="DUPL", additional_info="sent twice by the customer",
                uetr=None, end_to_end_id=f"RCL-{tag}-1",
            )
        )  # fmt: skip
        answer = http.post(
            "/v1/cancellations", content=body, headers={**api.bank("EBILAEAD"), "Content-Type": "application/xml"}
        )
        answer.raise_for_status()
        conf = answer.text.split("<Conf>")[1].split("</Conf>")[0]
        state = _follow(http, api, sent, {"CANCELLED"})
        console.print(f"2. camt.056 → camt.029 Conf {conf}: the payment is {state['status']}, its obligation released")

        before = _aed_tokens(http, api, "EBILAEAD")
        settled = _recall_payment(http, api, f"RCL-{tag}-2", "7500.00", settle=True)
        console.print(f"3. settled            payment {settled} (7,500.00 AED): SBI holds its tokens")
        pending = http.post(
            "/v1/cancellations", json={"payment_id": settled, "reason": "FRAD"}, headers=api.bank("EBILAEAD")
        )
        pending.raise_for_status()
        console.print(f"4. recalled (FRAD)    {pending.json()['status']}: settled, so State Bank of India decides")
        listed = http.get("/v1/investigations", headers=api.bank("SBININBB")).json()["items"]
        [case] = [i for i in listed if i["payment_id"] == settled]
        accepted = http.post(f"/v1/investigations/{case['cancellation_id']}/accept", headers=api.bank("SBININBB"))
        accepted.raise_for_status()
        state = _follow(http, api, settled, {"RETURNED"})
        console.print(
            f"5. SBI accepts        recall {accepted.json()['status']}, payment {state['status']}:"
            f" {state['returns'][0]['amount']} AED back to Emirates NBD (pacs.004:"
            f" {api.base_url}/v1/returns/{accepted.json()['return_id']}/pacs004)"
        )

        partly = _recall_payment(http, api, f"RCL-{tag}-3", "12000.00", settle=True)
        returned = http.post(
            "/v1/returns",
            json={"payment_id": partly, "amount": "2000.00", "reason_code": "AC04"},
            headers=api.bank("SBININBB"),
        )
        returned.raise_for_status()
        console.print(
            f"6. returned in part   payment {partly}: {returned.json()['amount']} of 12,000.00 AED (AC04, closed"
            f" account), payment {returned.json()['payment_status']}"
        )
        # Its gross payments were funded with its fiat, minted and moved on to SBI; what
        # came back (7,500 + 2,000) is now tokens in its own account.
        moved = _aed_tokens(http, api, "EBILAEAD") - before
    if moved != Decimal("9500.00"):
        console.print(f"[red]Emirates NBD's AED tokens moved by {moved}, expected +9500.00")
        return 1
    console.print(f"[green]recall and return done[/green]: Emirates NBD holds {moved} AED more tokens, the returns'")
    return 0


def _aed_tokens(http: httpx.Client, api: Api, bic: str) -> Decimal:
    accounts = http.get("/v1/accounts", headers=api.bank(bic)).json()["accounts"]
    return sum((Decimal(a["tokens"]) for a in accounts if a["currency"] == "AED"), Decimal(0))


def _recall_payment(http: httpx.Client, api: Api, e2e: str, amount: str, *, settle: bool = False) -> str:
    body = {
        "end_to_end_id": e2e, "amount": amount, "currency": "AED", "urgent": True,
        "debtor": party("EBILAEAD", "Al Noor Trading LLC"), "creditor": party("SBININBB", "Ganesh Textiles Pvt Ltd"),
    }  # fmt: skip
    accepted = http.post("/v1/payments", json=body, headers=api.bank("EBILAEAD"))
    accepted.raise_for_status()
    payment_id = accepted.json()["payment_id"]
    _follow(http, api, payment_id, {"AWAITING_SETTLEMENT"})
    if settle:
        http.post(
            "/v1/notifications/camt054", content=booking_xml([(e2e, amount)], "AED"), headers=api.agent
        ).raise_for_status()
        _follow(http, api, payment_id, {"COMPLETED"})
    return payment_id


# -- uae-india -----------------------------------------------------------------------------


def uae_india(settings: Settings) -> int:
    api = Api(settings)
    e2e = f"UAE-IN-{uuid.uuid4().hex[:10].upper()}"
    body = {
        "end_to_end_id": e2e,
        "amount": "100000.00",
        "currency": "AED",
        "debtor": party("EBILAEAD", "Al Noor Trading LLC"),
        "creditor": party("SBININBB", "Ganesh Textiles Pvt Ltd"),
        "remittance_info": "Invoice 2026-118",
        "urgent": True,
    }
    receiver = Receiver()  # State Bank of India's webhook endpoint
    receiver.start()
    with httpx.Client(base_url=api.base_url, timeout=30) as http:
        console.rule("[bold]UAE → India: 100,000.00 AED, Emirates NBD → State Bank of India")
        hooked = http.put("/v1/webhook", json={"url": receiver.url}, headers=api.bank("SBININBB"))
        hooked.raise_for_status()
        secret = hooked.json()["secret"]
        console.print(f"0. webhook            SBI's endpoint {receiver.url} (signed with its own secret)")
        try:
            return _payment_and_redemption(http, api, body, e2e, receiver, secret)
        finally:
            http.delete("/v1/webhook", headers=api.bank("SBININBB"))
            receiver.stop()


def _payment_and_redemption(http: httpx.Client, api: Api, body: dict, e2e: str, receiver: Receiver, secret: str) -> int:
    accepted = http.post("/v1/payments", json=body, headers=api.bank("EBILAEAD"))
    accepted.raise_for_status()
    payment = accepted.json()
    console.print(f"1. submitted          payment {payment['payment_id']}  (EndToEndId {e2e})")
    console.print(f"   Temporal UI        {api.ui}/{payment['workflow_id']}")
    state = _follow(http, api, payment["payment_id"], {"AWAITING_SETTLEMENT", "REJECTED"})
    if state["status"] == "REJECTED":
        console.print(f"[red]rejected: {state['rejection_code']} {state['rejection_reason']}")
        return 1
    ob = state["obligation"]
    console.print("2. compliance         passed (participants, IBAN/account, BIC, limits, sanctions)")
    console.print(
        f"3. obligation         {ob['id']}: {ob['payer_bic']} owes {ob['payee_bic']} {ob['amount']} AED,"
        f" {ob['settlement_mode']} ({ob['routing_reason']})"
    )
    receipt = http.post(
        "/v1/notifications/camt054", content=booking_xml([(e2e, "100000.00")], "AED"), headers=api.agent
    )
    receipt.raise_for_status()
    entry = receipt.json()["entries"][0]
    console.print(
        f"4. camt.054           booked {entry['amount']} AED, entry {entry['entry_reference']}:"
        f" matched={entry['matched']}"
    )
    state = _follow(http, api, payment["payment_id"], {"COMPLETED"})
    ob = state["obligation"]
    console.print(f"5. settled            at {ob['settled_at']}, bank reference {ob['bank_confirmation_reference']}")
    console.print(
        f"6. minted             token {state['token']['id']}: {state['token']['amount']} AED to SBININBB,"
        " backed 1:1 by the booked fiat"
    )
    console.print(f"[green]COMPLETED[/green]  pacs.002: {api.base_url}/v1/payments/{payment['payment_id']}/pacs002")

    # The receiving side: State Bank of India is told, reads, and redeems.
    credited = _told(receiver, secret, "payment.credited", payment["payment_id"])
    console.print(f"7. SBI notified       {credited['type']} by webhook (event {credited['id']}, signature verified)")
    forwarded = http.get(f"/v1/payments/{payment['payment_id']}/pacs008", headers=api.bank("SBININBB"))
    forwarded.raise_for_status()
    console.print(f"   forwarded pacs.008 {api.base_url}/v1/payments/{payment['payment_id']}/pacs008")
    redemption = http.post(
        "/v1/redemptions",
        json={"currency": "AED", "amount": "25000.00", "payout_account": {"account": "30001234567"}},
        headers={**api.bank("SBININBB"), "Idempotency-Key": f"demo-{e2e}"},
    )
    redemption.raise_for_status()
    r = redemption.json()
    console.print(
        f"8. SBI redeems        25,000.00 AED of its tokens: {r['status']}, payout reference {r['reference']}"
    )
    _follow_redemption(http, api, r["redemption_id"], "PAYOUT_INSTRUCTED")
    payout = build_camt054(
        [
            BookingSpec(
                end_to_end_id=r["reference"],
                amount=Decimal("25000.00"),
                currency="AED",
                entry_reference=f"P{uuid.uuid4().hex[:24]}",
                credit_debit="DBIT",
                booking_date=date.today(),
            )
        ],
        message_id=f"DEMO-{uuid.uuid4().hex[:24]}",
    )
    http.post("/v1/notifications/camt054", content=payout, headers=api.agent).raise_for_status()
    _follow_redemption(http, api, r["redemption_id"], "COMPLETED")
    _told(receiver, secret, "redemption.completed", r["redemption_id"], key="redemption_id")
    [aed] = [
        a for a in http.get("/v1/accounts", headers=api.bank("SBININBB")).json()["accounts"] if a["currency"] == "AED"
    ]
    console.print(
        f"9. paid out, burned   the agent's DBIT camt.054 booked the payout; SBI now holds {aed['tokens']} AED"
        f" of tokens, {aed['paid_out']} AED paid out (webhook: redemption.completed)"
    )
    return 0


def _told(receiver: Receiver, secret: str, type_: str, resource_id: str, key: str = "payment_id") -> dict:
    """The event of this type about this resource, once the bank's endpoint has it."""
    deadline = time.monotonic() + 60
    with console.status(f"waiting for {type_} at the bank's webhook…"):
        while time.monotonic() < deadline:
            for event in receiver.events(secret):
                if event["type"] == type_ and event["data"].get(key) == resource_id:
                    return event
            time.sleep(0.2)
    raise SystemExit(f"no {type_} for {resource_id} reached the webhook in 60 s")


def _follow_redemption(http: httpx.Client, api: Api, redemption_id: str, status: str, timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    with console.status(f"redemption: waiting for {status}…"):
        while time.monotonic() < deadline:
            state = http.get(f"/v1/redemptions/{redemption_id}", headers=api.bank("SBININBB")).json()
            if state["status"] == status:
                return state
            time.sleep(0.2)
    raise SystemExit(f"redemption {redemption_id} did not reach {status} in {timeout_s:.0f}s")


def _follow(http: httpx.Client, api: Api, payment_id: str, statuses: set[str], timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    with console.status(f"waiting for {' or '.join(sorted(statuses))}…"):
        while time.monotonic() < deadline:
            state = http.get(f"/v1/payments/{payment_id}", headers=api.bank("EBILAEAD")).json()
            if state["status"] in statuses:
                return state
            time.sleep(0.2)
    raise SystemExit(f"payment {payment_id} did not reach {statuses} in {timeout_s:.0f}s")


# -- load ----------------------------------------------------------------------------------


def load(settings: Settings, seconds: int, concurrency: int, in_flight_cap: int = 100) -> int:
    return asyncio.run(_load(Api(settings), seconds, concurrency, in_flight_cap))


async def _load(api: Api, seconds: int, concurrency: int, in_flight_cap: int) -> int:
    """Gross payments (each with its camt.054) from `concurrency` banks' clients at once,
    with a live table; every payment is followed to COMPLETED or listed as in flight.

    A closed loop, like the banks of `make load`: a client waits while `in_flight_cap`
    payments are still being processed, so the table shows what the stack sustains
    rather than a backlog growing behind an open tap."""
    latencies: list[float] = []
    errors = submitted = 0
    awaiting: list[tuple[str, str, str]] = []  # payment id, e2e, bic
    completed: set[str] = set()
    started = time.monotonic()
    stop_at = started + seconds
    drain_s = 30

    async with httpx.AsyncClient(
        base_url=api.base_url, timeout=30, limits=httpx.Limits(max_connections=concurrency + 4)
    ) as http:

        async def client(n: int) -> None:
            nonlocal errors, submitted
            bic = DEMO_BICS[n % len(DEMO_BICS)]
            payee = DEMO_BICS[(n + 1) % len(DEMO_BICS)]
            while time.monotonic() < stop_at:
                if submitted - len(completed) >= in_flight_cap:
                    await asyncio.sleep(0.05)
                    continue
                e2e = f"LOAD-{uuid.uuid4().hex[:16]}"
                body = {
                    "end_to_end_id": e2e,
                    "amount": f"{random.randint(100, 99999)}.00",
                    "currency": "AED",
                    "debtor": party(bic, "Load test debtor"),
                    "creditor": party(payee, "Load test creditor"),
                    "urgent": True,
                }
                t0 = time.perf_counter()
                try:
                    r = await http.post("/v1/payments", json=body, headers=api.bank(bic))
                    ok = r.status_code == 202
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - t0)
                if ok:
                    submitted += 1
                    awaiting.append((r.json()["payment_id"], e2e, bic))
                else:
                    errors += 1

        async def settlement_agent() -> None:
            """Books the fiat of every accepted payment, a batch per camt.054. A payment not
            yet booked is looked at every round; a booked one, waiting for its token,
            every fourth (fewer status calls competing with the banks')."""
            pending: list[tuple[str, str, str]] = []
            booked: set[str] = set()
            rounds = 0
            while time.monotonic() < stop_at + drain_s and (time.monotonic() < stop_at or pending or awaiting):
                pending += awaiting
                awaiting.clear()
                batch, still = [], []
                for pid, e2e, bic in pending:
                    if pid in booked and rounds % 4:
                        still.append((pid, e2e, bic))
                        continue
                    state = (await http.get(f"/v1/payments/{pid}", headers=api.bank(bic))).json()
                    if state["status"] == "AWAITING_SETTLEMENT" and pid not in booked:
                        booked.add(pid)
                        batch.append((e2e, state["amount"]))
                    if state["status"] in FINAL_PAYMENT_STATUSES:
                        completed.add(pid)
                    else:
                        still.append((pid, e2e, bic))
                pending = still
                if batch:
                    await http.post("/v1/notifications/camt054", content=booking_xml(batch, "AED"), headers=api.agent)
                rounds += 1
                await asyncio.sleep(0.2)
            in_flight.extend(pid for pid, _, _ in pending)

        in_flight: list[str] = []

        def table() -> Table:
            now = time.monotonic()
            elapsed = max(now - started, 1e-9)
            p95 = statistics.quantiles(latencies, n=20)[-1] * 1000 if len(latencies) >= 20 else 0.0
            total = submitted + errors
            phase = f"{min(elapsed, seconds):.0f}/{seconds}s" if now < stop_at else f"{seconds}s, draining"
            t = Table(title=f"deltran demo load — {phase}")
            for col in ("submitted/s", "completed/s", "p95 (ms)", "error rate", "completed", "in flight"):
                t.add_column(col, justify="right")
            t.add_row(
                f"{submitted / min(elapsed, seconds):.1f}",
                f"{len(completed) / elapsed:.1f}",
                f"{p95:.0f}",
                f"{errors / total:.2%}" if total else "0.00%",
                str(len(completed)),
                str(submitted - len(completed)),
            )
            return t

        with Live(table(), console=console, refresh_per_second=2) as live:
            tasks = [asyncio.create_task(client(n)) for n in range(concurrency)]
            agent = asyncio.create_task(settlement_agent())
            while not agent.done():
                live.update(table())
                await asyncio.sleep(0.5)
            await asyncio.gather(*tasks, agent)
            live.update(table())
    console.print()
    if in_flight:
        console.print(
            f"still in flight after the drain: {', '.join(in_flight[:20])}{' …' if len(in_flight) > 20 else ''}"
        )
    else:
        console.print(f"every one of the {submitted} accepted payments COMPLETED")
    return 0 if errors == 0 else 1


# -- netting -------------------------------------------------------------------------------


def netting(settings: Settings, payments: int = 100, currency: str = "AED") -> int:
    api = Api(settings)
    rng = random.Random()
    tag = uuid.uuid4().hex[:6].upper()
    specs = []
    for i in range(payments):
        payer, payee = rng.sample(DEMO_BICS, 2)
        specs.append((f"NET{tag}-{i:03d}", payer, payee, f"{rng.randint(1000, 250000)}.00"))
    with httpx.Client(base_url=api.base_url, timeout=30) as http:
        console.rule(f"[bold]{payments} payments among {len(DEMO_BICS)} banks, one {currency} clearing window")
        ids = []
        for e2e, payer, payee, amount in specs:
            body = {
                "end_to_end_id": e2e,
                "amount": amount,
                "currency": currency,
                "debtor": party(payer, f"Customer of {payer}"),
                "creditor": party(payee, f"Customer of {payee}"),
            }
            r = http.post("/v1/payments", json=body, headers=api.bank(payer))
            r.raise_for_status()
            ids.append((r.json()["payment_id"], payer))
        _wait_all(http, api, ids, {"AWAITING_SETTLEMENT"}, "joining the open window")
        http.post(f"/v1/clearing/windows/close?currency={currency}", headers=api.admin).raise_for_status()
        window = _window_of(http, api, ids[0])
        console.print(
            f"window {window['id']} closed: {window['obligations_count']} obligations netted"
            f" in {window['netting_ms']} ms"
        )
        _per_bank_table(specs, window, currency)
        refs = [(i["reference"], i["amount"]) for i in window["instructions"]]
        http.post(
            "/v1/notifications/camt054", content=booking_xml(refs, currency), headers=api.agent
        ).raise_for_status()
        console.print(f"{len(refs)} net debtors funded their positions (one camt.054)")
        _wait_all(http, api, ids, {"COMPLETED"}, "settling and minting")
        window = http.get(f"/v1/clearing/windows/{window['id']}", headers=api.admin).json()
    summary = Table(title=f"window {window['id']} — {window['status']}")
    for col in ("gross", "net funded", "liquidity saved", "netting efficiency"):
        summary.add_column(col, justify="right")
    summary.add_row(
        f"{window['gross_amount']} {currency}",
        f"{window['net_amount']} {currency}",
        f"{window['liquidity_saved']} {currency}",
        f"{Decimal(window['netting_efficiency']) * 100:.1f}%",
    )
    console.print(summary)
    console.print(f"[green]{len(ids)} payments COMPLETED[/green], {len(window['positions'])} net positions")
    return 0


def _per_bank_table(specs, window: dict, currency: str) -> None:
    paid: dict[str, Decimal] = defaultdict(Decimal)
    received: dict[str, Decimal] = defaultdict(Decimal)
    for _, payer, payee, amount in specs:
        paid[payer] += Decimal(amount)
        received[payee] += Decimal(amount)
    nets = {p["bic"]: p["net"] for p in window["positions"]}
    t = Table(title=f"gross vs net per bank ({currency})")
    for col in ("bank", "pays (gross)", "receives (gross)", "net position", "funds"):
        t.add_column(col, justify="right" if col != "bank" else "left")
    for bic in sorted(set(paid) | set(received)):
        net = Decimal(nets.get(bic, "0"))
        t.add_row(bic, f"{paid[bic]:.2f}", f"{received[bic]:.2f}", f"{net:.2f}", f"{-net:.2f}" if net < 0 else "—")
    console.print(t)


def _wait_all(http: httpx.Client, api: Api, ids: list, statuses: set[str], what: str, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    pending = list(ids)
    with console.status(f"{what}: {len(pending)} to go") as status:
        while pending and time.monotonic() < deadline:
            pending = [
                (pid, bic)
                for pid, bic in pending
                if http.get(f"/v1/payments/{pid}", headers=api.bank(bic)).json()["status"] not in statuses
            ]
            status.update(f"{what}: {len(pending)} to go")
            time.sleep(0.2)
    if pending:
        raise SystemExit(f"{len(pending)} payment(s) did not reach {statuses} in {timeout_s:.0f}s")


def _window_of(http: httpx.Client, api: Api, payment: tuple[str, str], timeout_s: float = 30) -> dict:
    """The window the payment joined, once netted (the schedule may have closed it first)."""
    payment_id, bic = payment
    window_id = http.get(f"/v1/payments/{payment_id}", headers=api.bank(bic)).json()["obligation"]["clearing_window_id"]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        window = http.get(f"/v1/clearing/windows/{window_id}", headers=api.admin).json()
        if window["status"] not in (WindowStatus.OPEN, WindowStatus.CLOSING):
            return window
        time.sleep(0.2)
    raise SystemExit(f"window {window_id} was not netted in {timeout_s:.0f}s")


# -- fx ------------------------------------------------------------------------------------

# Mashreq's demo sheet per pair: bid and ask (QUOTE per one BASE), within the pair's spread.
DEMO_SHEETS = {"AED/INR": ("22.6000", "22.7000"), "EUR/USD": ("1.0800", "1.0850"), "USD/INR": ("83.000", "83.400")}
FX_PROVIDER = "MASHAEAD"


def fx(settings: Settings, source: str = "AED", target: str = "INR", amount: str = "100000.00") -> int:
    """A cross-currency payment netted leg by leg: Mashreq posts its sheet, Emirates NBD
    locks a quote and pays with it, each leg nets in its currency's window (the provider's
    AED held in escrow until its INR leg settles), and both are paid together."""
    api = Api(settings)
    pair = f"{source}/{target}"
    if pair not in DEMO_SHEETS:
        console.print(f"[red]Mashreq's demo sheet prices {', '.join(DEMO_SHEETS)}; not {pair}[/red]")
        return 2
    bid, ask = DEMO_SHEETS[pair]
    provider = {"Authorization": f"Bearer {api.keys['fx_providers'][FX_PROVIDER]}"}
    debtor, creditor = "EBILAEAD", "SBININBB"
    with httpx.Client(base_url=api.base_url, timeout=30) as http:
        console.rule(f"[bold]{amount} {source} from Emirates NBD, arriving as {target} at State Bank of India")
        limits = {"max_spread": "0.01", "max_quote_lifetime_s": 300}
        allowed = http.put(f"/v1/admin/fx/pairs/{pair}", json=limits, headers=api.admin)
        if allowed.status_code == 409:  # its inverse is allowed: priced the other way round
            console.print(f"[red]{allowed.json()['detail']}[/red]")
            return 1
        allowed.raise_for_status()
        until = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
        sheet = {"rates": [{"pair": pair, "bid": bid, "ask": ask, "valid_until": until.isoformat()}]}
        http.put("/v1/fx/rates", json=sheet, headers=provider).raise_for_status()
        console.print(f"1. rate sheet         {FX_PROVIDER} quotes {pair} bid {bid} / ask {ask}")
        asked = {"source_currency": source, "target_currency": target, "source_amount": amount}
        quote = http.post("/v1/fx/quotes", json=asked, headers=api.bank(debtor))
        quote.raise_for_status()
        q = quote.json()
        console.print(
            f"2. quote              {q['source_amount']} {source} → {q['target_amount']} {target} at {q['rate']}"
            f" from {q['provider_bic']}, locked until {q['expires_at']}"
        )
        e2e = f"FX-{uuid.uuid4().hex[:12].upper()}"
        body = {
            "end_to_end_id": e2e,
            "amount": amount,
            "currency": source,
            "debtor": party(debtor, "Al Noor Trading LLC"),
            "creditor": party(creditor, "Ganesh Textiles Pvt Ltd"),
            "remittance_info": "Invoice 2026-118",
            "fx_quote_id": q["quote_id"],
        }
        accepted = http.post("/v1/payments", json=body, headers=api.bank(debtor))
        accepted.raise_for_status()
        payment_id = accepted.json()["payment_id"]
        waiting = _follow(http, api, payment_id, {"AWAITING_SETTLEMENT"} | set(FINAL_PAYMENT_STATUSES))
        if waiting["status"] != "AWAITING_SETTLEMENT":
            console.print(f"[red]payment {waiting['status']}: {waiting['rejection_reason']}[/red]")
            return 1
        legs = waiting["fx"]["legs"]
        console.print(f"3. two legs           payment {payment_id}")
        for leg in legs:
            console.print(
                f"   {leg['leg']:<6} {leg['amount']:>14} {leg['currency']}  {leg['payer_bic']} → {leg['payee_bic']}"
                f"  {leg['settlement_mode']} in window {leg['clearing_window_id']}"
            )
        if any(leg["settlement_mode"] != "NET" for leg in legs):
            console.print("[red]the legs settle gross: is a clearing window open for both currencies?[/red]")
            return 1
        for step, leg in enumerate(legs, start=4):
            window = _settle_leg_window(http, api, payment_id, leg)
            state, mine = _leg_taken(http, api.bank(debtor), payment_id, leg["leg"])
            console.print(
                f"{step}. {leg['currency']} window        {window['status']}, {len(window['instructions'])} net"
                f" debtor(s) funded; {window['escrowed_amount']} {leg['currency']} into escrow;"
                f" {leg['leg']} leg {mine['status']}, payment {state['status']}"
            )
        done = _follow(http, api, payment_id, {"COMPLETED"})
        provider_held = {b["currency"]: b for b in http.get("/v1/accounts", headers=provider).json()["accounts"]}
    console.print(
        f"6. both legs paid     [green]COMPLETED[/green]: {creditor} holds {done['token']['amount']}"
        f" {done['token']['currency']} (token {done['token']['id']})"
    )
    console.print(
        f"   {FX_PROVIDER}: {provider_held[source]['tokens']} {source} tokens,"
        f" {provider_held[target]['tokens']} {target} tokens, nothing left in escrow"
        f" ({provider_held[source]['in_escrow']} / {provider_held[target]['in_escrow']})"
    )
    console.print(f"   Temporal UI: {api.ui}/{done['workflow_id']}")
    return 0


def _leg_taken(http: httpx.Client, bank: dict, payment_id: str, name: str, timeout_s: float = 30) -> tuple[dict, dict]:
    """The payment and its leg `name` once the payment has taken its window's settlement
    (the window signals it; the leg is then no longer PENDING)."""
    deadline = time.monotonic() + timeout_s
    while True:
        state = http.get(f"/v1/payments/{payment_id}", headers=bank).json()
        leg = next(x for x in state["fx"]["legs"] if x["leg"] == name)
        if leg["status"] != "PENDING" or time.monotonic() > deadline:
            return state, leg
        time.sleep(0.1)


def _settle_leg_window(http: httpx.Client, api: Api, payment_id: str, leg: dict, timeout_s: float = 60) -> dict:
    """Close the leg's window (unless its schedule already has), fund every net debtor's
    instruction in one camt.054, and wait until it has settled."""
    currency = leg["currency"]
    window = http.get(f"/v1/clearing/windows/{leg['clearing_window_id']}", headers=api.admin).json()
    if window["status"] == WindowStatus.OPEN:
        http.post(f"/v1/clearing/windows/close?currency={currency}", headers=api.admin).raise_for_status()
    deadline = time.monotonic() + timeout_s
    funded = False
    while time.monotonic() < deadline:
        window = http.get(f"/v1/clearing/windows/{leg['clearing_window_id']}", headers=api.admin).json()
        if window["status"] == WindowStatus.AWAITING_FUNDING and not funded:
            refs = [(i["reference"], i["amount"]) for i in window["instructions"] if i["status"] == "PENDING"]
            if refs:
                http.post(
                    "/v1/notifications/camt054", content=booking_xml(refs, currency), headers=api.agent
                ).raise_for_status()
            funded = True
        if window["status"] in (WindowStatus.SETTLED, WindowStatus.PARTIALLY_SETTLED):
            return window
        time.sleep(0.2)
    raise SystemExit(f"the {currency} window {leg['clearing_window_id']} did not settle in {timeout_s:.0f}s")


# -- reset and seed ------------------------------------------------------------------------

# Business data, children first. Participants, keys, caps and the audit log stay (the
# audit log is append-only by design; the reset itself is audited).
_RESET_TABLES = (
    "events",
    "redemptions",
    "cancellations",
    "payment_returns",
    "refunds",
    "tokens",
    "ledger_transfers",
    "funding_instructions",
    "bank_notifications",
    "camt054_messages",
    "net_positions",
    "obligation_rolls",
    "obligations",
    "compliance_results",
    "fx_quotes",  # quotes and sheets go; the pairs the admin allowed stay
    "fx_rates",
    "payments",
    "clearing_windows",
    "accounts",
    "reconciliation_runs",
    "circuit_breakers",
)


def reset(settings: Settings) -> int:
    return asyncio.run(_reset(settings))


async def _reset(settings: Settings) -> int:
    from sqlalchemy import text
    from temporalio.service import RPCError, RPCStatusCode

    from cli.devstack.stack import schedule_clearing
    from deltran import audit
    from deltran.db.engine import make_engine, make_session_factory
    from deltran.temporal.client import connect

    client = await connect(settings)
    terminated = 0
    # Webhook deliveries keep running: banks and their webhooks stay, only the data goes.
    query = (
        "ExecutionStatus = 'Running'"
        " AND WorkflowType IN ('PaymentWorkflow', 'ClearingWindowWorkflow', 'RedemptionWorkflow')"
    )
    async for execution in client.list_workflows(query):
        try:
            await client.get_workflow_handle(execution.id, run_id=execution.run_id).terminate(
                reason="deltran demo reset"
            )
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
            continue  # it completed between the listing and the terminate: nothing to stop
        terminated += 1
    engine = make_engine(settings.effective_database_url, pool_size=1)
    try:
        async with make_session_factory(engine)() as session, session.begin():
            await session.execute(text(f"TRUNCATE {', '.join(_RESET_TABLES)}"))
            await audit.record(
                session,
                actor="cli:demo",
                action="demo.reset",
                subject="demo data",
                result="ok",
                details={"workflows_terminated": terminated},
            )
    finally:
        await engine.dispose()
    await schedule_clearing(settings)  # every currency gets an open window again
    console.print(
        f"reset: {terminated} running workflow(s) terminated, payments, windows and tokens removed; banks and keys kept"
    )
    return 0


def seed(settings: Settings) -> int:
    from cli.devstack.stack import schedule_clearing
    from cli.devstack.stack import seed as seed_banks

    asyncio.run(seed_banks(settings))
    schedules = asyncio.run(schedule_clearing(settings))
    console.print(f"seeded the demo banks (keys in {settings.credentials_path}) and {len(schedules)} schedules")
    return 0
