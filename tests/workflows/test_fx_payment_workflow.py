"""PaymentWorkflow's cross-currency branch, with stub activities on the time-skipping
server: both legs settle on the news that completes them (bookings or windows, in any
order, some before the obligation exists), the deadline expires it with no leg paid, an
expiry declined while a leg's window settles waits on, and a recall cancels it.

RECORD_HISTORIES=1 writes each run's history into tests/replay/histories/ (replayed
there against every later change)."""

from __future__ import annotations

import asyncio
import os
import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

from temporalio import activity

from deltran.shared import (
    CancelOutcome,
    CancelRequest,
    ComplianceOutcome,
    FiatBooking,
    FxOutcome,
    ObligationCreated,
    PaymentInput,
    PaymentState,
    WindowSettlement,
)
from deltran.vocabulary import PaymentStatus, SettlementMode
from workflows.payment import PaymentWorkflow

DEADLINE_S = 3 * 24 * 3600
SOURCE_LEG, TARGET_LEG, TOKEN_ID = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
AED_WINDOW, INR_WINDOW = uuid.uuid4(), uuid.uuid4()
HISTORIES = Path(__file__).parent.parent / "replay" / "histories"


def legs(mode: SettlementMode) -> ObligationCreated:
    net = mode == SettlementMode.NET
    return ObligationCreated(
        obligation_id=SOURCE_LEG,
        settlement_mode=mode,
        window_id=AED_WINDOW if net else None,
        target_obligation_id=TARGET_LEG,
        target_window_id=INR_WINDOW if net else None,
    )


def booking(currency: str, amount: str) -> FiatBooking:
    return FiatBooking(
        notification_id=uuid.uuid4(), camt054_entry_reference=f"NTRY-{currency}", bank_confirmation_reference="BR",
        amount=Decimal(amount), currency=currency, booking_date=date(2026, 12, 7),
    )  # fmt: skip


@dataclass
class FxStubs:
    """settle_fx answers from `settles` in turn (the last one again), expire_fx from `expires`."""

    obligation: ObligationCreated
    settles: list[FxOutcome] = field(default_factory=list)
    expires: list[FxOutcome] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)

    def activities(self) -> list:
        stubs = self

        def answer(answers: list[FxOutcome]) -> FxOutcome:
            return answers.pop(0) if len(answers) > 1 else answers[0]

        @activity.defn(name="screen_payment")
        async def screen_payment(payment_id: uuid.UUID) -> ComplianceOutcome:
            stubs.calls.append("screen_payment")
            return ComplianceOutcome(passed=True)

        @activity.defn(name="create_obligation")
        async def create_obligation(payment_id: uuid.UUID) -> ObligationCreated:
            stubs.calls.append("create_obligation")
            return stubs.obligation

        @activity.defn(name="settle_fx")
        async def settle_fx(payment_id: uuid.UUID) -> FxOutcome:
            stubs.calls.append("settle_fx")
            return answer(stubs.settles)

        @activity.defn(name="expire_fx")
        async def expire_fx(payment_id: uuid.UUID) -> FxOutcome:
            stubs.calls.append("expire_fx")
            return answer(stubs.expires)

        @activity.defn(name="cancel_payment")
        async def cancel_payment(request: CancelRequest) -> CancelOutcome:
            stubs.calls.append("cancel_payment")
            return CancelOutcome(cancelled=True, status=PaymentStatus.CANCELLED, detail="cancelled")

        return [screen_payment, create_obligation, settle_fx, expire_fx, cancel_payment]


WAITING = FxOutcome(status=PaymentStatus.AWAITING_SETTLEMENT, settled_legs=0)
ONE_LEG = FxOutcome(status=PaymentStatus.AWAITING_SETTLEMENT, settled_legs=1)
DONE = FxOutcome(status=PaymentStatus.COMPLETED, token_id=TOKEN_ID, settled_legs=2)
EXPIRED = FxOutcome(status=PaymentStatus.EXPIRED, settled_legs=0)


async def _start(skipping_env, queue: str):
    payment_id = uuid.uuid4()
    data = PaymentInput(
        payment_id=payment_id, end_to_end_id=f"FX-{payment_id.hex[:8]}", amount=Decimal("100000.00"),
        currency="AED", debtor_agent_bic="EBILAEAD", creditor_agent_bic="SBININBB", deadline_s=DEADLINE_S,
        step_timeout_s=5, local_step_attempts=3, local_steps=True,
    )  # fmt: skip
    return await skipping_env.client.start_workflow(
        PaymentWorkflow.run, data, id=f"payment-fx-test-{payment_id}", task_queue=queue
    )


async def _until(handle, check) -> PaymentState:
    for _ in range(300):
        state = await handle.query(PaymentWorkflow.state)
        if check(state):
            return state
        await asyncio.sleep(0.02)
    raise AssertionError(f"never reached: {state}")


async def _record(handle, name: str) -> None:
    if os.environ.get("RECORD_HISTORIES"):
        history = await handle.fetch_history()
        (HISTORIES / f"{name}.json").write_text(history.to_json())


