"""The account monitor's activity: one reconciliation run of a tier, recorded (the
checks themselves: deltran/reconciliation.py)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import async_sessionmaker
from temporalio import activity

from deltran.config import Settings
from deltran.reconciliation import run_reconciliation
from deltran.shared import ReconciliationResult


class ReconciliationActivities:
    def __init__(self, session_factory: async_sessionmaker, settings: Settings) -> None:
        self._sessions = session_factory
        self._settings = settings

    @activity.defn(name="reconcile")
    async def reconcile(self, tier: str) -> ReconciliationResult:
        """Runs are records of a moment: a retry is simply another run."""
        async with self._sessions() as session, session.begin():
            run = await run_reconciliation(session, tier, self._settings)
            return ReconciliationResult(run_id=str(run.id), ok=run.ok, breaks=run.break_count)
