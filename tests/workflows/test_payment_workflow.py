"""PaymentWorkflow, branch by branch: rejected by compliance or by risk, gross on its
booking, net on its window, expired at its deadline, a net payment whose window closed
waiting on (rolled) until its window settles, a duplicate booking, the wrong kind of
signal, a mint held back by an open circuit breaker, recalled (cancelled, refused, or
too late); and how the steps run: locally, until one keeps failing and becomes a
regular activity that ops can see."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError, is_cancelled_exception

from deltran.shared import (
    CancelOutcome,
    CancelRequest,
    ComplianceOutcome,
    ExpireInput,
    FiatBooking,
    MintInput,
    MintResult,
    ObligationCreated,
    ObligationOutcome,
    ObligationRefused,
    PaymentInput,
    PaymentState,
    SettleInput,
    WindowSettlement,
)
from deltran.temporal import search_attributes as sa
from deltran.temporal.errors import CIRCUIT_BREAKER_OPEN
from deltran.vocabulary import PaymentStatus, SettlementMode
from workflows.payment import PaymentWorkflow

DEADLINE_S = 3 * 24 * 3600
LOCAL_ATTEMPTS = 3  # local retries sleep in the worker, in real time (0.1 s, 0.2 s)


@dataclass
class Stubs:
    """What each step answers, and what each step was asked."""

    compliance: ComplianceOutcome = field(default_factory=lambda: ComplianceOutcome(passed=True))
    obligation: ObligationOutcome | None = None
    expire_answers: list[bool] = field(default_factory=lambda: [True])
    mint_failures: int = 0  # retryable failures before the mint succeeds
    settle_failures: int = 0  # retryable failures (a database that is down) before settling
    settle_gate: asyncio.Event | None = None  # settle_obligation waits for it, if set
    cancel_answer: bool = True  # whether cancel_payment cancels (False: its window has closed)
    calls: list[tuple[str, object]] = field(default_factory=list)

    def activities(self, *replacements) -> list:
        """The stubs, with any of them replaced by an activity of the same name."""
        stubs = self

        @activity.defn(name="screen_payment")
        async def screen_payment(payment_id: uuid.UUID) -> ComplianceOutcome:
            stubs.calls.append(("screen_payment", payment_id))
            return stubs.compliance

        @activity.defn(name="create_obligation")
        async def create_obligation(payment_id: uuid.UUID) -> ObligationOutcome:
            stubs.calls.append(("create_obligation", payment_id))
            assert stubs.obligation is not None
            return stubs.obligation

        @activity.defn(name="expire_payment")
        async def expire_payment(data: ExpireInput) -> bool:
            stubs.calls.append(("expire_payment", data))
            return stubs.expire_answers.pop(0) if len(stubs.expire_answers) > 1 else stubs.expire_answers[0]

        @activity.defn(name="settle_obligation")
        async def settle_obligation(data: SettleInput) -> None:
            stubs.calls.append(("settle_obligation", data))
            if stubs.settle_failures:
                stubs.settle_failures -= 1
                raise ConnectionRefusedError("database unreachable (stub)")
            if stubs.settle_gate is not None:
                await stubs.settle_gate.wait()

        @activity.defn(name="mint_token")
        async def mint_token(data: MintInput) -> MintResult:
            stubs.calls.append(("mint_token", data))
            if stubs.mint_failures:
                stubs.mint_failures -= 1
                raise ApplicationError("AED breaker open (stub)", type=CIRCUIT_BREAKER_OPEN)
            return MintResult(token_id=TOKEN_ID, amount=AMOUNT, currency="AED")

        @activity.defn(name="cancel_payment")
        async def cancel_payment(request: CancelRequest) -> CancelOutcome:
            stubs.calls.append(("cancel_payment", request))
            # As PostgreSQL would answer: a payment whose settlement committed is past recall
            # (a step's work can commit in a workflow task whose completion the server then
            # refuses, as it does when an update arrived meanwhile: the task is replayed).
            if "settle_obligation" in stubs.steps()[:-1]:
                return CancelOutcome(cancelled=False, status=PaymentStatus.SETTLED, detail="the payment is SETTLED")
            if stubs.cancel_answer:
                return CancelOutcome(cancelled=True, status=PaymentStatus.CANCELLED, detail="cancelled")
            return CancelOutcome(
                cancelled=False, status=PaymentStatus.AWAITING_SETTLEMENT, detail="its clearing window has closed"
            )

        replaced = {r.__name__ for r in replacements}
        defaults = [screen_payment, create_obligation, expire_payment, settle_obligation, mint_token, cancel_payment]
        return [a for a in defaults if a.__name__ not in replaced] + list(replacements)

    def steps(self) -> list[str]:
        return [name for name, _ in self.calls]


AMOUNT = Decimal("2500.00")
TOKEN_ID = uuid.uuid4()
OBLIGATION_ID = uuid.uuid4()
WINDOW_ID = uuid.uuid4()
GROSS = ObligationCreated(obligation_id=OBLIGATION_ID, settlement_mode=SettlementMode.GROSS, routing_reason="urgent")
NET = ObligationCreated(obligation_id=OBLIGATION_ID, settlement_mode=SettlementMode.NET, window_id=WINDOW_ID)
BOOKING = FiatBooking(
    notification_id=uuid.uuid4(), camt054_entry_reference="NTRY-1", bank_confirmation_reference="BR-1",
    amount=AMOUNT, currency="AED", booking_date=date(2026, 12, 4),
)  # fmt: skip
SETTLEMENT = WindowSettlement(window_id=WINDOW_ID, settlement_reference="STL-1")


async def _start(
    skipping_env, task_queue: str, *, local_steps: bool = True, task_timeout: timedelta | None = None
) -> WorkflowHandle[PaymentWorkflow, PaymentState]:
    payment_id = uuid.uuid4()
    data = PaymentInput(
        payment_id=payment_id, end_to_end_id=f"E2E-{payment_id.hex[:8]}", amount=AMOUNT, currency="AED",
        debtor_agent_bic="EBILAEAD", creditor_agent_bic="SBININBB", deadline_s=DEADLINE_S, step_timeout_s=5,
        local_step_attempts=LOCAL_ATTEMPTS, local_steps=local_steps,
    )  # fmt: skip
    return await skipping_env.client.start_workflow(
        PaymentWorkflow.run, data, id=f"payment-test-{payment_id}", task_queue=task_queue, task_timeout=task_timeout
    )


async def _until_awaiting(handle) -> None:
    """The workflow reached its wait (queries run without advancing the skipped clock)."""
    for _ in range(200):
        if (await handle.query(PaymentWorkflow.state)).status == PaymentStatus.AWAITING_SETTLEMENT:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the payment never reached AWAITING_SETTLEMENT")


async def test_rejected_by_compliance_it_ends_before_any_obligation(skipping_env, run_worker):
    stubs = Stubs(compliance=ComplianceOutcome(passed=False, reason_code="RR04", reason="sanctions hit"))
    async with run_worker([PaymentWorkflow], stubs.activities()) as queue:
        state = await (await _start(skipping_env, queue)).result()
    assert (state.status, state.rejection_code, state.rejection_reason) == (
        PaymentStatus.REJECTED, "RR04", "sanctions hit"
    )  # fmt: skip
    assert stubs.steps() == ["screen_payment"]


async def test_refused_by_risk_it_is_rejected_without_waiting(skipping_env, run_worker):
    stubs = Stubs(obligation=ObligationRefused(reason_code="AM14", reason="net debit cap"))
    async with run_worker([PaymentWorkflow], stubs.activities()) as queue:
        state = await (await _start(skipping_env, queue)).result()
    assert (state.status, state.rejection_code) == (PaymentStatus.REJECTED, "AM14")
    assert stubs.steps() == ["screen_payment", "create_obligation"]


async def test_gross_it_settles_on_its_booking_and_mints(skipping_env, run_worker):
    stubs = Stubs(obligation=GROSS)
    async with run_worker([PaymentWorkflow], stubs.activities()) as queue:
        handle = await _start(skipping_env, queue)
        await _until_awaiting(handle)
        await handle.signal(PaymentWorkflow.fiat_booked, BOOKING)
        state = await handle.result()
    assert (state.status, state.token_id, state.booking) == (PaymentStatus.COMPLETED, TOKEN_ID, BOOKING)
    assert stubs.steps() == ["screen_payment", "create_obligation", "settle_obligation", "mint_token"]
    settle = stubs.calls[2][1]
    assert isinstance(settle, SettleInput) and (settle.booking, settle.window) == (BOOKING, None)


async def test_a_second_booking_changes_nothing(skipping_env, run_worker):
    # settle_obligation holds until the second booking is in: it lands while the payment
    # runs on the first, not after the workflow has ended.
    stubs = Stubs(obligation=GROSS, settle_gate=asyncio.Event())
    later = BOOKING.model_copy(update={"notification_id": uuid.uuid4(), "camt054_entry_reference": "NTRY-2"})
    async with run_worker([PaymentWorkflow], stubs.activities()) as queue:
        handle = await _start(skipping_env, queue)
        await _until_awaiting(handle)
        await handle.signal(PaymentWorkflow.fiat_booked, BOOKING)
        while "settle_obligation" not in stubs.steps():
            await asyncio.sleep(0.02)
        await handle.signal(PaymentWorkflow.fiat_booked, later)
        stubs.settle_gate.set()
        state = await handle.result()
    assert state.booking == BOOKING
    assert [c for c in stubs.calls if c[0] == "settle_obligation"][0][1].booking == BOOKING


async def test_net_it_settles_on_its_window_and_mints(skipping_env, run_worker):
    stubs = Stubs(obligation=NET)
    async with run_worker([PaymentWorkflow], stubs.activities()) as queue:
        handle = await _start(skipping_env, queue)
        await _until_awaiting(handle)
        await handle.signal(PaymentWorkflow.window_settled, SETTLEMENT)
        state = await handle.result()
    assert (state.status, state.settlement_mode, state.window_id) == (PaymentStatus.COMPLETED, "NET", WINDOW_ID)
    settle = stubs.calls[2][1]
    assert isinstance(settle, SettleInput) and (settle.booking, settle.window) == (None, SETTLEMENT)


async def test_the_wrong_kind_of_signal_does_not_settle_it_and_it_expires(skipping_env, run_worker):
    stubs = Stubs(obligation=GROSS)
    async with run_worker([PaymentWorkflow], stubs.activities()) as queue:
        handle = await _start(skipping_env, queue)
        await _until_awaiting(handle)
        await handle.signal(PaymentWorkflow.window_settled, SETTLEMENT)  # a gross payment has no window
        await skipping_env.sleep(timedelta(seconds=DEADLINE_S + 60))
        state = await handle.result()
    assert (state.status, state.rejection_code) == (PaymentStatus.EXPIRED, "AB01")
    assert "settle_obligation" not in stubs.steps()


async def test_unfunded_it_expires_at_its_deadline(skipping_env, run_worker):
    stubs = Stubs(obligation=GROSS)
    async with run_worker([PaymentWorkflow], stubs.activities()) as queue:
        handle = await _start(skipping_env, queue)
        state = await handle.result()  # the test server skips the three days
    assert (state.status, state.rejection_code) == (PaymentStatus.EXPIRED, "AB01")
    assert stubs.steps() == ["screen_payment", "create_obligation", "expire_payment"]
    expire = stubs.calls[2][1]
    assert isinstance(expire, ExpireInput) and expire.obligation_id == OBLIGATION_ID


async def test_net_whose_window_closed_waits_on_until_the_window_that_took_it_settles(skipping_env, run_worker):
    # expire_payment declines twice (its window closed: the obligation is rolled, not
    # expired), then the next window's settlement reaches the payment.
    stubs = Stubs(obligation=NET, expire_answers=[False, False, True])
    async with run_worker([PaymentWorkflow], stubs.activities()) as queue:
        handle = await _start(skipping_env, queue)
        await _until_awaiting(handle)
        await skipping_env.sleep(timedelta(seconds=2 * DEADLINE_S + 60))
        await handle.signal(PaymentWorkflow.window_settled, SETTLEMENT)
        state = await handle.result()
    assert state.status == PaymentStatus.COMPLETED
    assert stubs.steps().count("expire_payment") == 2
    assert stubs.steps()[-2:] == ["settle_obligation", "mint_token"]


async def test_a_mint_held_back_by_an_open_breaker_retries_until_it_closes(skipping_env, run_worker):
    stubs = Stubs(obligation=GROSS, mint_failures=3)
    async with run_worker([PaymentWorkflow], stubs.activities()) as queue:
        handle = await _start(skipping_env, queue)
        await _until_awaiting(handle)
        await handle.signal(PaymentWorkflow.fiat_booked, BOOKING)
        state = await handle.result()
    assert state.status == PaymentStatus.COMPLETED
    assert stubs.steps().count("mint_token") == 4  # three refusals, retried, then the mint


def _recall(handle) -> CancelRequest:
    return CancelRequest(
        payment_id=uuid.UUID(handle.id.removeprefix("payment-test-")),
        case_id="CASE-1",
        reason_code="DUPL",
        requested_by=uuid.uuid4(),
    )


async def test_recalled_while_awaiting_settlement_it_ends_cancelled(skipping_env, run_worker):
    stubs = Stubs(obligation=GROSS)
    async with run_worker([PaymentWorkflow], stubs.activities()) as queue:
        handle = await _start(skipping_env, queue)
        await _until_awaiting(handle)
        outcome = await handle.execute_update(PaymentWorkflow.cancel, _recall(handle))
        state = await handle.result()
    assert outcome.cancelled and state.status == PaymentStatus.CANCELLED and state.rejection_code == "DUPL"
    assert stubs.steps() == ["screen_payment", "create_obligation", "cancel_payment"]
    # A booking after it funds nothing here: the workflow has ended (the entry is returned).


async def test_a_recall_the_database_refuses_leaves_it_to_settle(skipping_env, run_worker):
    stubs = Stubs(obligation=NET, cancel_answer=False)  # netted in a closed window
    async with run_worker([PaymentWorkflow], stubs.activities()) as queue:
        handle = await _start(skipping_env, queue)
        await _until_awaiting(handle)
        outcome = await handle.execute_update(PaymentWorkflow.cancel, _recall(handle))
        assert not outcome.cancelled
        await handle.signal(PaymentWorkflow.window_settled, SETTLEMENT)
        state = await handle.result()
    assert state.status == PaymentStatus.COMPLETED
    assert stubs.steps() == ["screen_payment", "create_obligation", "cancel_payment", "settle_obligation", "mint_token"]


async def test_a_recall_during_settlement_waits_for_it_and_is_too_late(skipping_env, run_worker):
    stubs = Stubs(obligation=GROSS, settle_gate=asyncio.Event())
    async with run_worker([PaymentWorkflow], stubs.activities()) as queue:
        handle = await _start(skipping_env, queue)
        await _until_awaiting(handle)
        await handle.signal(PaymentWorkflow.fiat_booked, BOOKING)
        while "settle_obligation" not in stubs.steps():
            await asyncio.sleep(0.02)
        recall = asyncio.create_task(handle.execute_update(PaymentWorkflow.cancel, _recall(handle)))
        await asyncio.sleep(0.3)
        assert not recall.done()  # it waits for the step: a recall never runs beside one
        stubs.settle_gate.set()
        outcome = await recall
        state = await handle.result()
    assert not outcome.cancelled and outcome.status in (PaymentStatus.SETTLED, PaymentStatus.COMPLETED)
    assert state.status == PaymentStatus.COMPLETED
    steps = stubs.steps()
    assert "cancel_payment" not in steps or steps.index("cancel_payment") > steps.index("settle_obligation")


async def test_recalled_during_screening_it_starts_no_further_step(skipping_env, run_worker):
    gate = asyncio.Event()
    stubs = Stubs(obligation=GROSS)

    @activity.defn(name="screen_payment")
    async def screen_payment(payment_id: uuid.UUID) -> ComplianceOutcome:  # held until the recall is in
        stubs.calls.append(("screen_payment", payment_id))
        await gate.wait()
        return ComplianceOutcome(passed=True)

    async with run_worker([PaymentWorkflow], stubs.activities(screen_payment)) as queue:
        handle = await _start(skipping_env, queue)
        while "screen_payment" not in stubs.steps():
            await asyncio.sleep(0.02)
        recall = asyncio.create_task(handle.execute_update(PaymentWorkflow.cancel, _recall(handle)))
        await asyncio.sleep(0.3)
        gate.set()
        outcome = await recall
        state = await handle.result()
    assert outcome.cancelled and state.status == PaymentStatus.CANCELLED
    # No step after the recall's. (The obligation may have been created first: the server
    # refuses a task's completion when an update arrived during it, and the replay then
    # meets the update before the step's marker; the recall releases the obligation.)
    assert stubs.steps()[-1] == "cancel_payment" and stubs.steps().count("cancel_payment") == 1


async def _first_pending_activity(handle, min_attempt: int = 1):
    """The workflow's description once it has a pending activity at `min_attempt` or later."""
    for _ in range(500):
        description = await handle.describe()
        pending = description.raw_description.pending_activities
        if pending and pending[0].attempt >= min_attempt:
            return description
        await asyncio.sleep(0.02)
    raise AssertionError(f"no pending activity at attempt {min_attempt} or later")


