"""The redemption workflow's steps (workflows/redemption.py), each one transaction of
deltran/redemptions.py; metrics are counted once, after the commit."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import async_sessionmaker
from temporalio import activity

from deltran import redemptions
from deltran.db.tables import Redemption
from deltran.errors import NotFound
from deltran.observability import metrics
from deltran.shared import PayoutState
from deltran.vocabulary import RedemptionStatus


class RedemptionActivities:
    def __init__(self, session_factory: async_sessionmaker) -> None:
        self._sessions = session_factory

    @activity.defn(name="instruct_payout")
    async def instruct_payout(self, redemption_id: uuid.UUID) -> None:
        async with self._sessions() as session, session.begin():
            await redemptions.instruct(session, redemption_id)

    @activity.defn(name="payout_state")
    async def payout_state(self, redemption_id: uuid.UUID) -> PayoutState:
        async with self._sessions() as session:
            found = await session.get(Redemption, redemption_id)
        if found is None:
            raise NotFound(f"redemption {redemption_id} not found", kind="redemption-not-found")
        return PayoutState(status=found.status, booked=found.notification_id is not None)

    @activity.defn(name="burn_tokens")
    async def burn_tokens(self, redemption_id: uuid.UUID) -> str:
        async with self._sessions() as session, session.begin():
            before = (await redemptions.locked(session, redemption_id)).status
            done = await redemptions.burn(session, redemption_id)
            currency, amount = done.currency, done.amount
        if before != RedemptionStatus.COMPLETED:
            metrics.redemptions.labels(currency, RedemptionStatus.COMPLETED.value).inc()
            metrics.tokens_burned_amount.labels(currency).inc(float(amount))
        return RedemptionStatus.COMPLETED.value

    @activity.defn(name="release_tokens")
    async def release_tokens(self, redemption_id: uuid.UUID, reason: str) -> str:
        """RELEASED, or the status it keeps when its payout was booked meanwhile."""
        async with self._sessions() as session, session.begin():
            before = (await redemptions.locked(session, redemption_id)).status
            after = await redemptions.release(session, redemption_id, reason)
            status, currency = after.status, after.currency
        if before != status == RedemptionStatus.RELEASED:
            metrics.redemptions.labels(currency, RedemptionStatus.RELEASED.value).inc()
        return status
