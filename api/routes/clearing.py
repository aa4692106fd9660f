"""`/v1/clearing/windows`: clearing windows, their net positions and funding
instructions. A bank sees the positions and instructions of its own only; admin (and
the settlement agent) see all."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from decimal import Decimal

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, Field
from sqlalchemy import select, true

from api.deps import AdminDep, Caller, CallerDep, SessionDep, SettingsDep, TemporalDep
from api.problems import Problem, problem_responses
from api.strict_json import StrictJSONRoute
from deltran.db.tables import ClearingWindow, FundingInstruction, NetPosition, Participant
from deltran.money import MINOR_UNITS, format_amount
from deltran.shared import ClearingInput
from deltran.temporal.contract import ClearingWindowContract
from deltran.vocabulary import WindowStatus

router = APIRouter(
    prefix="/v1/clearing", tags=["clearing"], responses=problem_responses(403, 404, 422), route_class=StrictJSONRoute
)

Currency = Query(pattern=r"^[A-Z]{3}$", examples=["AED"])
CLOSE_WAIT_S = 10.0


class Position(BaseModel):
    bic: str
    net: str


class Instruction(BaseModel):
    bic: str
    amount: str
    reference: str
    status: str


class WindowOut(BaseModel):
    id: uuid.UUID
    currency: str
    status: str
    opened_at: datetime
    closed_at: datetime | None
    obligations_count: int | None
    gross_amount: str | None
    net_amount: str | None
    netting_efficiency: str | None
    liquidity_saved: str | None
    escrowed_amount: str = Field(
        description="what netting credited to escrow rather than to a bank: its cross-currency legs, each paid to"
        " its payee once the payment's other leg settles (a leg its fallback rolls settles in a later window);"
        " the positions sum to minus it"
    )
    netting_ms: int | None
    funding_deadline: datetime | None
    settled_at: datetime | None
    settlement_reference: str | None
    fallback_method: str | None
    positions: list[Position]
    instructions: list[Instruction]


class WindowList(BaseModel):
    windows: list[WindowOut]


def _money(amount: Decimal | None, currency: str) -> str | None:
    return None if amount is None else format_amount(amount, currency)


async def _window_out(session, window: ClearingWindow, caller: Caller) -> WindowOut:
    own = Participant.bic == caller.bic if caller.role == "bank" else true()
    positions = (
        await session.execute(
            select(Participant.bic, NetPosition.net_amount)
            .join(Participant, Participant.id == NetPosition.participant_id)
            .where(NetPosition.window_id == window.id, own)
            .order_by(Participant.bic)
        )
    ).all()
    instructions = (
        await session.execute(
            select(Participant.bic, FundingInstruction.amount, FundingInstruction.reference, FundingInstruction.status)
            .join(Participant, Participant.id == FundingInstruction.participant_id)
            .where(FundingInstruction.window_id == window.id, own)
            .order_by(Participant.bic)
        )
    ).all()
    c = window.currency
    return WindowOut(
        id=window.id,
        currency=c,
        status=window.status,
        opened_at=window.opened_at,
        closed_at=window.closed_at,
        obligations_count=window.obligations_count,
        gross_amount=_money(window.gross_amount, c),
        net_amount=_money(window.net_amount, c),
        netting_efficiency=None if window.netting_efficiency is None else str(window.netting_efficiency),
        liquidity_saved=_money(window.liquidity_saved, c),
        escrowed_amount=format_amount(window.escrowed_amount, c),
        netting_ms=window.netting_ms,
        funding_deadline=window.funding_deadline,
        settled_at=window.settled_at,
        settlement_reference=window.settlement_reference,
        fallback_method=window.fallback_method,
        positions=[Position(bic=b, net=format_amount(n, c)) for b, n in positions],
        instructions=[
            Instruction(bic=b, amount=format_amount(a, c), reference=r, status=s) for b, a, r, s in instructions
        ],
    )


def _known(currency: str) -> str:
    if currency not in MINOR_UNITS:
        raise Problem(404, f"no clearing for currency {currency}", kind="unknown-currency")
    return currency


@router.get("/windows", response_model=WindowList)
async def list_windows(
    caller: CallerDep, session: SessionDep, currency: str = Currency, limit: int = Query(20, ge=1, le=200)
) -> WindowList:
    """The currency's windows, newest first."""
    windows = (
        await session.scalars(
            select(ClearingWindow)
            .where(ClearingWindow.currency == _known(currency))
            .order_by(ClearingWindow.opened_at.desc())
            .limit(limit)
        )
    ).all()
    return WindowList(windows=[await _window_out(session, w, caller) for w in windows])


@router.get("/windows/latest", response_model=WindowOut)
async def latest_window(caller: CallerDep, session: SessionDep, currency: str = Currency) -> WindowOut:
    """The most recently closed window of the currency (the open one if none has closed)."""
    window = await session.scalar(
        select(ClearingWindow)
        .where(ClearingWindow.currency == _known(currency))
        .order_by(ClearingWindow.closed_at.desc().nulls_last(), ClearingWindow.opened_at.desc())
        .limit(1)
    )
    if window is None:
        raise Problem(404, f"no {currency} window yet", kind="window-not-found")
    return await _window_out(session, window, caller)


@router.get("/windows/{window_id}", response_model=WindowOut)
async def read_window(window_id: uuid.UUID, caller: CallerDep, session: SessionDep) -> WindowOut:
    window = await session.get(ClearingWindow, window_id)
    if window is None:
        raise Problem(404, f"window {window_id} not found", kind="window-not-found")
    return await _window_out(session, window, caller)


@router.post("/windows/close", status_code=status.HTTP_202_ACCEPTED, response_model=WindowOut)
async def close_now(
    caller: AdminDep, session: SessionDep, temporal: TemporalDep, settings: SettingsDep, currency: str = Currency
) -> WindowOut:
    """Close the currency's open window now (demos, tests): starts a clearing run like
    the schedule's and answers once the window is closed and netted (its funding
    instructions issued)."""
    open_window = await session.scalar(
        select(ClearingWindow.id).where(
            ClearingWindow.currency == _known(currency), ClearingWindow.status == WindowStatus.OPEN
        )
    )
    await session.rollback()
    if open_window is None:
        raise Problem(404, f"no open {currency} window to close", kind="window-not-found")
    handle = await temporal.start_workflow(
        ClearingWindowContract.run,
        ClearingInput(currency=currency, funding_timeout_s=settings.window_funding_timeout_s),
        id=f"clearing-{currency}-manual-{uuid.uuid4().hex[:12]}",
        task_queue=settings.task_queue,
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CLOSE_WAIT_S
    while loop.time() < deadline:
        window = await session.scalar(select(ClearingWindow).where(ClearingWindow.closed_by == handle.id))
        if window is not None and window.status != WindowStatus.CLOSING:
            return await _window_out(session, window, caller)
        await session.rollback()  # a fresh snapshot on the next look
        await asyncio.sleep(0.1)
    raise Problem(
        503,
        f"clearing run {handle.id} has not netted the window yet; it goes on (see the Temporal UI)",
        kind="close-pending",
        headers={"Retry-After": "5"},
    )