async def _event_types(handle) -> list[str]:
    return [EventType.Name(e.event_type) for e in (await handle.fetch_history()).events]


async def test_its_steps_run_as_local_activities_recorded_as_markers(skipping_env, run_worker):
    stubs = Stubs(obligation=GROSS)
    async with run_worker([PaymentWorkflow], stubs.activities()) as queue:
        handle = await _start(skipping_env, queue)
        await _until_awaiting(handle)
        await handle.signal(PaymentWorkflow.fiat_booked, BOOKING)
        assert (await handle.result()).status == PaymentStatus.COMPLETED
    events = await _event_types(handle)
    assert "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED" not in events
    # the patch marker, then one marker per step
    assert events.count("EVENT_TYPE_MARKER_RECORDED") == 1 + 4


async def test_a_step_that_keeps_failing_becomes_a_regular_activity_ops_can_see(skipping_env, run_worker):
    # More failures than its local attempts: the step runs on as a regular
    # activity, whose attempt count and last failure the UI shows (describe), and the
    # payment completes once the step stops failing.
    stubs = Stubs(obligation=GROSS, settle_failures=40)
    async with run_worker([PaymentWorkflow], stubs.activities()) as queue:
        handle = await _start(skipping_env, queue)
        await _until_awaiting(handle)
        await handle.signal(PaymentWorkflow.fiat_booked, BOOKING)
        seen = (await _first_pending_activity(handle, min_attempt=2)).raw_description.pending_activities[0]
        assert seen.activity_type.name == "settle_obligation"
        assert "database unreachable" in seen.last_failure.message
        stubs.settle_failures = 0
        state = await handle.result()
    assert state.status == PaymentStatus.COMPLETED
    events = await _event_types(handle)
    assert events.count("EVENT_TYPE_ACTIVITY_TASK_SCHEDULED") == 1  # settle only; mint ran locally


