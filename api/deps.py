"""FastAPI dependencies: the database session, the Temporal client and the caller."""

from __future__ import annotations

import hmac
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import CompoundSelect, bindparam, literal, null, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from api.problems import Problem
from api.rate_limit import retry_after_header
from deltran.api_keys import hash_key
from deltran.config import Settings
from deltran.db.tables import OperatorKey, Participant

Role = Literal["bank", "settlement_agent", "admin"]


@dataclass(frozen=True)
class Caller:
    role: Role
    bic: str | None = None
    participant_id: uuid.UUID | None = None

    @property
    def identity(self) -> str:
        """Who did it, as the audit log and the rate limiter name callers."""
        return f"bank:{self.bic}" if self.role == "bank" else self.role


async def get_settings(request: Request) -> Settings:
    # async: FastAPI runs a plain `def` dependency in its thread pool, a thread hand-off
    # on every request for an attribute read.
    return request.app.state.settings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessions() as session:
        yield session


async def get_temporal(request: Request) -> Client:
    return await request.app.state.temporal.get()


_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")


async def get_caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    unauthorized = HTTPException(
        status_code=401,
        detail="a valid API key is required: Authorization: Bearer <key>",
        headers={"WWW-Authenticate": "Bearer"},
    )
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise unauthorized
    digest = hash_key(credentials.credentials)
    # Its own short read, outside any transaction: the route's session stays free for
    # the route's transaction, and a rotated or revoked key counts from the next request.
    async with request.app.state.reads() as session:
        caller = await _caller_for(session, digest, unauthorized)
    wait_s = request.app.state.rate_limiter.acquire(caller.identity)
    if wait_s > 0:
        raise Problem(
            429,
            f"rate limit of {request.app.state.rate_limiter.rate_per_s:g} requests/s exceeded for {caller.identity}",
            kind="rate-limited",
            headers={"Retry-After": retry_after_header(wait_s)},
        )
    return caller


# One statement: the lookup is by digest in both tables (index probes). Built once, the
# digest bound at execution, so it is compiled once too.
_CALLER_BY_DIGEST: CompoundSelect = union_all(
    select(
        literal("bank").label("role"), Participant.id, Participant.bic, Participant.api_key_hash.label("key_hash")
    ).where(Participant.api_key_hash == bindparam("digest")),
    select(OperatorKey.role, null().label("id"), null().label("bic"), OperatorKey.key_hash).where(
        OperatorKey.key_hash == bindparam("digest"), OperatorKey.revoked_at.is_(None)
    ),
)


async def _caller_for(session: AsyncSession, digest: str, unauthorized: HTTPException) -> Caller:
    found: Any = (await session.execute(_CALLER_BY_DIGEST, {"digest": digest})).first()  # a Row, or None
    # The constant-time compare keeps the final equality check free of timing differences.
    if found is None or not hmac.compare_digest(found.key_hash, digest):
        raise unauthorized
    if found.role == "bank":
        return Caller(role="bank", bic=found.bic, participant_id=found.id)
    return Caller(role=found.role)


def require(*roles: Role):
    async def check(caller: Annotated[Caller, Depends(get_caller)]) -> Caller:
        if caller.role not in roles:
            raise HTTPException(status_code=403, detail=f"this operation needs the {' or '.join(roles)} role")
        return caller

    return check


SessionDep = Annotated[AsyncSession, Depends(get_session)]
TemporalDep = Annotated[Client, Depends(get_temporal)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
CallerDep = Annotated[Caller, Depends(get_caller)]
BankDep = Annotated[Caller, Depends(require("bank"))]
AdminDep = Annotated[Caller, Depends(require("admin"))]
SettlementAgentDep = Annotated[Caller, Depends(require("settlement_agent"))]
