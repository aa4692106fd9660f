"""ClearingWindowWorkflow: one run closes, nets and settles one window of a currency.

Started by the currency's Temporal Schedule (`clearing-<CUR>`, no overlapping runs) or
by an admin's "close now". close → net (positions, funding instructions) → wait for
every net debtor's funding camt.054 (signals) until the funding deadline → settle the
window (all of it, or the fallback's largest covered set) → tell its payments.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.clearing import ClearingActivities
    from deltran.shared import (
        ClearingInput,
        ClearingState,
        CloseInput,
        NetInput,
        WindowSettlement,
    )
    from deltran.temporal.contract import ClearingWindowContract
    from deltran.vocabulary import NO_WINDOW, WindowStatus
    from workflows.payment import STEP_RETRY, STEP_TIMEOUT

# Netting a million obligations takes seconds; signalling every payment of a large
# window takes longer and heartbeats its progress.
NETTING_TIMEOUT = timedelta(minutes=10)
SIGNALLING_TIMEOUT = timedelta(hours=2)
SIGNALLING_HEARTBEAT = timedelta(minutes=1)


@workflow.defn(name="ClearingWindowWorkflow")
class ClearingWindowWorkflow(ClearingWindowContract):
    @workflow.init
    def __init__(self, data: ClearingInput) -> None:
        self._state = ClearingState(currency=data.currency)
        self._funded: set[str] = set()

    @workflow.run
    async def run(self, data: ClearingInput) -> ClearingState:
        closed = await workflow.execute_activity_method(
            ClearingActivities.close_window,
            CloseInput(currency=data.currency, closed_by=workflow.info().workflow_id),
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=STEP_RETRY,
        )
        if closed.window_id is None:
            self._state = self._state.model_copy(update={"status": NO_WINDOW})
            return self._state
        self._state = self._state.model_copy(update={"window_id": closed.window_id})
        summary = await workflow.execute_activity_method(
            ClearingActivities.net_window,
            NetInput(window_id=closed.window_id, funding_timeout_s=data.funding_timeout_s),
            start_to_close_timeout=NETTING_TIMEOUT,
            retry_policy=STEP_RETRY,
        )
        references = {i.reference for i in summary.instructions}
        # A window whose positions all net to zero has no instruction to wait for, but
        # its obligations must still settle and their payments be told. Runs recorded
        # before this rule returned here; they replay unchanged.
        settle_zero_net = bool(summary.obligations_count) and workflow.patched("settle-zero-net-window")
        self._state = self._state.model_copy(
            update={
                "status": WindowStatus.AWAITING_FUNDING if references or settle_zero_net else WindowStatus.SETTLED,
                "instructions": summary.instructions,
            }
        )
        if not references and not settle_zero_net:
            return self._state
        try:
            await workflow.wait_condition(
                lambda: references <= self._funded,
                timeout=timedelta(seconds=data.funding_timeout_s),
                timeout_summary="funding deadline",
            )
        except TimeoutError:
            pass  # settle with what was funded: the fallback decides
        outcome = await workflow.execute_activity_method(
            ClearingActivities.settle_window,
            closed.window_id,
            start_to_close_timeout=NETTING_TIMEOUT,
            retry_policy=STEP_RETRY,
        )
        self._state = self._state.model_copy(update={"status": outcome.status})
        await workflow.execute_activity_method(
            ClearingActivities.signal_window_payments,
            WindowSettlement(window_id=closed.window_id, settlement_reference=outcome.settlement_reference),
            start_to_close_timeout=SIGNALLING_TIMEOUT,
            heartbeat_timeout=SIGNALLING_HEARTBEAT,
            retry_policy=STEP_RETRY,
        )
        return self._state

    @workflow.signal(name="funding_booked")
    def funding_booked(self, reference: str) -> None:
        """A net debtor's funding camt.054 was booked (the API checked its amount)."""
        self._funded.add(reference)
        self._state = self._state.model_copy(update={"funded_references": sorted(self._funded)})

    @workflow.query(name="state")
    def state(self) -> ClearingState:
        return self._state
