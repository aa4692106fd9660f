"""An intraday account-monitor run on the suite's stack, as its schedule starts it."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select, update

from deltran.db.tables import CircuitBreaker
from deltran.vocabulary import BreakerState
from workflows.reconciliation import ReconciliationWorkflow


async def reconcile_intraday(sessions, client, settings, *, by: str):
    """Run the intraday tier and return its result. The test database must reconcile; if it
    does not, the breakers this run opened are put back, so later tests can still mint."""
    async with sessions() as session:
        open_before = set(
            (
                await session.scalars(select(CircuitBreaker.currency).where(CircuitBreaker.state == BreakerState.OPEN))
            ).all()
        )
    result = await client.execute_workflow(
        ReconciliationWorkflow.run,
        "intraday",
        id=f"reconciliation-intraday-{by}-{uuid.uuid4().hex[:8]}",
        task_queue=settings.task_queue,
        execution_timeout=timedelta(seconds=60),
    )
    if not result.ok:
        async with sessions() as session, session.begin():
            await session.execute(
                update(CircuitBreaker)
                .where(CircuitBreaker.state == BreakerState.OPEN, CircuitBreaker.currency.not_in(open_before))
                .values(state=BreakerState.CLOSED, closed_by=by)
            )
    return result
