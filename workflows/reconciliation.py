"""ReconciliationWorkflow: one account-monitor run of a tier (intraday or end of day),
started by its Temporal Schedule."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.reconciliation import ReconciliationActivities
    from deltran.shared import ReconciliationResult
    from deltran.temporal.contract import ReconciliationContract
    from workflows.payment import STEP_RETRY


@workflow.defn(name="ReconciliationWorkflow")
class ReconciliationWorkflow(ReconciliationContract):
    @workflow.run
    async def run(self, tier: str) -> ReconciliationResult:
        return await workflow.execute_activity_method(
            ReconciliationActivities.reconcile,
            tier,
            # End of day reads every entry, obligation and token of the day.
            start_to_close_timeout=timedelta(minutes=30),
            retry_policy=STEP_RETRY,
        )
