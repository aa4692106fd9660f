"""An independent auditor: random sequences of bank and settlement-agent operations
against the real stack, and after each one the money's invariants, read only from plain
SQL and the Temporal visibility API — never from DelTran's own code.

The operations are drawn from a seeded `random.Random`, so a failure names its seed and
the same sequence runs again with `DELTRAN_AUDIT_SEED` (the timing of concurrent calls
is the servers', so a race may need a few replays). Used by
tests/integration/test_auditor.py: short in `make test`, long in `make chaos`.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker
from temporalio.client import Client, WorkflowFailureError

from activities.clearing import ensure_open_window
from deltran.config import Settings
from deltran.intake.payments import payment_input, start_payment_workflow
from deltran.ledger import BACKING_SQL, SUPPLY_SQL
from deltran.shared import ClearingInput
from tests.support.payments import auth, camt054_for, fresh_bic, payment_body, screening_row
from workflows.clearing import ClearingWindowWorkflow

XML = {"Content-Type": "application/xml"}
SANCTIONED = "Viktor Blacklistov"
# Net banks per currency (each a participant of the demo seed with accounts there).
NET_BANKS = {"EUR": ("DEUTDEFF", "BNPAFRPP", "INGBNL2A"), "USD": ("CHASUS33", "CITIUS33")}
STUCK_ATTEMPTS = 4  # a step retried this often is stuck: nothing here may fail that long

# Each query lists violations of one invariant; a row is one violation.
INVARIANTS: dict[str, str] = {
    # Supply is the tokens banks hold, reserved ones included; backing is the booked fiat
    # less what was paid out (deltran/ledger.py: the same sums the product checks).
    "supply equals booked fiat less paid out per currency": f"""
        SELECT currency || ': supply ' || {SUPPLY_SQL} || ', backing ' || {BACKING_SQL}
        FROM accounts GROUP BY currency
        HAVING {SUPPLY_SQL} <> {BACKING_SQL}
    """,
    # (a window funding is minted as far as its settlement takes it; the rest is refunded)
    "every minted amount is a booked, matched credit of that amount less its refunded part": """
        SELECT 'transfer ' || t.id || ' mints ' || t.amount || ' from entry ' || coalesce(n.outcome, 'none')
        FROM ledger_transfers t LEFT JOIN bank_notifications n ON n.id = t.notification_id
        LEFT JOIN refunds rf ON rf.entry_id = n.id
        WHERE t.kind = 'fiat_booked'
          AND (n.id IS NULL OR n.outcome <> 'MATCHED' OR n.amount - coalesce(rf.amount, 0) <> t.amount
               OR n.currency <> t.currency
               OR n.credit_debit <> 'CRDT' OR n.entry_status <> 'BOOK' OR n.reversal)
    """,
    # (with the escrow's: a cross-currency leg's credit waits there, not at a bank)
    "net positions sum to zero per window": """
        SELECT 'window ' || np.window_id || ': ' || sum(np.net_amount) || ' + escrowed ' || w.escrowed_amount
        FROM net_positions np JOIN clearing_windows w ON w.id = np.window_id
        GROUP BY np.window_id, w.escrowed_amount HAVING sum(np.net_amount) + w.escrowed_amount <> 0
    """,
    "one token per obligation, only for a settled one": """
        SELECT 'obligation ' || o.id || ' is ' || o.status || ' with ' || count(t.id) || ' token(s)'
        FROM tokens t JOIN obligations o ON o.id = t.obligation_id
        GROUP BY o.id, o.status HAVING count(t.id) > 1 OR o.status <> 'SETTLED'
    """,
    # Payment versus payment: both legs' payees paid in one transaction, or neither.
    "a cross-currency payment pays both legs or neither": """
        SELECT 'payment ' || p.id || ' ' || p.status || ': '
               || string_agg(o.leg || ' ' || o.status || CASE WHEN t.id IS NULL THEN '' ELSE ' (token)' END, ', ')
        FROM payments p JOIN obligations o ON o.payment_id = p.id
        LEFT JOIN tokens t ON t.obligation_id = o.id
        WHERE EXISTS (SELECT 1 FROM obligations x WHERE x.payment_id = p.id AND x.leg = 'TARGET')
        GROUP BY p.id, p.status
        HAVING count(t.id) NOT IN (0, 2)
            OR (p.status = 'COMPLETED') <> (count(t.id) = 2)
            OR (p.status <> 'AWAITING_SETTLEMENT' AND bool_or(o.status = 'PENDING'))
            OR (p.status <> 'COMPLETED' AND bool_or(o.status = 'SETTLED') AND p.status <> 'AWAITING_SETTLEMENT')
    """,
    # What escrow accounts hold is exactly the legs moved in and not yet paid out or unwound.
    "escrow holds exactly the legs settled into it and not yet released or unwound": """
        WITH held AS (
            SELECT currency, sum(credits_posted - debits_posted) AS amount FROM accounts
            WHERE kind = 'escrow' GROUP BY currency
        ), owed AS (
            SELECT o.currency, sum(o.amount) AS amount FROM obligations o
            WHERE o.escrowed
              AND EXISTS (SELECT 1 FROM ledger_transfers t WHERE t.idempotency_key = 'obligation:' || o.id)
              AND NOT EXISTS (SELECT 1 FROM ledger_transfers t
                              WHERE t.idempotency_key IN ('escrow-release:' || o.id, 'escrow-unwind:' || o.id))
            GROUP BY o.currency
        )
        SELECT currency || ': escrow holds ' || coalesce(held.amount, 0) || ', legs in it ' || coalesce(owed.amount, 0)
        FROM held FULL JOIN owed USING (currency)
        WHERE coalesce(held.amount, 0) <> coalesce(owed.amount, 0)
    """,
    "a completed payment has its token": """
        SELECT 'payment ' || p.id FROM payments p
        WHERE p.status IN ('COMPLETED', 'PARTIALLY_RETURNED', 'RETURNED')
          AND NOT EXISTS (SELECT 1 FROM tokens t WHERE t.payment_id = p.id)
    """,
    "no balance below zero": """
        SELECT kind || ' account ' || id FROM accounts
        WHERE (kind <> 'fiat' AND credits_posted < debits_posted) OR (kind = 'fiat' AND debits_posted < credits_posted)
    """,
    "every booked entry is accountable (settled, funding, or an exception to return)": """
        SELECT 'entry ' || n.id || ' MATCHED, unminted, '
               || coalesce('payment ' || p.status, 'window ' || w.status, 'instruction ' || f.status)
        FROM bank_notifications n
        LEFT JOIN payments p ON p.id = n.payment_id
        LEFT JOIN funding_instructions f ON f.id = n.funding_instruction_id
        LEFT JOIN clearing_windows w ON w.id = f.window_id
        WHERE n.outcome = 'MATCHED'
          AND NOT EXISTS (SELECT 1 FROM ledger_transfers t WHERE t.notification_id = n.id)
          AND NOT EXISTS (SELECT 1 FROM refunds rf WHERE rf.entry_id = n.id AND rf.amount = n.amount)
          AND (p.status IN ('COMPLETED', 'PARTIALLY_RETURNED', 'RETURNED', 'REJECTED', 'EXPIRED', 'CANCELLED')
               OR f.status = 'EXPIRED'
               OR w.status IN ('SETTLED', 'PARTIALLY_SETTLED'))
    """,
}


async def money_violations(sessions: async_sessionmaker) -> list[str]:
    """Every invariant of the books that does not hold now (PostgreSQL only), one line each."""
    found: list[str] = []
    async with sessions() as session:
        for name, query in INVARIANTS.items():
            found += [f"{name}: {row[0]}" for row in (await session.execute(text(query))).all()]
    return found


async def violations(sessions: async_sessionmaker, client: Client, workflow_ids: set[str]) -> list[str]:
    """Every invariant that does not hold now, one line per violation."""
    found = await money_violations(sessions)
    # No workflow failed, and none keeps retrying a step that can never succeed.
    async for wf in client.list_workflows(
        "ExecutionStatus = 'Failed' AND WorkflowType IN ('PaymentWorkflow', 'ClearingWindowWorkflow')"
    ):
        try:
            await client.get_workflow_handle(wf.id, run_id=wf.run_id).result()
            cause = "no failure recorded"
        except WorkflowFailureError as failed:
            cause = repr(failed.cause)
        found.append(f"workflow {wf.id} failed: {cause}")
    for workflow_id in sorted(workflow_ids):
        description = await client.get_workflow_handle(workflow_id).describe()
        for pending in description.raw_description.pending_activities:
            if pending.attempt >= STUCK_ATTEMPTS:
                found.append(
                    f"workflow {workflow_id}: {pending.activity_type.name} at attempt {pending.attempt}:"
                    f" {pending.last_failure.message}"
                )
    return found


@dataclass
class Auditor:
    rng: random.Random
    http: httpx.AsyncClient
    credentials: dict
    sessions: async_sessionmaker
    settings: Settings
    client: Client
    payments: list[tuple[str, str, str]] = field(default_factory=list)  # (payment id, e2e, amount)
    workflow_ids: set[str] = field(default_factory=set)
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    counter: int = 0
    fx_provider: str | None = None
    fx_key: dict | None = None

    def _e2e(self) -> str:
        self.counter += 1
        return f"AUD-{self.tag}-{self.counter}"

    def _amount(self) -> str:
        return f"{self.rng.randint(1, 5000)}.{self.rng.randint(0, 99):02d}"

    async def step(self) -> str:
        """One operation, chosen at random; returns what it did (for the failure report)."""
        operation = self.rng.choices(
            [self.submit, self.book, self.short_deadline, self.net_cycle, self.cross_currency],
            weights=[40, 40, 10, 10, 8],
        )[0]
        return await operation()

    # -- cross-currency ------------------------------------------------------------------

    async def _fx_provider(self) -> str:
        """A provider of the audit's own quoting EUR/USD (EUR → USD legs settle in the
        net banks' windows); created on first use."""
        if self.fx_provider is None:
            admin = auth(self.credentials["admin"])
            for pair in ("USD/EUR", "EUR/USD"):  # no other desk's sheet (a pair's sheets go with it)
                await self.http.delete(f"/v1/admin/fx/pairs/{pair}", headers=admin)
            limits = {"max_spread": "0.01", "max_quote_lifetime_s": 3600}
            allowed = await self.http.put("/v1/admin/fx/pairs/EUR/USD", json=limits, headers=admin)
            assert allowed.status_code == 200, allowed.text
            bic = fresh_bic("AE")
            created = await self.http.post(
                "/v1/admin/banks",
                json={"bic": bic, "name": f"Audit FX desk {bic}", "country": "AE", "fx_provider": True},
                headers=admin,
            )
            assert created.status_code == 201, created.text
            self.fx_provider, self.fx_key = bic, auth(created.json()["api_key"])
        assert self.fx_key is not None
        until = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        sheet = {"rates": [{"pair": "EUR/USD", "bid": "1.0800", "ask": "1.0850", "valid_until": until}]}
        posted = await self.http.put("/v1/fx/rates", json=sheet, headers=self.fx_key)
        assert posted.status_code == 200, posted.text
        return self.fx_provider

    async def cross_currency(self) -> str:
        """EUR in, USD out: gross with each leg booked (or not, twice, at once) at random,
        or net, its legs left to the windows' random fundings (net_cycle) and the drain."""
        provider = await self._fx_provider()
        payer = self.rng.choice(NET_BANKS["EUR"])
        payee = self.rng.choice(NET_BANKS["USD"])
        bank = auth(self.credentials["banks"][payer])
        asked = {"source_currency": "EUR", "target_currency": "USD", "source_amount": self._amount()}
        quoted = await self.http.post("/v1/fx/quotes", json=asked, headers=bank)
        if quoted.status_code == 409:  # too many open quotes: the bank's earlier ones still count
            return f"fx quote refused: {quoted.json()['type']}"
        assert quoted.status_code == 201, quoted.text
        quote = quoted.json()
        assert quote["provider_bic"] == provider, quote
        gross = self.rng.random() < 0.5
        if not gross:
            async with self.sessions() as session, session.begin():
                for currency in ("EUR", "USD"):
                    await ensure_open_window(session, currency)  # as their schedules would have
        e2e = self._e2e()
        body = {
            **payment_body(e2e, amount=quote["source_amount"], currency="EUR", debtor_bic=payer, creditor_bic=payee),
            "debtor": {"name": f"Customer of {payer}", "account": "30001234567", "agent_bic": payer},
            "urgent": gross,
            "fx_quote_id": quote["quote_id"],
        }
        copies = self.rng.randint(1, 4)
        responses = await asyncio.gather(
            *(self.http.post("/v1/payments", json=body, headers=bank) for _ in range(copies))
        )
        assert [r.status_code for r in responses] == [202] * copies, [r.text for r in responses]
        self.workflow_ids.add(responses[0].json()["workflow_id"])
        if not gross:
            return f"fx {e2e} net {quote['source_amount']} EUR → {quote['target_amount']} USD x{copies}"
        for _ in range(100):  # its legs exist (or risk refused it)
            state = (await self.http.get(f"/v1/payments/{responses[0].json()['payment_id']}", headers=bank)).json()
            if state["status"] != "SCREENING":
                break
            await asyncio.sleep(0.1)
        legs = self.rng.choice(["both", "both", "source", "target", "none"])
        booked = []
        for currency, amount in (("EUR", quote["source_amount"]), ("USD", quote["target_amount"])):
            if legs == "both" or legs == {"EUR": "source", "USD": "target"}[currency]:
                entry = camt054_for(e2e, amount, currency, entry_reference=f"X{uuid.uuid4().hex[:16]}")
                times = self.rng.randint(1, 3)  # the same entry again, at once: one booking
                booked += await asyncio.gather(*(self._post(entry) for _ in range(times)))
        return f"fx {e2e} gross, booked {legs}: {sorted(set(booked))}"

    # -- banks ---------------------------------------------------------------------------

    async def submit(self) -> str:
        e2e, amount = self._e2e(), self._amount()
        bank = auth(self.credentials["banks"]["EBILAEAD"])
        kind = self.rng.choices(["plain", "sanctioned", "self-paying", "concurrent"], weights=[55, 15, 10, 20])[0]
        body = {**payment_body(e2e, amount=amount), "urgent": True}
        if kind == "sanctioned":
            body["creditor"]["name"] = SANCTIONED
        if kind == "self-paying":
            body["creditor"]["agent_bic"] = "EBILAEAD"
            refused = await self.http.post("/v1/payments", json=body, headers=bank)
            assert refused.status_code == 422, refused.text
            return f"submit {e2e} self-paying: 422"
        copies = self.rng.randint(2, 8) if kind == "concurrent" else 1
        responses = await asyncio.gather(
            *(self.http.post("/v1/payments", json=body, headers=bank) for _ in range(copies))
        )
        assert [r.status_code for r in responses] == [202] * copies, [r.text for r in responses]
        ids = {r.json()["payment_id"] for r in responses}
        assert len(ids) == 1, ids
        self.payments.append((ids.pop(), e2e, amount))
        self.workflow_ids.add(responses[0].json()["workflow_id"])
        return f"submit {e2e} {amount} AED {kind} x{copies}"

    async def short_deadline(self) -> str:
        """A payment whose deadline is a second or two, booked (or not) around it."""
        e2e, amount = self._e2e(), self._amount()
        payment = screening_row(e2e, amount, f"payment-audit-{e2e}")
        async with self.sessions() as session, session.begin():
            session.add(payment)
        deadline_s = self.rng.randint(1, 2)
        short = self.settings.model_copy(update={"payment_deadline_s": deadline_s})
        data = payment_input(short, payment.id, e2e, payment.amount, "AED", "EBILAEAD", "SBININBB")
        await start_payment_workflow(self.client, short, data, payment.workflow_id)
        self.workflow_ids.add(payment.workflow_id)
        self.payments.append((str(payment.id), e2e, amount))
        delay = self.rng.uniform(0.5, deadline_s + 1.5)
        await asyncio.sleep(delay)
        posted = await self._post(camt054_for(e2e, amount, entry_reference=f"D{e2e}"))
        return f"short deadline {e2e} ({deadline_s}s), booked after {delay:.2f}s: {posted}"

    # -- the settlement agent ------------------------------------------------------------

    async def _post(self, body: bytes, expect: int = 200) -> str:
        response = await self.http.post(
            "/v1/notifications/camt054", content=body, headers={**auth(self.credentials["settlement_agent"]), **XML}
        )
        assert response.status_code == expect, response.text
        return response.json()["entries"][0]["outcome"] if expect == 200 else str(expect)

    async def book(self) -> str:
        if not self.payments:
            return await self.submit()
        _, e2e, amount = self.rng.choice(self.payments)
        reference = f"B{uuid.uuid4().hex[:16]}"
        kind = self.rng.choices(
            ["exact", "concurrent", "wrong-amount", "debit", "pending", "split-mismatch"],
            weights=[40, 25, 10, 10, 5, 10],
        )[0]
        if kind == "split-mismatch":  # details add up to twice the entry: refused whole
            body = camt054_for(e2e, amount, entry_reference=reference).decode()
            detail = body[body.index("<TxDtls>") : body.index("</TxDtls>") + len("</TxDtls>")]
            outcome = await self._post(body.replace(detail, detail * 2).encode(), expect=400)
            return f"camt054 {e2e} split-mismatch: {outcome}"
        if kind == "wrong-amount":
            amount = str(Decimal(amount) + Decimal("0.01"))
        body = camt054_for(e2e, amount, entry_reference=reference, status="PDNG" if kind == "pending" else "BOOK")
        if kind == "debit":
            body = body.replace(b"<CdtDbtInd>CRDT</CdtDbtInd>", b"<CdtDbtInd>DBIT</CdtDbtInd>")
        copies = self.rng.randint(2, 12) if kind == "concurrent" else 1
        outcomes = await asyncio.gather(*(self._post(body) for _ in range(copies)))
        return f"camt054 {e2e} {kind} x{copies}: {sorted(set(outcomes))}"

    async def _close(self, currency: str, funding_timeout_s: int):
        handle = await self.client.start_workflow(
            ClearingWindowWorkflow.run,
            ClearingInput(currency=currency, funding_timeout_s=funding_timeout_s),
            id=f"clearing-{currency}-audit-{uuid.uuid4().hex[:8]}",
            task_queue=self.settings.task_queue,
        )
        self.workflow_ids.add(handle.id)
        for _ in range(200):
            state = await handle.query(ClearingWindowWorkflow.state)
            if state.status != "CLOSING":  # netted (or nothing to close)
                return handle, state.instructions
            await asyncio.sleep(0.05)
        raise AssertionError(f"{handle.id} did not net its window in 10 s")

    async def drain(self) -> None:
        """Settle what the audit left in its currencies' open windows (rolled
        obligations), every debtor funding exactly, so later tests find them empty."""
        for currency in sorted(NET_BANKS):
            handle, instructions = await self._close(currency, funding_timeout_s=30)
            for instruction in instructions:
                await self._post(
                    camt054_for(
                        instruction.reference,
                        str(instruction.amount),
                        currency,
                        entry_reference=f"F{uuid.uuid4().hex[:16]}",
                    )
                )
            state = await asyncio.wait_for(handle.result(), timeout=60)
            assert state.status in ("SETTLED", "NO_WINDOW"), state

    async def net_cycle(self) -> str:
        """Net payments, a window closed with a short funding deadline, and each debtor
        funding exactly, more, less, late or not at all."""
        currency = self.rng.choice(sorted(NET_BANKS))
        banks = NET_BANKS[currency]
        async with self.sessions() as session, session.begin():
            await ensure_open_window(session, currency)  # as its schedule would have
        ids = []
        for _ in range(self.rng.randint(2, 4)):
            payer, payee = self.rng.sample(banks, 2)
            e2e = self._e2e()
            body = payment_body(e2e, amount=self._amount(), currency=currency, debtor_bic=payer, creditor_bic=payee)
            body["debtor"] = {"name": f"Customer of {payer}", "account": "30001234567", "agent_bic": payer}
            response = await self.http.post("/v1/payments", json=body, headers=auth(self.credentials["banks"][payer]))
            assert response.status_code == 202, response.text
            ids.append((response.json()["payment_id"], payer))
            self.workflow_ids.add(response.json()["workflow_id"])
        for payment_id, payer in ids:  # each has joined a window (or been routed gross)
            for _ in range(100):
                state = (
                    await self.http.get(f"/v1/payments/{payment_id}", headers=auth(self.credentials["banks"][payer]))
                ).json()
                if state["status"] != "SCREENING":
                    break
                await asyncio.sleep(0.1)
        handle, instructions = await self._close(currency, funding_timeout_s=self.rng.randint(1, 3))
        choices = []
        late = []
        for instruction in instructions:
            choice = self.rng.choice(["exact", "exact", "over", "under", "late", "none"])
            choices.append(choice)
            amount = instruction.amount + {"over": Decimal("7.00"), "under": Decimal("-0.01")}.get(choice, Decimal(0))
            body = camt054_for(
                instruction.reference, str(amount), currency, entry_reference=f"F{uuid.uuid4().hex[:16]}"
            )
            if choice == "late":
                late.append(body)
            elif choice != "none" and amount > 0:
                await self._post(body)
        await asyncio.wait_for(handle.result(), timeout=60)
        for body in late:
            await self._post(body)
        return f"net cycle {currency}: {len(ids)} payments, fundings {choices}"


async def wait_until_quiet(sessions: async_sessionmaker, timeout_s: float = 60) -> None:
    """Until no payment of the audit is between a booking and its token (SETTLED)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        async with sessions() as session:
            busy = await session.scalar(
                text("SELECT count(*) FROM payments WHERE end_to_end_id LIKE 'AUD-%' AND status = 'SETTLED'")
            )
        if not busy:
            return
        await asyncio.sleep(0.2)
