"""`deltran demo window`: MISSION.md's third demo scenario against the running stack.

A dozen payments among the demo banks join the open AED window; the window is closed
now; every net debtor funds its instruction with a camt.054 (as its settlement bank
would); every payment completes. Prints gross vs net, efficiency and liquidity saved.
Talks to the API only, with the keys `make up` wrote to $DELTRAN_HOME/credentials.json.
"""
from __future__ import annotations

import json
import time
import uuid
from datetime import date
from decimal import Decimal

import httpx

from api.iso20022.camt054 import BookingSpec, build_camt054
from deltran.config import Settings

IBANS = {"EBILAEAD": "AE070331234567890123456", "NBADAEAA": "AE250260001015333439504", "ADCBAEAA": "AE880300000123456789012"}
DOZEN = [
    ("EBILAEAD", "SBININBB", "250000.00"), ("SBININBB", "EBILAEAD", "180000.00"),
    ("NBADAEAA", "HDFCINBB", "120000.00"), ("HDFCINBB", "NBADAEAA", "95000.00"),
    ("ADCBAEAA", "ICICINBB", "75000.00"), ("ICICINBB", "ADCBAEAA", "82000.00"),
    ("MASHAEAD", "UTIBINBB", "64000.00"), ("UTIBINBB", "MASHAEAD", "40000.00"),
    ("EBILAEAD", "CHASUS33", "150000.00"), ("CHASUS33", "SBININBB", "130000.00"),
    ("DEUTDEFF", "EBILAEAD", "56000.00"), ("SBININBB", "DEUTDEFF", "61000.00"),
]


def _party(bic: str) -> dict:
    account = {"iban": IBANS[bic]} if bic in IBANS else {"account": "30001234567"}
    return {"name": f"Demo customer of {bic}", **account, "agent_bic": bic}


def run_window_demo(settings: Settings, currency: str = "AED") -> int:
    keys = json.loads(settings.credentials_path.read_text())
    base = f"http://{settings.api_host}:{settings.api_port}"
    tag = uuid.uuid4().hex[:6].upper()
    with httpx.Client(base_url=base, timeout=30) as api:
        payments = []
        for i, (payer, payee, amount) in enumerate(DOZEN):
            body = {"end_to_end_id": f"WIN{tag}-{i:02d}", "amount": amount, "currency": currency,
                    "debtor": _party(payer), "creditor": _party(payee)}
            r = api.post("/v1/payments", json=body, headers=_auth(keys["banks"][payer]))
            r.raise_for_status()
            payments.append((r.json()["payment_id"], payer))
        print(f"submitted {len(payments)} {currency} payments; waiting for them to join the window")
        _wait(api, keys, payments, {"AWAITING_SETTLEMENT"})
        api.post(f"/v1/clearing/windows/close?currency={currency}", headers=_auth(keys["admin"])).raise_for_status()
        # The schedule may have closed the window a moment earlier: follow the payments.
        window = _window_of(api, keys, payments[0])
        for instruction in window["instructions"]:
            xml = build_camt054(
                [BookingSpec(end_to_end_id=instruction["reference"], amount=Decimal(instruction["amount"]),
                             currency=currency, entry_reference=f"F{uuid.uuid4().hex[:20]}",
                             bank_reference=f"B{uuid.uuid4().hex[:20]}", booking_date=date.today())],
                message_id=f"FUND-{uuid.uuid4().hex[:20]}",
            )
            api.post("/v1/notifications/camt054", content=xml,
                     headers={**_auth(keys["settlement_agent"]), "Content-Type": "application/xml"}).raise_for_status()
        print(f"funded {len(window['instructions'])} instruction(s); waiting for every payment to complete")
        _wait(api, keys, payments, {"COMPLETED"})
        window = api.get(f"/v1/clearing/windows/{window['id']}", headers=_auth(keys["admin"])).json()
    _report(window)
    return 0


def _window_of(api: httpx.Client, keys: dict, payment: tuple[str, str], timeout_s: float = 30) -> dict:
    """The window the payment joined, once it is closed and netted."""
    payment_id, bic = payment
    window_id = api.get(f"/v1/payments/{payment_id}", headers=_auth(keys["banks"][bic])).json()["obligation"]["clearing_window_id"]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        window = api.get(f"/v1/clearing/windows/{window_id}", headers=_auth(keys["admin"])).json()
        if window["status"] not in ("OPEN", "CLOSING"):
            return window
        time.sleep(0.2)
    raise SystemExit(f"window {window_id} was not netted in {timeout_s}s")


def _auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def _wait(api: httpx.Client, keys: dict, payments: list, statuses: set[str], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    pending = list(payments)
    while pending and time.monotonic() < deadline:
        pending = [
            (pid, bic) for pid, bic in pending
            if api.get(f"/v1/payments/{pid}", headers=_auth(keys["banks"][bic])).json()["status"] not in statuses
        ]
        time.sleep(0.2)
    if pending:
        raise SystemExit(f"{len(pending)} payment(s) did not reach {statuses} in {timeout_s}s")


def _report(window: dict) -> None:
    c = window["currency"]
    print(f"\nwindow {window['id']} ({c}) {window['status']}")
    print(f"  obligations          {window['obligations_count']}")
    print(f"  net positions        {len(window['positions'])} banks")
    print(f"  gross                {window['gross_amount']} {c}")
    print(f"  net (funded)         {window['net_amount']} {c}")
    print(f"  liquidity saved      {window['liquidity_saved']} {c}")
    print(f"  netting efficiency   {Decimal(window['netting_efficiency']) * 100:.1f}%")
    print(f"  netting took         {window['netting_ms']} ms")
    print("  positions:  " + ", ".join(f"{p['bic']} {p['net']}" for p in window["positions"]))
