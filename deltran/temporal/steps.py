"""Which step a running payment is retrying, as its workflow's pending activities tell
it: the attempt Temporal is on and why the last one failed — what the Temporal UI shows
ops. A step shows here once it has failed and runs on as a regular activity (a step
that failed its local attempts, workflows/payment.py, or any step of a payment started
before local steps)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import Client

log = logging.getLogger(__name__)

# One try, briefly: the payment's status comes from PostgreSQL; the step is a detail
# that must never hold up the answer (Temporal down or slow: no step shown).
DESCRIBE_TIMEOUT = timedelta(milliseconds=500)


@dataclass(frozen=True)
class RetryingStep:
    step: str
    attempt: int
    error_type: str | None  # e.g. CircuitBreakerOpen, ConnectionRefusedError
    error_message: str | None  # the failure's text: internal detail, for operators


async def retrying_step(client: Client, workflow_id: str) -> RetryingStep | None:
    """The workflow's pending activity that has failed at least once, or None."""
    request = DescribeWorkflowExecutionRequest(
        namespace=client.namespace, execution=WorkflowExecution(workflow_id=workflow_id)
    )
    try:
        description = await asyncio.wait_for(
            client.workflow_service.describe_workflow_execution(request, retry=False, timeout=DESCRIBE_TIMEOUT),
            DESCRIBE_TIMEOUT.total_seconds(),
        )
    except Exception as exc:  # Temporal down, slow, or the workflow unknown: no step shown
        log.debug("retrying step of %s unknown: %s", workflow_id, exc)
        return None
    failing = [a for a in description.pending_activities if a.attempt >= 2 or a.HasField("last_failure")]
    if not failing:
        return None
    activity = max(failing, key=lambda a: a.attempt)
    failure = activity.last_failure if activity.HasField("last_failure") else None
    # A failure too large for the server (a long stack trace) is replaced by one saying
    # so, with the original as its cause.
    while failure is not None and failure.HasField("server_failure_info") and failure.HasField("cause"):
        failure = failure.cause
    error_type = None
    if failure is not None and failure.HasField("application_failure_info"):
        error_type = failure.application_failure_info.type or None
    return RetryingStep(
        step=activity.activity_type.name,
        attempt=activity.attempt,
        error_type=error_type,
        error_message=(failure.message or None) if failure is not None else None,
    )
