"""`/v1/admin`: participants and their keys (admin key only).

Keys are random, returned once in the response that creates them, and stored as digests.
Every change is audited in the same transaction.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from fastapi import APIRouter, status
from pydantic import BaseModel, Field
from schwifty.exceptions import SchwiftyException

from api.deps import AdminDep, SessionDep
from api.problems import Problem, problem_responses
from api.schemas import Bic, Name
from api.strict_json import StrictJSONRoute
from deltran import audit, participants
from deltran.db.tables import Participant
from deltran.identity import normalize_bic
from deltran.money import MINOR_UNITS, AmountError, format_amount, parse_amount
from deltran.vocabulary import ParticipantStatus

router = APIRouter(
    prefix="/v1/admin", tags=["admin"], responses=problem_responses(403, 404, 409, 422), route_class=StrictJSONRoute
)


class BankIn(BaseModel):
    bic: Bic = Field(description="BIC of the bank (8 or 11 characters)", examples=["EBILAEAD"])
    name: Name
    country: str = Field(pattern=r"^[A-Z]{2}$", examples=["AE"])
    fx_provider: bool = Field(default=False, description="also an FX provider: posts rate sheets (PUT /v1/fx/rates)")


class BankOut(BaseModel):
    bic: str
    name: str
    country: str
    status: str
    fx_provider: bool
    created_at: datetime


class BankKey(BaseModel):
    bic: str
    api_key: str = Field(description="Shown once: DelTran keeps only its SHA-256 digest")


class BankList(BaseModel):
    banks: list[BankOut]


def _bank_out(bank: Participant) -> BankOut:
    return BankOut(
        bic=bank.bic,
        name=bank.name,
        country=bank.country,
        status=bank.status,
        fx_provider=bank.fx_provider,
        created_at=bank.created_at,
    )


def _bic_or_404(bic: str) -> str:
    try:
        return normalize_bic(bic)
    except SchwiftyException:
        raise Problem(404, f"no participant {bic}", kind="unknown-bank") from None


@router.get("/banks", response_model=BankList)
async def list_banks(_: AdminDep, session: SessionDep) -> BankList:
    banks = await participants.list_banks(session)
    return BankList(banks=[_bank_out(b) for b in banks])


# A JSON body that is not text (FastAPI cannot decode it) is a 400, as for payments.
@router.post("/banks", status_code=status.HTTP_201_CREATED, response_model=BankKey, responses=problem_responses(400))
async def add_bank(body: BankIn, caller: AdminDep, session: SessionDep) -> BankKey:
    try:
        async with session.begin():
            key = await participants.create_bank(
                session, body.bic, body.name, body.country, fx_provider=body.fx_provider
            )
            await audit.record(
                session,
                actor=caller.identity,
                action="bank.add",
                subject=body.bic,
                result="ok",
                details={"name": body.name, "country": body.country, "fx_provider": body.fx_provider},
            )
    except participants.BankExists as exc:
        raise Problem(
            409, str(exc), kind="bank-exists", errors=[{"field": "bic", "message": "already a participant"}]
        ) from None
    return BankKey(bic=body.bic, api_key=key)


@router.post("/banks/{bic}/rotate-key", response_model=BankKey)
async def rotate_key(bic: str, caller: AdminDep, session: SessionDep) -> BankKey:
    bic = _bic_or_404(bic)
    try:
        async with session.begin():
            key = await participants.rotate_key(session, bic)
            await audit.record(session, actor=caller.identity, action="bank.rotate_key", subject=bic, result="ok")
    except participants.UnknownBank as exc:
        raise Problem(404, str(exc), kind="unknown-bank") from None
    return BankKey(bic=bic, api_key=key)


async def _set_status(bic: str, new_status: str, caller, session) -> BankOut:
    bic = _bic_or_404(bic)
    action = "bank.suspend" if new_status == ParticipantStatus.SUSPENDED else "bank.activate"
    try:
        async with session.begin():
            await participants.set_status(session, bic, new_status)
            await audit.record(session, actor=caller.identity, action=action, subject=bic, result="ok")
    except participants.UnknownBank as exc:
        raise Problem(404, str(exc), kind="unknown-bank") from None
    return _bank_out(await participants.get_bank(session, bic))


@router.post("/banks/{bic}/suspend", response_model=BankOut)
async def suspend(bic: str, caller: AdminDep, session: SessionDep) -> BankOut:
    """New payments to or from a suspended bank are rejected by compliance (AG01)."""
    return await _set_status(bic, ParticipantStatus.SUSPENDED, caller, session)


@router.post("/banks/{bic}/activate", response_model=BankOut)
async def activate(bic: str, caller: AdminDep, session: SessionDep) -> BankOut:
    return await _set_status(bic, ParticipantStatus.ACTIVE, caller, session)


class CapIn(BaseModel):
    cap: str = Field(pattern=r"^[0-9]{1,18}(\.[0-9]{1,5})?$", description='Largest net debit, e.g. "5000000.00"')


class CapOut(BaseModel):
    bic: str
    currency: str
    cap: str


@router.put("/banks/{bic}/net-debit-caps/{currency}", response_model=CapOut, responses=problem_responses(400))
async def set_net_debit_cap(bic: str, currency: str, body: CapIn, caller: AdminDep, session: SessionDep) -> CapOut:
    """The most the bank may owe, net, in the currency's open window: a payment that
    would take its net position past it is rejected (AM14)."""
    bic = _bic_or_404(bic)
    if currency not in MINOR_UNITS:  # "aed", "0", "ABCDEF": stored, it would never apply
        raise Problem(
            422,
            f"currency {currency[:8]!r} is not supported",
            kind="validation",
            errors=[{"field": "currency", "message": f"one of {', '.join(sorted(MINOR_UNITS))}"}],
        )
    try:
        cap = parse_amount(body.cap, currency) if Decimal(body.cap) > 0 else Decimal(0)
    except AmountError as exc:
        raise Problem(422, str(exc), kind="validation", errors=[{"field": "cap", "message": str(exc)}]) from None
    try:
        async with session.begin():
            await participants.set_net_debit_cap(session, bic, currency, cap)
            await audit.record(
                session,
                actor=caller.identity,
                action="bank.net_debit_cap",
                subject=bic,
                result="ok",
                details={"currency": currency, "cap": str(cap)},
            )
    except participants.UnknownBank as exc:
        raise Problem(404, str(exc), kind="unknown-bank") from None
    return CapOut(bic=bic, currency=currency, cap=format_amount(cap, currency))
