"""Which step a running payment is on, as its workflow's pending activities tell it: the
attempt Temporal is on and the last failure — what the Temporal UI shows ops. A step
shows here while it runs as a regular activity: a step that failed its local attempts
(workflows/payment.py), or any step of a payment started before local steps."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from temporalio.client import Client

log = logging.getLogger(__name__)

DESCRIBE_TIMEOUT = timedelta(seconds=2)


@dataclass(frozen=True)
class PendingStep:
    step: str
    attempt: int
    last_error: str | None


async def pending_step(client: Client, workflow_id: str) -> PendingStep | None:
    """The workflow's pending step, or None (none pending, or Temporal did not answer in
    time: the caller still has the payment's recorded status)."""
    try:
        description = await client.get_workflow_handle(workflow_id).describe(rpc_timeout=DESCRIBE_TIMEOUT)
    except Exception as exc:  # Temporal down or slow: the step is unknown, not an error
        log.info("pending step of %s unknown: %s", workflow_id, exc)
        return None
    pending = description.raw_description.pending_activities
    if not pending:
        return None
    activity = max(pending, key=lambda a: a.attempt)
    message = activity.last_failure.message if activity.HasField("last_failure") else ""
    return PendingStep(step=activity.activity_type.name, attempt=activity.attempt, last_error=message or None)
