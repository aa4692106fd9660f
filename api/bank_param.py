"""Whose data a call is about: a bank's own, or for admin the bank it names (`?bic=`).
EBILAEADXXX is EBILAEAD; a bank naming another is a 422, admin naming an unknown bank a
404, the settlement agent (party to no bank's data) a 403."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import HTTPException, Query
from fastapi.exceptions import RequestValidationError
from sqlalchemy import select

from api.deps import Caller
from api.problems import Problem
from deltran.db.tables import Participant
from deltran.identity import normalize_bic

BankQuery = Annotated[
    str | None,
    Query(pattern=r"^[A-Za-z0-9]{8}([A-Za-z0-9]{3})?$", description="admin only: the bank to show"),
]


@dataclass(frozen=True)
class Bank:
    id: uuid.UUID
    bic: str


def invalid_query(*problems: tuple[str, str]) -> RequestValidationError:
    """A 422 naming each query parameter, as FastAPI's own validation answers."""
    return RequestValidationError([{"loc": ("query", n), "msg": m, "type": "value_error"} for n, m in problems])


async def named_bank(session, caller: Caller, bic: str | None, *, admin_may_omit: bool = False) -> Bank | None:
    """The bank the call is about; None only for admin naming none when it may omit one."""
    if caller.role not in ("bank", "admin"):
        raise HTTPException(status_code=403, detail="visible to their bank and to admin only")
    if bic is not None:
        try:
            bic = normalize_bic(bic)
        except ValueError:
            raise invalid_query(("bic", f"{bic} is not a valid BIC")) from None
    if caller.role == "bank":
        if bic is not None and bic != caller.bic:
            raise invalid_query(("bic", "a bank sees its own only"))
        assert caller.bic is not None and caller.participant_id is not None
        return Bank(caller.participant_id, caller.bic)
    if bic is None:
        if admin_may_omit:
            return None
        raise invalid_query(("bic", "admin names the bank"))
    participant_id = await session.scalar(select(Participant.id).where(Participant.bic == bic))
    if participant_id is None:
        raise Problem(404, f"no bank {bic} on DelTran", kind="bank-not-found")
    return Bank(participant_id, bic)


async def bank_of(session, caller: Caller, bic: str | None, *, admin_may_omit: bool = False) -> uuid.UUID | None:
    bank = await named_bank(session, caller, bic, admin_may_omit=admin_may_omit)
    return None if bank is None else bank.id
