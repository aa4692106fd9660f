"""The Temporal contract: each workflow's name, input, result, signals and queries.

The workflows (workflows/) implement these interfaces; everyone else — the API, the
intake services, the activities, the worker's schedules — starts, signals and queries a
workflow by method reference on its interface here, without importing the workflow
module (which imports every activity implementation). Temporal checks that a workflow
overrides each signal and query its interface declares; the names are the recorded
histories' names and never change. Safe inside the workflow sandbox: no I/O.
"""

from __future__ import annotations

from temporalio import workflow

from deltran.shared import (
    CancelOutcome,
    CancelRequest,
    ClearingInput,
    ClearingState,
    DeliveryInput,
    FiatBooking,
    PaymentInput,
    PaymentState,
    ReconciliationResult,
    RedemptionInput,
    WindowSettlement,
)


@workflow.defn(name="PaymentWorkflow")
class PaymentWorkflowContract:
    """One payment: compliance → obligation → its booking or its window → settle → mint."""

    @workflow.run
    async def run(self, data: PaymentInput) -> PaymentState:
        raise NotImplementedError  # workflows/payment.py

    @workflow.signal(name="fiat_booked")
    def fiat_booked(self, booking: FiatBooking) -> None:
        """The payment's own camt.054 credit is booked (gross)."""

    @workflow.signal(name="window_settled")
    def window_settled(self, settlement: WindowSettlement) -> None:
        """The payment's clearing window settled (net)."""

    @workflow.update(name="cancel")
    async def cancel(self, request: CancelRequest) -> CancelOutcome:
        """The debtor agent's recall (deltran/cancellations.py), decided between steps."""
        raise NotImplementedError  # workflows/payment.py

    @workflow.query(name="state")
    def state(self) -> PaymentState:
        raise NotImplementedError  # workflows/payment.py


@workflow.defn(name="ClearingWindowWorkflow")
class ClearingWindowContract:
    """One clearing window of a currency: close → net → await fundings → settle."""

    @workflow.run
    async def run(self, data: ClearingInput) -> ClearingState:
        raise NotImplementedError  # workflows/clearing.py

    @workflow.signal(name="funding_booked")
    def funding_booked(self, reference: str) -> None:
        """A net debtor's funding instruction (by reference) is booked."""

    @workflow.query(name="state")
    def state(self) -> ClearingState:
        raise NotImplementedError  # workflows/clearing.py


@workflow.defn(name="ReconciliationWorkflow")
class ReconciliationContract:
    """One account-monitor run of a tier ("intraday" or "end_of_day")."""

    @workflow.run
    async def run(self, tier: str) -> ReconciliationResult:
        raise NotImplementedError  # workflows/reconciliation.py


@workflow.defn(name="WebhookDeliveryWorkflow")
class WebhookDeliveryContract:
    """One bank's webhook: its events delivered one at a time, in order, each retried with
    backoff for the delivery period. Runs while the bank has a webhook (continuing as new
    as its history grows); workflow id `webhooks-<BIC>`."""

    @workflow.run
    async def run(self, data: DeliveryInput) -> None:
        raise NotImplementedError  # workflows/webhooks.py

    @workflow.signal(name="events_numbered")
    def events_numbered(self, last_seq: int) -> None:
        """Events up to `last_seq` are numbered: some may be this bank's."""


def delivery_workflow_id(bic: str) -> str:
    return f"webhooks-{bic}"


@workflow.defn(name="RedemptionWorkflow")
class RedemptionContract:
    """One redemption: payout instructed → its DBIT camt.054 booked → tokens burned; or
    refused / past its deadline → tokens released. Workflow id `redemption-<id>`; returns
    the final status."""

    @workflow.run
    async def run(self, data: RedemptionInput) -> str:
        raise NotImplementedError  # workflows/redemption.py

    @workflow.signal(name="payout_changed")
    def payout_changed(self) -> None:
        """The payout was booked or refused: look now rather than at the next check."""
