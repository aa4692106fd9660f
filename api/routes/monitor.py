"""The account monitor for ops (admin key): reconciliation runs and circuit breakers."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlalchemy import select

from api.deps import AdminDep, SessionDep
from api.problems import Problem, problem_responses
from api.strict_json import StrictJSONRoute
from deltran import audit, reconciliation
from deltran.db.tables import CircuitBreaker, ReconciliationRun
from deltran.money import MINOR_UNITS

router = APIRouter(
    tags=["account monitor"], responses=problem_responses(403, 404, 409, 422), route_class=StrictJSONRoute
)


class RunOut(BaseModel):
    id: str
    tier: str
    started_at: datetime
    finished_at: datetime | None
    ok: bool
    break_count: int
    summary: dict
    breaks: list[dict]


class BreakerOut(BaseModel):
    currency: str
    state: str
    reason: str | None
    opened_at: datetime | None
    closed_at: datetime | None
    closed_by: str | None


class BreakerList(BaseModel):
    breakers: list[BreakerOut]


def _breaker_out(b: CircuitBreaker) -> BreakerOut:
    return BreakerOut(
        currency=b.currency,
        state=b.state,
        reason=b.reason,
        opened_at=b.opened_at,
        closed_at=b.closed_at,
        closed_by=b.closed_by,
    )


@router.get("/v1/reconciliations/latest", response_model=RunOut)
async def latest_run(
    _: AdminDep, session: SessionDep, tier: str | None = Query(None, pattern="^(intraday|end_of_day)$")
) -> RunOut:
    """The latest reconciliation run (of a tier, if given): its result and its breaks."""
    query = select(ReconciliationRun).order_by(ReconciliationRun.started_at.desc()).limit(1)
    if tier is not None:
        query = query.where(ReconciliationRun.tier == tier)
    run = await session.scalar(query)
    if run is None:
        raise Problem(404, "no reconciliation has run yet", kind="no-reconciliation")
    return RunOut(
        id=str(run.id),
        tier=run.tier,
        started_at=run.started_at,
        finished_at=run.finished_at,
        ok=run.ok,
        break_count=run.break_count,
        summary=run.summary,
        breaks=run.breaks,
    )


@router.get("/v1/admin/circuit-breakers", response_model=BreakerList)
async def list_breakers(_: AdminDep, session: SessionDep) -> BreakerList:
    breakers = (await session.scalars(select(CircuitBreaker).order_by(CircuitBreaker.currency))).all()
    return BreakerList(breakers=[_breaker_out(b) for b in breakers])


@router.post("/v1/admin/circuit-breakers/{currency}/close", response_model=BreakerOut)
async def close_breaker(currency: str, caller: AdminDep, session: SessionDep) -> BreakerOut:
    """Close the currency's breaker once its break is resolved: refused (409) while its
    backing still does not reconcile. Waiting mints go on at their next retry."""
    if currency not in MINOR_UNITS:
        raise Problem(404, f"no circuit breaker for {currency}", kind="unknown-currency")
    try:
        async with session.begin():
            await reconciliation.close_breaker(session, currency, caller.identity)
            await audit.record(session, actor=caller.identity, action="breaker.close", subject=currency, result="ok")
    except reconciliation.BreakNotResolved as exc:
        raise Problem(
            409, f"the {currency} backing still does not reconcile: {exc}", kind="break-not-resolved"
        ) from None
    breaker = await session.get(CircuitBreaker, currency)
    if breaker is None:
        raise Problem(404, f"the {currency} circuit breaker has never opened", kind="unknown-breaker")
    return _breaker_out(breaker)
