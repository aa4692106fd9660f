"""`GET /v1/events`: what a bank is told, for banks that poll instead of (or as well as)
taking webhooks — the same events, ids and order (deltran/events.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from api import cursor
from api.bank_param import BankQuery, bank_of
from api.deps import CallerDep, SessionDep
from api.problems import problem_responses
from api.schemas import EventList, EventOut
from deltran import events

router = APIRouter(prefix="/v1/events", tags=["events"], responses=problem_responses(400, 403, 404, 422))

MAX_PAGE = 1000


def _position(value: str | None) -> int:
    if value is None:
        return 0
    try:
        [seq] = cursor.unpack(value)
        if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq < 2**63:
            raise ValueError("not a cursor")
    except (ValueError, TypeError):
        raise cursor.invalid() from None
    return seq


@router.get("", response_model=EventList)
async def list_events(
    caller: CallerDep,
    session: SessionDep,
    cursor_: Annotated[str | None, Query(alias="cursor", max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    bic: BankQuery = None,
) -> EventList:
    """A bank's events, oldest first, from the start or after `cursor`; admin every
    bank's (or one's, `?bic=`). `next_cursor` is where the next call continues — the same
    cursor when nothing new came: keep it and poll again. Events appear in order, each
    once, within about a second of the change they report."""
    if caller.role not in ("bank", "admin"):
        raise HTTPException(status_code=403, detail="events are for banks (and admin)")
    participant_id = await bank_of(session, caller, bic, admin_may_omit=True)
    after = _position(cursor_)
    found = await events.feed(session, participant_id, after, limit)
    return EventList(
        items=[EventOut(id=e.id, type=e.type, created_at=e.created_at, data=e.data) for e in found],
        next_cursor=cursor.pack([found[-1].seq if found else after]),
    )
