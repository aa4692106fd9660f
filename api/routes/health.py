"""`/healthz`: is the API able to do its work (database and Temporal reachable)?"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.strict_json import StrictJSONRoute

router = APIRouter(route_class=StrictJSONRoute, tags=["health"])

CHECK_TIMEOUT_S = 2.0


async def _database(request: Request) -> str:
    async with request.app.state.sessions() as session:
        await session.execute(text("SELECT 1"))
    return "ok"


async def _temporal(request: Request) -> str:
    client = await request.app.state.temporal.get()
    await client.service_client.check_health()
    return "ok"


async def _probe(check, request: Request) -> str:
    try:
        return await asyncio.wait_for(check(request), CHECK_TIMEOUT_S)
    except Exception as exc:  # any failure means "down", and says why
        return f"down: {type(exc).__name__}"


@router.get("/healthz")
async def healthz(request: Request) -> JSONResponse:
    database, temporal = await asyncio.gather(_probe(_database, request), _probe(_temporal, request))
    healthy = database == "ok" and temporal == "ok"
    return JSONResponse(
        status_code=200 if healthy else 503,
        content={"status": "ok" if healthy else "degraded", "database": database, "temporal": temporal},
        headers={} if healthy else {"Retry-After": "5"},
    )
