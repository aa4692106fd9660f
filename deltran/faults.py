"""Fault injection for the crash tests: off unless DELTRAN_FAULT_CRASH is set.

`DELTRAN_FAULT_CRASH=mint_token:after_commit,settle_obligation:before_commit` makes the
worker process die (os._exit, like a SIGKILL: no cleanup, no completion reported) when
the named activity reaches that point — `before_commit`: its transaction is about to
commit; `after_commit`: its work is committed but Temporal has not heard back. Each
crash point fires once per marker directory (DELTRAN_FAULT_DIR, default
$DELTRAN_HOME/faults), so the retry that follows runs normally and proves the activity
idempotent.
"""

from __future__ import annotations

import contextvars
import os
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.orm import Session
from temporalio import activity
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

CRASH_EXIT_CODE = 137  # what a SIGKILL looks like to a supervisor
_current_activity: contextvars.ContextVar[str | None] = contextvars.ContextVar("fault_activity", default=None)


def _configured() -> set[tuple[str, str]]:
    spec = os.environ.get("DELTRAN_FAULT_CRASH", "")
    points = set()
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, phase = item.partition(":")
        if phase not in ("before_commit", "after_commit"):
            raise ValueError(f"DELTRAN_FAULT_CRASH: {item!r} is not <activity>:before_commit|after_commit")
        points.add((name, phase))
    return points


def _marker_dir() -> Path:
    default = Path(os.environ.get("DELTRAN_HOME", ".deltran")) / "faults"
    return Path(os.environ.get("DELTRAN_FAULT_DIR", default))


def crash_point(activity_name: str | None, phase: str) -> None:
    if activity_name is None or (activity_name, phase) not in _POINTS:
        return
    marker = _marker_dir() / f"{activity_name}.{phase}"
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # fires once, atomically
    except FileExistsError:
        return
    os.close(fd)
    os._exit(CRASH_EXIT_CODE)


class _Inbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput):
        token = _current_activity.set(activity.info().activity_type)
        try:
            result = await super().execute_activity(input)
        finally:
            _current_activity.reset(token)
        crash_point(activity.info().activity_type, "after_commit")
        return result


class FaultInjectionInterceptor(Interceptor):
    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Inbound(super().intercept_activity(next))


def _before_commit(_session) -> None:
    crash_point(_current_activity.get(), "before_commit")


_POINTS: set[tuple[str, str]] = set()


def install() -> bool:
    """Read DELTRAN_FAULT_CRASH when the worker is built (not when this module is
    imported: a worker forked from a process that imported it reads its own
    environment); with crash points set, hook every commit. True when set."""
    global _POINTS
    if not _POINTS and (points := _configured()):
        _POINTS = points
        event.listen(Session, "before_commit", _before_commit)
    return bool(_POINTS)
