"""RedemptionWorkflow: a bank's tokens turned back into fiat. The tokens were reserved
when the redemption was accepted (deltran/redemptions.py); here the payout is
instructed, then the workflow waits — durably, up to its deadline — for the settlement
agent's DBIT camt.054 that books it (the intake matches it and signals; the workflow also
looks on its own every few minutes), and burns the tokens; a payout refused by the agent
or still unbooked at the deadline releases them instead."""

from __future__ import annotations

import contextlib
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.redemptions import RedemptionActivities
    from deltran.shared import RedemptionInput
    from deltran.temporal.contract import RedemptionContract
    from deltran.vocabulary import RedemptionStatus
    from workflows.payment import STEP_RETRY, STEP_TIMEOUT

LOOK_EVERY = timedelta(minutes=5)  # a missed signal costs at most this long


@workflow.defn(name="RedemptionWorkflow")
class RedemptionWorkflow(RedemptionContract):
    def __init__(self) -> None:
        self._told = 0  # payout_changed signals so far
        self._looked = 0  # how many there were before the last look

    @workflow.signal(name="payout_changed")
    def payout_changed(self) -> None:
        self._told += 1

    async def _step(self, step, *args):
        return await workflow.execute_activity_method(
            step, args=list(args), start_to_close_timeout=STEP_TIMEOUT, retry_policy=STEP_RETRY
        )

    @workflow.run
    async def run(self, data: RedemptionInput) -> str:
        await self._step(RedemptionActivities.instruct_payout, data.redemption_id)
        # The deadline the bank and the agent were shown (older runs: from their start).
        deadline = data.deadline or workflow.now() + timedelta(seconds=data.deadline_s)
        while True:
            # Counted before the look: a signal that lands while it runs is not lost.
            self._looked = self._told
            state = await self._step(RedemptionActivities.payout_state, data.redemption_id)
            if state.booked:
                return await self._step(RedemptionActivities.burn_tokens, data.redemption_id)
            if state.status in (RedemptionStatus.RELEASED, RedemptionStatus.COMPLETED):
                return state.status  # refused by the agent (released there), or burned
            left = deadline - workflow.now()
            if left <= timedelta(0):
                status = await self._step(
                    RedemptionActivities.release_tokens, data.redemption_id, "no payout booked by its deadline"
                )
                if status == RedemptionStatus.RELEASED:
                    return status
                # Booked just before (it burns at the next look), or booked with another
                # amount (an exception ops settle): not released; look again in a while.
                left = LOOK_EVERY
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(lambda: self._told > self._looked, timeout=min(left, LOOK_EVERY))
