"""Replay tests: recorded payment histories must replay against today's workflow code.

A change that would break payments and windows already in flight (a reordered step,
an extra activity without `workflow.patched`, a result type that no longer reads what
was recorded) fails here. Record a new history from the dev server as the README shows
(or from the time-skipping server, as tests/workflows/ runs each branch), and drop the
JSON file into `histories/`. Each history replays against the workflow its type names.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from deltran.shared import PaymentInput, PaymentState
from workflows.clearing import ClearingWindowWorkflow
from workflows.payment import PaymentWorkflow
from workflows.reconciliation import ReconciliationWorkflow
from workflows.redemption import RedemptionWorkflow
from workflows.webhooks import WebhookDeliveryWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def load(path: Path) -> WorkflowHistory:
    text = path.read_text()
    workflow_id = path.stem
    assert json.loads(text)["events"], f"{path} holds no events"
    return WorkflowHistory.from_json(workflow_id, text)


def replayer(*workflows) -> Replayer:
    return Replayer(workflows=list(workflows), data_converter=pydantic_data_converter)


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_recorded_history_replays(path: Path):
    replay = replayer(
        PaymentWorkflow, ClearingWindowWorkflow, ReconciliationWorkflow, WebhookDeliveryWorkflow, RedemptionWorkflow
    )
    await replay.replay_workflow(load(path), raise_on_replay_failure=True)  # raises on any divergence


def test_histories_cover_every_way_a_payment_a_window_a_delivery_and_a_redemption_end():
    names = {p.stem for p in HISTORIES}
    assert {
        "payment_completed_gross",
        "payment_completed_net",
        "payment_rejected_sanctions",
        "payment_refused_by_risk",
        "payment_expired_gross",
        "payment_rolled_then_completed_net",
        "clearing_settled",
        "clearing_partially_settled",
        "clearing_zero_net",
        # recorded on the dev server of `make up`, with the real activities
        "dev_payment_completed_net",
        "dev_clearing_window_settled",
        "dev_reconciliation_intraday",
        # local steps (the `local-steps` patch): recorded on the dev server of `make up`,
        # and a step that outlasted its local attempts, run on as a regular activity
        "dev_payment_completed_gross_local_steps",
        "dev_payment_completed_net_local_steps",
        "payment_step_retried_as_regular_activity_gross",
        # a bank's webhook: idle until signalled, an event given up, the next delivered
        "webhook_delivery_gave_up_then_delivered",
        # a redemption: its payout booked after a few looks (burned); none by its deadline (released)
        "redemption_completed",
        "redemption_released_at_deadline",
        # a recall (the `cancel` update): cancelled while awaiting; refused (netted), then settled
        "payment_cancelled_awaiting_gross",
        "payment_recall_refused_then_completed_net",
        # a cross-currency payment (tests/workflows/test_fx_payment_workflow.py): both legs
        # settled in their windows; one leg in escrow when the deadline expired it
        "payment_fx_completed_net",
        "payment_fx_expired_one_leg_unwound_net",
        # an expiry declined, then completed: recorded before the 5-minute recheck (its patch)
        "payment_fx_expiry_declined_then_completed_net",
        "payment_fx_expiry_declined_rechecked_then_completed_net",
    } <= names


@workflow.defn(name="PaymentWorkflow")
class ReorderedPaymentWorkflow(PaymentWorkflow):
    """The same workflow with its steps changed, as a careless edit would do."""

    @workflow.run
    async def run(self, data: PaymentInput) -> PaymentState:
        await workflow.sleep(1)  # a timer where history has an activity
        return await super().run(data)


async def test_a_nondeterministic_change_is_caught():
    completed = next(p for p in HISTORIES if p.stem == "payment_completed_gross")
    result = await replayer(ReorderedPaymentWorkflow).replay_workflow(load(completed), raise_on_replay_failure=False)
    assert result.replay_failure is not None


def test_payments_recorded_before_local_steps_replay_with_regular_activities():
    """The histories recorded before the patch have no `local-steps` marker and schedule
    every step as an activity task: their replay above runs the regular path to the end."""
    before = load(next(p for p in HISTORIES if p.stem == "payment_completed_gross"))
    after = load(next(p for p in HISTORIES if p.stem == "dev_payment_completed_gross_local_steps"))

    def scheduled(history: WorkflowHistory) -> int:
        return sum(e.HasField("activity_task_scheduled_event_attributes") for e in history.events)

    assert scheduled(before) == 4 and scheduled(after) == 0