async def test_a_business_refusal_in_a_local_step_is_not_retried_as_a_regular_activity(skipping_env, run_worker):
    refused = ApplicationError("obligation released (stub)", type="ObligationReleased", non_retryable=True)

    @activity.defn(name="settle_obligation")
    async def settle_obligation(data: SettleInput) -> None:
        raise refused

    stubs = Stubs(obligation=GROSS)
    async with run_worker([PaymentWorkflow], stubs.activities(settle_obligation)) as queue:
        handle = await _start(skipping_env, queue)
        await _until_awaiting(handle)
        await handle.signal(PaymentWorkflow.fiat_booked, BOOKING)
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    assert "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED" not in await _event_types(handle)


async def test_a_mint_that_keeps_failing_leaves_the_payment_searchable_as_settled(skipping_env, run_worker):
    # SETTLED is upserted only when the mint cannot follow in the same workflow task.
    stubs = Stubs(obligation=GROSS, mint_failures=1000)
    async with run_worker([PaymentWorkflow], stubs.activities()) as queue:
        handle = await _start(skipping_env, queue)
        await _until_awaiting(handle)
        await handle.signal(PaymentWorkflow.fiat_booked, BOOKING)
        description = await _first_pending_activity(handle)
        assert description.raw_description.pending_activities[0].activity_type.name == "mint_token"
        assert description.typed_search_attributes.get(sa.PAYMENT_STATUS) == PaymentStatus.SETTLED.value
        stubs.mint_failures = 0
        assert (await handle.result()).status == PaymentStatus.COMPLETED
    assert (await handle.describe()).typed_search_attributes.get(sa.PAYMENT_STATUS) == PaymentStatus.COMPLETED.value