async def test_net_both_legs_settle_on_their_windows_and_it_completes(skipping_env, run_worker):
    stubs = FxStubs(legs(SettlementMode.NET), settles=[ONE_LEG, DONE])
    async with run_worker([PaymentWorkflow], stubs.activities()) as queue:
        handle = await _start(skipping_env, queue)
        state = await _until(handle, lambda s: s.status == PaymentStatus.AWAITING_SETTLEMENT)
        assert (state.obligation_id, state.target_obligation_id) == (SOURCE_LEG, TARGET_LEG)
        await handle.signal(
            PaymentWorkflow.window_settled, WindowSettlement(window_id=AED_WINDOW, settlement_reference="WIN-A")
        )
        state = await _until(handle, lambda s: s.settled_legs == 1)
        assert state.status == PaymentStatus.AWAITING_SETTLEMENT  # one leg in escrow: not paid
        await handle.signal(
            PaymentWorkflow.window_settled, WindowSettlement(window_id=INR_WINDOW, settlement_reference="WIN-I")
        )
        state = await handle.result()
        await _record(handle, "payment_fx_completed_net")
    assert (state.status, state.token_id, state.settled_legs) == (PaymentStatus.COMPLETED, TOKEN_ID, 2)
    assert stubs.calls == ["screen_payment", "create_obligation", "settle_fx", "settle_fx"]


async def test_gross_a_booking_before_the_legs_exist_is_looked_at_once_they_do(skipping_env, run_worker):
    stubs = FxStubs(legs(SettlementMode.GROSS), settles=[ONE_LEG, DONE])
    async with run_worker([PaymentWorkflow], stubs.activities()) as queue:
        handle = await _start(skipping_env, queue)
        # The provider's INR booked while the payment is still being screened.
        await handle.signal(PaymentWorkflow.fiat_booked, booking("INR", "2260000.00"))
        await _until(handle, lambda s: s.settled_legs == 1)
        await handle.signal(PaymentWorkflow.fiat_booked, booking("AED", "100000.00"))
        state = await handle.result()
    assert state.status == PaymentStatus.COMPLETED
    assert stubs.calls.count("settle_fx") == 2 and "expire_fx" not in stubs.calls


async def test_no_leg_paid_by_the_deadline_it_expires(skipping_env, run_worker):
    stubs = FxStubs(legs(SettlementMode.NET), settles=[ONE_LEG], expires=[EXPIRED])
    async with run_worker([PaymentWorkflow], stubs.activities()) as queue:
        handle = await _start(skipping_env, queue)
        await _until(handle, lambda s: s.status == PaymentStatus.AWAITING_SETTLEMENT)
        # One leg settles into escrow; the other never does.
        await handle.signal(
            PaymentWorkflow.window_settled, WindowSettlement(window_id=AED_WINDOW, settlement_reference="WIN-A")
        )
        await _until(handle, lambda s: s.settled_legs == 1)
        state = await handle.result()  # the test server skips the three days
        await _record(handle, "payment_fx_expired_one_leg_unwound_net")
    assert (state.status, state.rejection_code) == (PaymentStatus.EXPIRED, "AB01")
    assert stubs.calls == ["screen_payment", "create_obligation", "settle_fx", "expire_fx"]


async def test_an_expiry_declined_while_a_leg_s_window_settles_asks_again_soon(skipping_env, run_worker):
    stubs = FxStubs(legs(SettlementMode.NET), settles=[DONE], expires=[WAITING])
    async with run_worker([PaymentWorkflow], stubs.activities()) as queue:
        handle = await _start(skipping_env, queue)
        await _until(handle, lambda s: s.status == PaymentStatus.AWAITING_SETTLEMENT)
        # Past the deadline by 12 minutes: asked then, and again every 5 minutes.
        await skipping_env.sleep(timedelta(seconds=DEADLINE_S, minutes=12))
        await handle.signal(
            PaymentWorkflow.window_settled, WindowSettlement(window_id=INR_WINDOW, settlement_reference="WIN-I")
        )
        state = await handle.result()
        await _record(handle, "payment_fx_expiry_declined_rechecked_then_completed_net")
    assert state.status == PaymentStatus.COMPLETED
    assert stubs.calls.count("expire_fx") == 3 and stubs.calls[-1] == "settle_fx"


async def test_recalled_while_its_legs_wait_it_ends_cancelled(skipping_env, run_worker):
    stubs = FxStubs(legs(SettlementMode.GROSS), settles=[WAITING])
    async with run_worker([PaymentWorkflow], stubs.activities()) as queue:
        handle = await _start(skipping_env, queue)
        await _until(handle, lambda s: s.status == PaymentStatus.AWAITING_SETTLEMENT)
        request = CancelRequest(
            payment_id=uuid.uuid4(), case_id="CASE-1", reason_code="DUPL", requested_by=uuid.uuid4()
        )
        outcome = await handle.execute_update(PaymentWorkflow.cancel, request)
        state = await handle.result()
    assert outcome.cancelled and state.status == PaymentStatus.CANCELLED
    assert "settle_fx" not in stubs.calls and "expire_fx" not in stubs.calls
