"""Log context for activities: every record an activity logs carries its workflow id,
its activity type and, when its argument names them, the payment and the clearing
window; and each execution ends with one `activity completed` (INFO) or
`activity failed` (WARNING, with the error type) line with its duration.

Registered in `worker.main.build_worker`. Put it after the OpenTelemetry tracing
interceptor in the worker's list (the first is the outermost), so the activity's span
is current while it runs and its trace id is on these lines too.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from deltran.observability.logs import bind

log = logging.getLogger("deltran.worker.activity")

# Activities whose single argument is a bare UUID, and what that UUID is. The others
# take models whose fields say it (deltran/shared.py).
_UUID_ARGUMENT = {
    "screen_payment": "payment_id",
    "create_obligation": "payment_id",
    "settle_window": "window_id",
}
_CONTEXT_FIELDS = ("payment_id", "window_id", "end_to_end_id", "currency")


def context_of(activity_type: str, args: Any) -> dict[str, Any]:
    """The log fields an activity's arguments carry: payment_id, window_id (also of a
    nested model such as SettleInput.window), end_to_end_id, currency."""
    fields: dict[str, Any] = {}
    for arg in args:
        if isinstance(arg, uuid.UUID):
            name = _UUID_ARGUMENT.get(activity_type)
            if name is not None:
                fields.setdefault(name, arg)
        elif isinstance(arg, BaseModel):
            _model_fields(arg, fields, depth=1)
    return fields


def _model_fields(model: BaseModel, fields: dict[str, Any], depth: int) -> None:
    for name in _CONTEXT_FIELDS:
        value = getattr(model, name, None)
        if value is not None:
            fields.setdefault(name, value)
    if depth > 0:
        for name in type(model).model_fields:
            value = getattr(model, name, None)
            if isinstance(value, BaseModel):
                _model_fields(value, fields, depth - 1)


class _ActivityLogging(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        context = context_of(info.activity_type, input.args)
        with bind(workflow_id=info.workflow_id, activity=info.activity_type, **context):
            started = time.perf_counter()
            try:
                result = await self.next.execute_activity(input)
            except BaseException as exc:
                log.warning(
                    "activity failed",
                    extra={
                        "duration_ms": _elapsed_ms(started),
                        "attempt": info.attempt,
                        "error_type": _error_type(exc),
                        "error": str(exc)[:500],
                    },
                )
                raise
            log.info(
                "activity completed",
                extra={"duration_ms": _elapsed_ms(started), "attempt": info.attempt},
            )
            return result


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def _error_type(exc: BaseException) -> str:
    # An ApplicationError's type is the business outcome (MintRefused, …).
    if isinstance(exc, ApplicationError) and exc.type:
        return exc.type
    return type(exc).__name__


class LoggingInterceptor(Interceptor):
    """The worker interceptor that adds `_ActivityLogging` to every activity."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityLogging(next)
