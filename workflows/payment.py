"""PaymentWorkflow: one durable workflow per payment.

compliance → obligation → wait (durably, until the deadline) for the camt.054 that
books the fiat → settle → mint. Deterministic: no I/O, clocks or randomness here; every
side effect is an activity. Search attributes are set at start and upserted only when
the status changes (each upsert is a history event).

Each step is a short PostgreSQL transaction, so it runs first as a *local* activity: in
the worker, inside the workflow task, with no activity task to dispatch and a marker in
the history instead of three events (docs/capacity.md measures what this saves). A local
activity's retries are invisible to ops until it ends, so a step gets a few local attempts
(`local_step_attempts`, about 3 s); one that still fails runs on as a regular activity
with the unbounded retry policy, visible in the Temporal UI's pending activities (attempt,
last failure) and in `GET /v1/payments/{id}` (`step`, `attempt`, `last_error`). Payments
started before local steps (no `local-steps` marker in their history, or started with
`local_steps` off) keep regular activities to the end, so their histories replay and a
rolling deploy never hands an old worker a history it cannot read.

A recall (the `cancel` update, deltran/cancellations.py) is decided between steps: steps
and the recall's own step hold one lock, so the recall never runs beside a step, and a
payment it cancelled starts no further step.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from activities.compliance import ComplianceActivities
    from activities.fx_settlement import FxSettlementActivities
    from activities.obligations import ObligationActivities
    from activities.settlement import SettlementActivities
    from activities.tokens import TokenActivities
    from deltran.cancellations import cancelled_detail
    from deltran.reason_codes import ReasonCode
    from deltran.shared import (
        CancelOutcome,
        CancelRequest,
        ExpireInput,
        FiatBooking,
        MintInput,
        ObligationRefused,
        PaymentInput,
        PaymentState,
        SettleInput,
        WindowSettlement,
    )
    from deltran.temporal import search_attributes as sa
    from deltran.temporal.contract import PaymentWorkflowContract
    from deltran.temporal.errors import NON_RETRYABLE_ERROR_TYPES
    from deltran.vocabulary import PaymentStatus, SettlementMode

# Transient faults (Postgres restarting, a dropped connection) are retried without a
# cap on attempts: a payment waits for the database rather than failing. Business
# outcomes are non-retryable errors and end the step at once.
STEP_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=NON_RETRYABLE_ERROR_TYPES,
)
STEP_TIMEOUT = timedelta(seconds=30)

# A cross-currency payment past its deadline whose expiry was declined: how soon it is
# looked at again (its window settles or rolls the leg in about a funding timeout).
FX_RECHECK = timedelta(minutes=5)
FX_RECHECK_PATCH = "fx-recheck"
# The patch that made the steps local: recorded as a marker at the start of each payment.
LOCAL_STEPS_PATCH = "local-steps"
# The local attempts of a step (PaymentInput.local_step_attempts, 6 by default: 2.5 s of
# backoff) ride out a dropped connection or a deadlock, and end soon enough that a step
# stuck on PostgreSQL shows in the UI and the API well within 30 s — even one whose
# attempts hang until LOCAL_ATTEMPT_TIMEOUT (6 × 4 s). Bounded by attempts: the SDK does
# not end a local activity's retries at its schedule-to-close timeout.
LOCAL_ATTEMPT_TIMEOUT = timedelta(seconds=4)
LOCAL_INITIAL_INTERVAL = timedelta(milliseconds=100)
LOCAL_MAXIMUM_INTERVAL = timedelta(seconds=1)


def _declined(expired: bool | None) -> bool:
    """expire_payment answers False when it changed nothing (a net obligation whose window
    has closed, a gross one already booked); histories recorded before it could decline
    hold None (its old answer), which meant expired."""
    return expired is False


def _business_outcome(error: FailureError) -> bool:
    """A failure no retry changes (it ends the step in either mode), as opposed to one a
    regular activity keeps retrying (a fault that outlasted the local attempts). A local
    activity's failure arrives bare or wrapped in an ActivityError."""
    cause = error.cause if isinstance(error, ActivityError) else error
    return isinstance(cause, ApplicationError) and (cause.non_retryable or cause.type in NON_RETRYABLE_ERROR_TYPES)


class _Cancelled(Exception):
    """The payment was cancelled by a recall: run() ends with its state."""


