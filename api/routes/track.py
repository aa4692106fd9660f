"""`/v1/track/{uetr}`: a payment's timeline for its two agents (deltran/tracker.py)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from api.deps import BankDep, SessionDep
from api.problems import problem_responses
from api.schemas import TrackedStateOut, TrackOut
from deltran.tracker import track

router = APIRouter(prefix="/v1/track", tags=["payments"], responses=problem_responses(403, 404, 422))


@router.get("/{uetr}", response_model=TrackOut)
async def tracked(uetr: uuid.UUID, caller: BankDep, session: SessionDep) -> TrackOut:
    """The payment you send or receive with this UETR (yours, or the one DelTran forwarded
    to you): each state it reached, when, and the ISO 20022 message behind it, oldest
    first. The creditor agent's timeline starts when the payment awaits settlement."""
    assert caller.bic is not None
    found = await track(session, uetr, caller.bic)
    return TrackOut(
        uetr=found.uetr,
        payment_id=found.payment_id,
        status=found.status,
        events=[
            TrackedStateOut(at=s.at, state=s.state, message_type=s.message_type, message_id=s.message_id)
            for s in found.events
        ],
    )
