"""WebhookDeliveryWorkflow, branch by branch: events delivered in order; an event whose
delivery fails for the whole period given up, and the next one delivered; a workflow with
nothing to deliver waiting for the numberer's signal; the end when the bank removes its
webhook."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from temporalio import activity
from temporalio.exceptions import ApplicationError

from deltran.shared import DeliveryInput, DeliveryOutcome, PendingDeliveries
from workflows.webhooks import WebhookDeliveryWorkflow

EVENTS = [uuid.uuid4() for _ in range(4)]


@dataclass
class Stubs:
    """The bank's events by seq (1-based), those that always fail, when the webhook goes."""

    numbered: int = 3
    failing: set[uuid.UUID] = field(default_factory=set)
    webhook_until: int = 3  # pending_deliveries reports no webhook once everything up to this was offered
    delivered: list[uuid.UUID] = field(default_factory=list)
    given_up: list[uuid.UUID] = field(default_factory=list)
    attempts: dict[uuid.UUID, int] = field(default_factory=dict)

    def activities(self) -> list:
        stubs = self

        @activity.defn(name="pending_deliveries")
        async def pending_deliveries(bic: str, after_seq: int, limit: int) -> PendingDeliveries:
            if after_seq >= stubs.webhook_until:
                return PendingDeliveries(webhook=False, events=[])
            seqs = range(after_seq + 1, min(stubs.numbered, after_seq + limit) + 1)
            return PendingDeliveries(webhook=True, events=[(EVENTS[s - 1], s) for s in seqs])

        @activity.defn(name="deliver_event")
        async def deliver_event(bic: str, event_id: uuid.UUID, timeout_s: float) -> DeliveryOutcome:
            stubs.attempts[event_id] = stubs.attempts.get(event_id, 0) + 1
            if event_id in stubs.failing:
                raise ApplicationError("HTTP 503", type="WebhookDeliveryFailed")
            stubs.delivered.append(event_id)
            return DeliveryOutcome(delivered=True)

        @activity.defn(name="give_up_event")
        async def give_up(event_id: uuid.UUID) -> None:
            stubs.given_up.append(event_id)

        return [pending_deliveries, deliver_event, give_up]


def _input(**policy) -> DeliveryInput:
    return DeliveryInput(bic="SBININBB", retry_first_s=1, retry_longest_s=60, period_s=3600, timeout_s=5, **policy)


async def test_events_are_delivered_in_order_until_the_webhook_is_removed(skipping_env, run_worker):
    stubs = Stubs()
    async with run_worker([WebhookDeliveryWorkflow], stubs.activities()) as queue:
        handle = await skipping_env.client.start_workflow(
            WebhookDeliveryWorkflow.run, _input(), id=f"webhooks-test-{uuid.uuid4()}", task_queue=queue
        )
        await handle.result()
    assert stubs.delivered == EVENTS[:3] and stubs.given_up == []


async def test_an_event_that_never_gets_through_is_given_up_and_the_next_goes(skipping_env, run_worker):
    stubs = Stubs(failing={EVENTS[0]})
    async with run_worker([WebhookDeliveryWorkflow], stubs.activities()) as queue:
        handle = await skipping_env.client.start_workflow(
            WebhookDeliveryWorkflow.run, _input(), id=f"webhooks-test-{uuid.uuid4()}", task_queue=queue
        )
        await handle.result()
    assert stubs.given_up == [EVENTS[0]] and stubs.delivered == EVENTS[1:3]
    # Retried with backoff (1 s doubling to 60 s) for the hour: many attempts, not forever.
    assert 50 < stubs.attempts[EVENTS[0]] < 100


async def test_with_nothing_to_deliver_it_waits_for_the_numberer(skipping_env, run_worker):
    stubs = Stubs(numbered=0, webhook_until=4)
    async with run_worker([WebhookDeliveryWorkflow], stubs.activities()) as queue:
        handle = await skipping_env.client.start_workflow(
            WebhookDeliveryWorkflow.run, _input(), id=f"webhooks-test-{uuid.uuid4()}", task_queue=queue
        )
        stubs.numbered = 4  # events 1-4 numbered meanwhile; the signal says so
        await handle.signal(WebhookDeliveryWorkflow.events_numbered, 4)
        await handle.result()
        history = await handle.fetch_history()
    assert stubs.delivered == EVENTS
    # Woken by the signal, not by its idle check's timer.
    assert not any(e.HasField("timer_fired_event_attributes") for e in history.events)