@workflow.defn(name="PaymentWorkflow")
class PaymentWorkflow(PaymentWorkflowContract):
    @workflow.init
    def __init__(self, data: PaymentInput) -> None:
        # Set before any handler runs: a camt.054 signal may arrive in the first task.
        self._state = PaymentState(payment_id=data.payment_id, status=PaymentStatus.SCREENING)
        self._booking: FiatBooking | None = None
        self._window: WindowSettlement | None = None
        self._news = 0  # signals received: bookings and window settlements
        self._asked = 0  # of them, those a settle_fx step has looked at
        self._step_timeout = timedelta(seconds=data.step_timeout_s)
        self._local_steps = False  # decided at the start of run
        self._searchable_status = PaymentStatus.SCREENING  # the search attribute's value
        # Held by each step and by a recall's step (the `cancel` update).
        self._steps = asyncio.Lock()
        self._cancelled = False
        self._local_retry = RetryPolicy(
            initial_interval=LOCAL_INITIAL_INTERVAL,
            backoff_coefficient=2.0,
            maximum_interval=LOCAL_MAXIMUM_INTERVAL,
            maximum_attempts=data.local_step_attempts,
            non_retryable_error_types=NON_RETRYABLE_ERROR_TYPES,
        )

    @workflow.run
    async def run(self, data: PaymentInput) -> PaymentState:
        try:
            await self._run(data)
        except _Cancelled:
            pass
        # A recall that arrived as the payment ended is answered before the workflow ends.
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._state

    async def _run(self, data: PaymentInput) -> None:
        # Local steps unless the payment was started with them off (DELTRAN_LOCAL_STEPS
        # false during a rolling upgrade: no marker, so an old worker can run it), and
        # only if its history has the patch marker or is new: a payment started before
        # local steps keeps regular activities to its end.
        self._local_steps = data.local_steps is not False and workflow.patched(LOCAL_STEPS_PATCH)
        compliance = await self._next_step(ComplianceActivities.screen_payment, data.payment_id)
        if not compliance.passed:
            self._set(
                status=PaymentStatus.REJECTED,
                rejection_code=compliance.reason_code,
                rejection_reason=compliance.reason,
            )
            return

        obligation = await self._next_step(ObligationActivities.create_obligation, data.payment_id)
        if isinstance(obligation, ObligationRefused):  # the risk engine refused it (net debit cap)
            self._set(
                status=PaymentStatus.REJECTED,
                rejection_code=obligation.reason_code,
                rejection_reason=obligation.reason,
            )
            return
        self._set(
            status=PaymentStatus.AWAITING_SETTLEMENT,
            obligation_id=obligation.obligation_id,
            settlement_mode=obligation.settlement_mode,
            window_id=obligation.window_id,
            target_obligation_id=obligation.target_obligation_id,
        )
        if obligation.target_obligation_id is not None:
            await self._settle_both_legs(data)
            return

        # Gross waits for its own booked camt.054, net for its window's settlement; the
        # other kind of signal cannot settle it.
        net = obligation.settlement_mode == SettlementMode.NET

        def funded() -> bool:
            return (self._window if net else self._booking) is not None

        while True:
            try:
                await workflow.wait_condition(
                    lambda: funded() or self._cancelled,
                    timeout=timedelta(seconds=data.deadline_s),
                    timeout_summary="settlement deadline",
                )
            except TimeoutError:
                pass
            if self._cancelled:
                return
            if funded():
                break
            expired = await self._next_step(
                ObligationActivities.expire_payment,
                ExpireInput(payment_id=data.payment_id, obligation_id=obligation.obligation_id),
            )
            if not _declined(expired):
                self._set(
                    status=PaymentStatus.EXPIRED,
                    rejection_code=ReasonCode.CLEARING_TIMEOUT.value,
                    rejection_reason="not funded before the settlement deadline",
                )
                return
            # A net obligation whose window has closed: only its window settles it (or
            # rolls it into the next one); keep waiting for it.

        await self._next_step(
            SettlementActivities.settle_obligation,
            SettleInput(
                payment_id=data.payment_id,
                obligation_id=obligation.obligation_id,
                booking=None if net else self._booking,
                window=self._window if net else None,
            ),
        )
        # With local steps the mint follows in the same workflow task, so SETTLED is
        # searchable only if the mint has to run on as a regular activity (see _step).
        self._set(status=PaymentStatus.SETTLED, searchable=not self._local_steps)

        token = await self._next_step(
            TokenActivities.mint_token,
            MintInput(payment_id=data.payment_id, obligation_id=obligation.obligation_id),
        )
        self._set(status=PaymentStatus.COMPLETED, token_id=token.token_id)

    async def _settle_both_legs(self, data: PaymentInput) -> None:
        """A cross-currency payment: its two legs settle together or not at all
        (activities/fx_settlement.py decides, in PostgreSQL). Each booking or window
        signal asks whether both legs can settle now; at the deadline, the payment expires
        with no leg paid, unless a leg's window still has to settle it (then it asks again
        every FX_RECHECK)."""
        deadline = workflow.now() + timedelta(seconds=data.deadline_s)
        while True:
            try:
                await workflow.wait_condition(
                    lambda: self._news > self._asked or self._cancelled,
                    timeout=max(deadline - workflow.now(), timedelta(0)),
                    timeout_summary="settlement deadline",
                )
            except TimeoutError:
                pass
            if self._cancelled:
                return
            if self._news > self._asked:
                self._asked = self._news
                outcome = await self._next_step(FxSettlementActivities.settle_fx, data.payment_id)
            elif workflow.now() >= deadline:
                outcome = await self._next_step(FxSettlementActivities.expire_fx, data.payment_id)
                # Declined (a leg's window still settling, or rolling it): looked at again
                # soon, not a whole deadline later — a leg may wait in escrow meanwhile
                # (payments that declined before the patch keep waiting a deadline).
                again = timedelta(seconds=data.deadline_s)
                if workflow.patched(FX_RECHECK_PATCH):
                    again = min(again, FX_RECHECK)
                deadline = workflow.now() + again
            else:
                continue
            self._state = self._state.model_copy(update={"settled_legs": outcome.settled_legs})
            if outcome.status == PaymentStatus.COMPLETED:
                self._set(status=PaymentStatus.COMPLETED, token_id=outcome.token_id)
                return
            if outcome.status == PaymentStatus.EXPIRED:
                self._set(
                    status=PaymentStatus.EXPIRED,
                    rejection_code=ReasonCode.CLEARING_TIMEOUT.value,
                    rejection_reason="not funded before the settlement deadline",
                )
                return
            if outcome.status != PaymentStatus.AWAITING_SETTLEMENT:  # a recall decided it meanwhile
                self._set(status=outcome.status)
                return

    @workflow.signal(name="fiat_booked")
    def fiat_booked(self, booking: FiatBooking) -> None:
        """The settlement agent's camt.054 booked this payment's fiat. The first booking
        wins; a duplicate notification changes nothing. (A cross-currency payment has a
        booking per leg: each is news for _settle_both_legs.)"""
        self._news += 1
        if self._booking is None:
            self._booking = booking
            self._state = self._state.model_copy(update={"booking": booking})

    @workflow.signal(name="window_settled")
    def window_settled(self, settlement: WindowSettlement) -> None:
        """The payment's clearing window settled (net path; each leg's, cross-currency)."""
        self._news += 1
        if self._window is None:
            self._window = settlement

    @workflow.update(name="cancel")
    async def cancel(self, request: CancelRequest) -> CancelOutcome:  # type: ignore[override]  # typed by its class
        """The debtor agent's recall: between two steps, cancel the payment if it has not
        settled (the cancel_payment step decides, in PostgreSQL, against a booking or the
        window's close). A payment past it is answered with its status unchanged."""
        async with self._steps:
            status = self._state.status
            if self._cancelled or status not in (PaymentStatus.SCREENING, PaymentStatus.AWAITING_SETTLEMENT):
                return CancelOutcome(cancelled=self._cancelled, status=status, detail=f"the payment is {status.value}")
            outcome = await self._step(ObligationActivities.cancel_payment, request)
            if outcome.cancelled:
                self._cancelled = True
                self._set(
                    status=PaymentStatus.CANCELLED,
                    rejection_code=request.reason_code,
                    rejection_reason=cancelled_detail(request),
                )
            return outcome

    @workflow.query(name="state")
    def state(self) -> PaymentState:
        return self._state

    async def _next_step(self, activity, arg):
        """A step of the payment's own path: none starts once a recall has cancelled it."""
        async with self._steps:
            if self._cancelled:
                raise _Cancelled()
            return await self._step(activity, arg)

    async def _step(self, activity, arg):
        if self._local_steps:
            try:
                return await workflow.execute_local_activity_method(
                    activity,
                    arg,
                    start_to_close_timeout=min(self._step_timeout, LOCAL_ATTEMPT_TIMEOUT),
                    retry_policy=self._local_retry,
                )
            except FailureError as error:
                if is_cancelled_exception(error):
                    raise  # the workflow is being cancelled: the step ends, it does not run on
                if _business_outcome(error):
                    self._make_status_searchable()  # the payment ends here, at its true status
                    raise
                workflow.logger.warning(
                    "step %s still failing after its local attempts; it runs on as a regular activity: %s",
                    activity.__name__,
                    error,
                )
                self._make_status_searchable()  # a stuck payment is found by its true status
        return await workflow.execute_activity_method(
            activity, arg, start_to_close_timeout=self._step_timeout, retry_policy=STEP_RETRY
        )

    def _set(self, *, status: PaymentStatus, searchable: bool = True, **changes) -> None:
        self._state = self._state.model_copy(update={"status": status, **changes})
        if not searchable:
            return
        updates = [sa.PAYMENT_STATUS.value_set(status.value)]
        if "settlement_mode" in changes:
            updates.append(sa.SETTLEMENT_MODE.value_set(changes["settlement_mode"]))
        workflow.upsert_search_attributes(updates)
        self._searchable_status = status

    def _make_status_searchable(self) -> None:
        if self._state.status != self._searchable_status:
            workflow.upsert_search_attributes([sa.PAYMENT_STATUS.value_set(self._state.status.value)])
            self._searchable_status = self._state.status