async def test_started_without_local_steps_every_step_is_a_regular_activity(skipping_env, run_worker):
    # A payment started while local steps were off (a rolling upgrade): no patch marker,
    # so a worker without local steps can still run every task of it.
    stubs = Stubs(obligation=GROSS)
    async with run_worker([PaymentWorkflow], stubs.activities()) as queue:
        handle = await _start(skipping_env, queue, local_steps=False)
        await _until_awaiting(handle)
        await handle.signal(PaymentWorkflow.fiat_booked, BOOKING)
        assert (await handle.result()).status == PaymentStatus.COMPLETED
    events = await _event_types(handle)
    assert events.count("EVENT_TYPE_ACTIVITY_TASK_SCHEDULED") == 4
    assert "EVENT_TYPE_MARKER_RECORDED" not in events


async def test_cancelled_during_a_local_step_it_ends_cancelled_and_the_step_does_not_run_on(skipping_env, run_worker):
    started = asyncio.Event()

    @activity.defn(name="screen_payment")
    async def screen_payment(payment_id: uuid.UUID) -> ComplianceOutcome:
        started.set()
        await asyncio.sleep(60)  # a step that hangs until it is cancelled
        return ComplianceOutcome(passed=True)

    stubs = Stubs(obligation=GROSS)
    async with run_worker([PaymentWorkflow], stubs.activities(screen_payment)) as queue:
        # A short task timeout: the worker reports on the running local step every 1.6 s,
        # and the cancellation reaches the workflow then.
        handle = await _start(skipping_env, queue, task_timeout=timedelta(seconds=2))
        await started.wait()
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    assert is_cancelled_exception(failure.value.cause)
    events = await _event_types(handle)
    assert "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED" not in events
    assert "EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED" in events
