"""WebhookDeliveryWorkflow: one bank's events POSTed to its webhook, one at a time and in
order (so in order per payment), each retried with backoff for the delivery period; an
event that never gets through is marked FAILED and the next one goes. The workflow waits
for the numberer's signal when it has delivered everything, ends when the bank removes
its webhook, and continues as new before its history grows long."""

from __future__ import annotations

import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.webhooks import WebhookActivities
    from deltran.shared import DeliveryInput
    from deltran.temporal.contract import WebhookDeliveryContract
    from workflows.payment import STEP_RETRY

BATCH = 100
# Deliveries and idle checks per run before continuing as new: ~4 history events each.
RUN_LENGTH = 500
IDLE_CHECK = timedelta(minutes=10)  # a missed signal (Temporal was down) costs at most this long


@workflow.defn(name="WebhookDeliveryWorkflow")
class WebhookDeliveryWorkflow(WebhookDeliveryContract):
    def __init__(self) -> None:
        self._numbered = 0  # the last seq the numberer said it numbered
        self._seen = 0  # the last seq this run knows has nothing more for it

    @workflow.signal(name="events_numbered")
    def events_numbered(self, last_seq: int) -> None:
        self._numbered = max(self._numbered, last_seq)

    @workflow.run
    async def run(self, data: DeliveryInput) -> None:
        after, steps = data.after_seq, 0
        attempt = RetryPolicy(
            initial_interval=timedelta(seconds=data.retry_first_s),
            backoff_coefficient=2.0,
            maximum_interval=timedelta(seconds=data.retry_longest_s),
        )
        while steps < RUN_LENGTH and not workflow.info().is_continue_as_new_suggested():
            steps += 1
            pending = await workflow.execute_activity_method(
                WebhookActivities.pending_deliveries,
                args=[data.bic, after, BATCH],
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=STEP_RETRY,
            )
            if not pending.webhook:
                return
            if not pending.events:
                # Everything numbered so far is delivered: wait for more to be numbered.
                after = self._seen = max(after, pending.through)
                with contextlib.suppress(TimeoutError):  # looks again anyway
                    await workflow.wait_condition(lambda: self._numbered > self._seen, timeout=IDLE_CHECK)
                continue
            for event_id, seq in pending.events:
                try:
                    await workflow.execute_activity_method(
                        WebhookActivities.deliver_event,
                        args=[data.bic, event_id, data.timeout_s],
                        start_to_close_timeout=timedelta(seconds=data.timeout_s + 20),
                        schedule_to_close_timeout=timedelta(seconds=data.period_s),
                        retry_policy=attempt,
                    )
                except ActivityError:
                    # Retried for the whole period: the event is marked FAILED (it stays at
                    # GET /v1/events) and the next one goes.
                    await workflow.execute_activity_method(
                        WebhookActivities.give_up,
                        args=[event_id],
                        start_to_close_timeout=timedelta(seconds=30),
                        retry_policy=STEP_RETRY,
                    )
                after, steps = seq, steps + 1
        workflow.continue_as_new(data.model_copy(update={"after_seq": after}))
