"""Nothing accepted is lost: a payment whose row was committed but whose workflow start
failed (Temporal down) or never ran (the API stopped just after its 202) gets its workflow
from this sweeper, even if the bank never resubmits; likewise a matched camt.054 entry
whose signal never went out is signalled, once its workflow exists.
Every `interval_s` it starts (or finds: the start is idempotent) the workflow of each
payment still SCREENING after a grace period — in a healthy system those are
payments whose compliance step is running or retrying, and the start just finds them."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import exists, func, select, tuple_
from sqlalchemy.ext.asyncio import async_sessionmaker
from temporalio.client import Client

from activities.redemptions import RedemptionActivities
from deltran import redemptions, refunds
from deltran.config import Settings
from deltran.db.tables import BankNotification, Payment, Redemption
from deltran.intake.camt054 import signal_unsent
from deltran.intake.payments import payment_input, start_payment_workflow
from deltran.vocabulary import PaymentStatus, RedemptionStatus

log = logging.getLogger("deltran.sweeper")
GRACE = timedelta(seconds=30)
BATCH = 500
START_CONCURRENCY = 16


async def start_orphans(
    client: Client, sessions: async_sessionmaker, settings: Settings, grace: timedelta = GRACE
) -> int:
    """Start (or find) the workflows of payments left in SCREENING for longer than `grace`,
    every one of them, page by page: those whose compliance step is retrying are found
    running, so they never hide the orphans behind them. A failed start ends the round
    after its page (Temporal down); the next round tries again. Returns how many were
    started or found."""
    done = 0
    after: tuple = (datetime.min.replace(tzinfo=UTC), uuid.UUID(int=0))
    gate = asyncio.Semaphore(START_CONCURRENCY)

    async def start(row) -> None:
        data = payment_input(
            settings, row.id, row.end_to_end_id, row.amount, row.currency, row.debtor_agent_bic, row.creditor_agent_bic
        )
        async with gate:
            await start_payment_workflow(client, settings, data, row.workflow_id)

    while True:
        async with sessions() as session:
            rows = (
                await session.execute(
                    select(
                        Payment.id,
                        Payment.created_at,
                        Payment.workflow_id,
                        Payment.end_to_end_id,
                        Payment.amount,
                        Payment.currency,
                        Payment.debtor_agent_bic,
                        Payment.creditor_agent_bic,
                    )
                    .where(
                        Payment.status == PaymentStatus.SCREENING,
                        Payment.created_at < func.now() - grace,
                        tuple_(Payment.created_at, Payment.id) > after,
                    )
                    .order_by(Payment.created_at, Payment.id)
                    .limit(BATCH)
                )
            ).all()
        outcomes = await asyncio.gather(*(start(row) for row in rows), return_exceptions=True)
        if failure := next((o for o in outcomes if isinstance(o, BaseException)), None):
            raise failure  # the rest of the page has been tried; the next round tries again
        done += len(rows)
        if len(rows) < BATCH:
            return done
        after = (rows[-1].created_at, rows[-1].id)


async def start_orphan_redemptions(
    client: Client, sessions: async_sessionmaker, settings: Settings, grace: timedelta = GRACE
) -> int:
    """Start (or find) the workflow of each redemption still RESERVED after `grace`: its
    tokens are reserved, so its workflow must run (to pay out, or to release them)."""
    async with sessions() as session:
        due = list(
            (
                await session.scalars(
                    select(Redemption)
                    .where(Redemption.status == RedemptionStatus.RESERVED, Redemption.created_at < func.now() - grace)
                    .order_by(Redemption.created_at)
                    .limit(BATCH)
                )
            ).all()
        )
    for redemption in due:
        await redemptions.start_workflow(client, settings, redemption)
    return len(due)


OVERDUE_GRACE = timedelta(minutes=10)


async def settle_overdue_redemptions(sessions: async_sessionmaker, grace: timedelta = OVERDUE_GRACE) -> int:
    """What a redemption's workflow does, done here for one whose workflow no longer runs
    (terminated, failed): a booked payout whose tokens are not burned `grace` after its
    booking is burned; one past its deadline by `grace` with no payout booked is released.
    Both steps are the workflow's own, under the redemption's lock: a workflow that is
    alive and late does no harm, the first one wins and the other changes nothing."""
    booked_dbit = exists().where(
        BankNotification.redemption_id == Redemption.id,
        BankNotification.credit_debit == "DBIT",
        BankNotification.entry_status == "BOOK",
    )
    async with sessions() as session:
        to_burn = list(
            (
                await session.scalars(
                    select(Redemption.id)
                    .where(
                        Redemption.status == RedemptionStatus.PAYOUT_INSTRUCTED,
                        Redemption.notification_id.is_not(None),
                        Redemption.updated_at < func.now() - grace,
                    )
                    .limit(BATCH)
                )
            ).all()
        )
        to_release = list(
            (
                await session.scalars(
                    select(Redemption.id)
                    .where(
                        Redemption.status.in_((RedemptionStatus.RESERVED, RedemptionStatus.PAYOUT_INSTRUCTED)),
                        Redemption.notification_id.is_(None),
                        Redemption.deadline < func.now() - grace,
                        ~booked_dbit,
                    )
                    .order_by(Redemption.deadline)
                    .limit(BATCH)
                )
            ).all()
        )
    steps = RedemptionActivities(sessions)  # the workflow's own steps, called directly
    for redemption_id in to_burn:
        await steps.burn_tokens(redemption_id)
    for redemption_id in to_release:
        await steps.release_tokens(redemption_id, "past its deadline: released by the sweeper")
    return len(to_burn) + len(to_release)


async def run_sweeper(
    client: Client, sessions: async_sessionmaker, settings: Settings, stop: asyncio.Event, interval_s: float = 30.0
) -> None:
    while not stop.is_set():
        try:
            if started := await start_orphans(client, sessions, settings):
                log.info("sweeper: started or found %d payment workflow(s) still SCREENING", started)
            if started := await start_orphan_redemptions(client, sessions, settings):
                log.info("sweeper: started or found %d redemption workflow(s) still RESERVED", started)
            if settled := await settle_overdue_redemptions(sessions):
                log.warning("sweeper: burned or released %d redemption(s) their workflow left behind", settled)
            async with sessions() as session:
                if signalled := await signal_unsent(session, client, GRACE):
                    log.info("sweeper: signalled %d matched camt.054 entr(ies) whose signal never went out", signalled)
        except Exception:  # Temporal or PostgreSQL down: try again next round
            log.exception("sweeper: round failed; retrying in %.0fs", interval_s)
        try:  # PostgreSQL only: not held back by a Temporal that is down
            async with sessions() as session, session.begin():
                if refunded := await refunds.instruct_stranded(session, settings.unmatched_refund_after_s):
                    log.info("sweeper: instructed %d refund(s) of booked fiat that can settle nothing", refunded)
        except Exception:
            log.exception("sweeper: refunds failed; retrying in %.0fs", interval_s)
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
        except TimeoutError:
            pass
