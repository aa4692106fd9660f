"""Builders and pollers shared by the integration tests."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx

from deltran.db.tables import Payment
from deltran.intake.payments import NewPayment
from deltran.iso20022.camt054 import BookingSpec, build_camt054
from deltran.iso20022.pacs008 import Pacs008Spec

# Real registry-valid IBANs for the demo corridor; India has no IBAN: account numbers.
AE_IBAN = "AE070331234567890123456"


def new_payment(end_to_end_id: str, amount: str, currency: str = "AED", **overrides) -> NewPayment:
    """The demo corridor's payment (Al Noor, Emirates NBD → Ganesh Textiles, SBI) as intake
    receives it, for tests that submit without HTTP."""
    values = dict(
        instructing_bic="EBILAEAD", end_to_end_id=end_to_end_id, amount=Decimal(amount), currency=currency,
        debtor_name="Al Noor Trading LLC", debtor_iban=AE_IBAN, debtor_account=None, debtor_agent_bic="EBILAEAD",
        creditor_name="Ganesh Textiles Pvt Ltd", creditor_iban=None, creditor_account="30001234567",
        creditor_agent_bic="SBININBB",
    )  # fmt: skip
    return NewPayment(**{**values, **overrides})


def screening_row(e2e: str, amount: str, workflow_id: str, **overrides) -> Payment:
    """The corridor's payment as a row recorded and still SCREENING, written by a test
    itself (no intake): its workflow is started, or not, by the test."""
    values = dict(
        id=uuid.uuid4(), instructing_bic="EBILAEAD", end_to_end_id=e2e,
        fingerprint=hashlib.sha256(e2e.encode()).hexdigest(), amount=Decimal(amount), currency="AED",
        debtor_name="Al Noor Trading LLC", debtor_iban=AE_IBAN, debtor_agent_bic="EBILAEAD",
        creditor_name="Ganesh Textiles Pvt Ltd", creditor_account="30001234567", creditor_agent_bic="SBININBB",
        status="SCREENING", workflow_id=workflow_id,
    )  # fmt: skip
    return Payment(**{**values, **overrides})


def fresh_bic(country: str = "AE") -> str:
    """A BIC no other test uses: a bank of the test's own."""
    n = uuid.uuid4().int
    letters = "".join(chr(ord("A") + (n // 26**i) % 26) for i in range(4))
    return f"{letters}{country}AA"


async def new_bank(http, admin: dict, country: str) -> tuple[str, dict]:
    """A bank of the test's own (a fresh BIC, registered by admin): (its BIC, its auth headers)."""
    bic = fresh_bic(country)
    created = await http.post(
        "/v1/admin/banks", json={"bic": bic, "name": f"Bank {bic}", "country": country}, headers=admin
    )
    assert created.status_code == 201, created.text
    return bic, auth(created.json()["api_key"])


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def pacs008_spec(
    e2e: str, *, amount: str = "100000.00", creditor_name: str = "Ganesh Textiles Pvt Ltd", **overrides
) -> Pacs008Spec:
    """One corridor transaction (Emirates NBD to State Bank of India, AED) for build_pacs008."""
    fields = dict(
        end_to_end_id=e2e,
        amount=Decimal(amount),
        currency="AED",
        debtor_name="Al Noor Trading LLC",
        debtor_agent_bic="EBILAEAD",
        debtor_iban=AE_IBAN,
        creditor_name=creditor_name,
        creditor_agent_bic="SBININBB",
        creditor_account="30001234567",
        remittance_info="Invoice 2026-118",
    )
    fields.update(overrides)
    return Pacs008Spec(**fields)


def payment_body(
    e2e_id: str,
    *,
    amount: str = "100000.00",
    currency: str = "AED",
    debtor_name: str = "Al Noor Trading LLC",
    creditor_name: str = "Ganesh Textiles Pvt Ltd",
    debtor_bic: str = "EBILAEAD",
    creditor_bic: str = "SBININBB",
) -> dict:
    return {
        "end_to_end_id": e2e_id,
        "amount": amount,
        "currency": currency,
        "debtor": {"name": debtor_name, "iban": AE_IBAN, "agent_bic": debtor_bic},
        "creditor": {"name": creditor_name, "account": "30001234567", "agent_bic": creditor_bic},
        "remittance_info": "Invoice 2026-118",
    }


def camt054_for(
    e2e_id: str | None,
    amount: str = "100000.00",
    currency: str = "AED",
    *,
    entry_reference: str,
    status: str = "BOOK",
    message_id: str | None = None,
) -> bytes:
    return build_camt054(
        [
            BookingSpec(
                end_to_end_id=e2e_id,
                amount=Decimal(amount),
                currency=currency,
                entry_reference=entry_reference,
                status=status,
                bank_reference=f"BR-{entry_reference}",
            )
        ],
        message_id=message_id or f"MSG-{entry_reference}"[:35],
    )


async def wait_for_status(
    http: httpx.AsyncClient, payment_id: str, headers: dict, statuses: set[str], timeout_s: float = 30
) -> dict:
    """Poll the API until the payment reaches one of `statuses` (or fail with its last state).

    The pause grows from 50 ms to half a second: a test waiting on many payments at once
    would otherwise spend the suite's CPU answering its own polls."""
    deadline = time.monotonic() + timeout_s
    pause_s = 0.05
    body: dict = {}
    while time.monotonic() < deadline:
        response = await http.get(f"/v1/payments/{payment_id}", headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        if body["status"] in statuses:
            return body
        await asyncio.sleep(pause_s)
        pause_s = min(pause_s * 1.5, 0.5)
    raise AssertionError(f"payment {payment_id} did not reach {statuses}: {body}")


async def complete_gross_payment(http: httpx.AsyncClient, credentials: dict, amount: str, *, prefix: str) -> str:
    """An urgent (GROSS: never an AED window) corridor payment, booked by the settlement
    agent and followed to COMPLETED; its payment id."""
    e2e = f"{prefix}-{uuid.uuid4().hex[:12]}"
    bank = auth(credentials["banks"]["EBILAEAD"])
    accepted = await http.post("/v1/payments", json={**payment_body(e2e, amount=amount), "urgent": True}, headers=bank)
    assert accepted.status_code == 202, accepted.text
    payment_id = accepted.json()["payment_id"]
    await wait_for_status(http, payment_id, bank, {"AWAITING_SETTLEMENT"})
    booked = await http.post(
        "/v1/notifications/camt054",
        content=camt054_for(e2e, amount, "AED", entry_reference=f"N{uuid.uuid4().hex[:20]}"),
        headers={**auth(credentials["settlement_agent"]), "Content-Type": "application/xml"},
    )
    assert booked.status_code == 200 and booked.json()["entries"][0]["matched"], booked.text
    await wait_for_status(http, payment_id, bank, {"COMPLETED"})
    return payment_id


@dataclass(frozen=True)
class BankToBank:
    """A completed gross payment between two banks of the test's own."""

    debtor_bic: str
    debtor: dict  # auth headers
    creditor_bic: str
    creditor: dict
    payment: dict  # as GET /v1/payments/{id} shows it
    end_to_end_id: str
    before: datetime  # a moment before it began


async def pay_between_new_banks(
    http: httpx.AsyncClient, credentials: dict, amount: str = "1234.50", **body
) -> BankToBank:
    """Bank A (AE) pays bank B (IN) `amount` AED gross (urgent); the settlement agent books
    it and the payment COMPLETES. Their ledgers hold exactly what the test did: A's fiat
    booked and minted, then the tokens moved to B."""
    admin = auth(credentials["admin"])
    a, a_key = await new_bank(http, admin, "AE")
    b, b_key = await new_bank(http, admin, "IN")
    before = datetime.now(UTC) - timedelta(seconds=1)
    e2e = f"B2B-{uuid.uuid4().hex[:12]}"
    payment = {**payment_body(e2e, amount=amount, debtor_bic=a, creditor_bic=b), "urgent": True, **body}
    accepted = await http.post("/v1/payments", json=payment, headers=a_key)
    assert accepted.status_code == 202, accepted.text
    payment_id = accepted.json()["payment_id"]
    await wait_for_status(http, payment_id, a_key, {"AWAITING_SETTLEMENT"})
    booked = await http.post(
        "/v1/notifications/camt054",
        content=camt054_for(e2e, amount, entry_reference=f"N{uuid.uuid4().hex[:20]}"),
        headers={**auth(credentials["settlement_agent"]), "Content-Type": "application/xml"},
    )
    assert booked.status_code == 200 and booked.json()["entries"][0]["matched"], booked.text
    completed = await wait_for_status(http, payment_id, a_key, {"COMPLETED"})
    return BankToBank(a, a_key, b, b_key, completed, e2e, before)


async def wait_for_retrying_step(
    http: httpx.AsyncClient, payment_id: str, headers: dict, step: str, timeout_s: float = 30
) -> dict:
    """GET the payment until it shows `step` retrying (attempt 2 or later), as ops would
    see a stuck step: within 30 s of its first failure."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    body: dict = {}
    while asyncio.get_running_loop().time() < deadline:
        body = (await http.get(f"/v1/payments/{payment_id}", headers=headers)).json()
        if body.get("step") == step and (body.get("attempt") or 0) >= 2:
            return body
        await asyncio.sleep(0.5)
    raise AssertionError(f"{step} never showed as retrying within {timeout_s} s; last answer: {body}")
