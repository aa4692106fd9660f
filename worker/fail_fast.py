"""Fail fast: an activity error that no retry can change ends the step at once.

Temporal retries every error it is not told is permanent. Three kinds never heal:
an AssertionError (one of our own invariants does not hold for this input), a posting
the ledger refuses for what it is (`LedgerRefused` with a permanent `Refusal`: an
overdraw, a reused key…), and a PostgreSQL integrity violation other than a unique one
(a CHECK, NOT NULL or foreign key the data breaks: the same rows fail the same way on
every attempt). A unique violation can be a lost race that the next attempt reads as
done, so it is retried.

Converted to a non-retryable ApplicationError (type `InvariantViolated`), such a step
fails visibly — in the workflow's history and the Temporal UI, in the worker's log and
in `deltran_activity_failed_permanently_total`, which pages (deploy/prometheus/alerts.yml)
— instead of retrying forever and holding everything behind it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy.exc import IntegrityError
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from deltran.ledger import LedgerRefused
from deltran.observability import metrics

log = logging.getLogger("deltran.worker.fail_fast")

INVARIANT_VIOLATED = "InvariantViolated"
_UNIQUE_VIOLATION = "23505"


def permanent_failure(exc: BaseException) -> str | None:
    """Why no retry can make this error go away (its kind), or None. Pure."""
    if isinstance(exc, AssertionError):
        return "assertion"
    if isinstance(exc, LedgerRefused):
        return f"ledger:{exc.refusal.value}" if exc.refusal.permanent else None
    if isinstance(exc, IntegrityError):
        sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        if sqlstate and sqlstate.startswith("23") and sqlstate != _UNIQUE_VIOLATION:
            return f"integrity:{sqlstate}"
    return None


def _retried(exc: BaseException) -> bool:
    """Whether Temporal will run this attempt again: anything but a non-retryable
    application error (a business outcome, or one converted here)."""
    return not (isinstance(exc, ApplicationError) and exc.non_retryable) and not isinstance(exc, asyncio.CancelledError)


class _FailFast(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        try:
            return await self.next.execute_activity(input)
        except BaseException as exc:
            kind = permanent_failure(exc)
            if kind is None:
                if _retried(exc):  # counted per attempt: a step that keeps failing alerts
                    metrics.step_attempts_failed.labels(activity.info().activity_type).inc()
                raise
            info = activity.info()
            metrics.activity_failed_permanently.labels(info.activity_type, kind.split(":")[0]).inc()
            log.error(
                "activity can never succeed: failing it without retry",
                extra={"error_kind": kind, "error": str(exc).splitlines()[0][:500]},
            )
            raise ApplicationError(
                f"{info.activity_type} can never succeed ({kind}): {str(exc).splitlines()[0][:500]}",
                type=INVARIANT_VIOLATED,
                non_retryable=True,
            ) from exc


class FailFastInterceptor(Interceptor):
    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _FailFast(next)
