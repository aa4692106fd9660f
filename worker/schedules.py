"""The Temporal Schedules. Clearing: one per currency (`clearing-<CUR>`) that
starts a ClearingWindowWorkflow every `DELTRAN_CLEARING_INTERVAL_S`, never overlapping
(a run still waiting for fundings makes the next tick skip). Idempotent: run it at every
start; an existing schedule is updated to the configured cadence, and every currency
gets an open window for payments to join."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import async_sessionmaker
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from activities.clearing import ensure_open_window
from deltran.config import Settings
from deltran.shared import ClearingInput
from deltran.temporal.contract import ClearingWindowContract, ReconciliationContract
from deltran.vocabulary import ReconciliationTier


def schedule_id(currency: str) -> str:
    return f"clearing-{currency}"


def _schedule(currency: str, settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            ClearingWindowContract.run,
            ClearingInput(currency=currency, funding_timeout_s=settings.window_funding_timeout_s),
            id=f"clearing-{currency}",
            task_queue=settings.task_queue,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=settings.clearing_interval_s))]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


def _reconciliation_schedules(settings: Settings) -> dict[str, Schedule]:
    """The account monitor: intraday every DELTRAN_RECONCILIATION_INTERVAL_S, end of day
    on DELTRAN_END_OF_DAY_CRON (UTC)."""

    def start(tier: str) -> ScheduleActionStartWorkflow:
        return ScheduleActionStartWorkflow(
            ReconciliationContract.run, tier, id=f"reconciliation-{tier}", task_queue=settings.task_queue
        )

    skip = SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP)
    return {
        "reconciliation-intraday": Schedule(
            action=start(ReconciliationTier.INTRADAY),
            spec=ScheduleSpec(
                intervals=[ScheduleIntervalSpec(every=timedelta(seconds=settings.reconciliation_interval_s))]
            ),
            policy=skip,
        ),
        "reconciliation-end-of-day": Schedule(
            action=start(ReconciliationTier.END_OF_DAY),
            spec=ScheduleSpec(cron_expressions=[settings.end_of_day_cron]),
            policy=skip,
        ),
    }


async def _create_or_update(client: Client, schedule_id_: str, wanted: Schedule) -> None:
    try:
        await client.create_schedule(schedule_id_, wanted)
    except ScheduleAlreadyRunningError:

        def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=wanted)

        await client.get_schedule_handle(schedule_id_).update(replace)


async def ensure_reconciliation_schedules(client: Client, settings: Settings) -> list[str]:
    schedules = _reconciliation_schedules(settings)
    for schedule_id_, wanted in schedules.items():
        await _create_or_update(client, schedule_id_, wanted)
    return list(schedules)


async def ensure_schedules(client: Client, sessions: async_sessionmaker, settings: Settings) -> list[str]:
    ids = []
    for currency in settings.supported_currencies:
        async with sessions() as session, session.begin():
            await ensure_open_window(session, currency)
        await _create_or_update(client, schedule_id(currency), _schedule(currency, settings))
        ids.append(schedule_id(currency))
    return ids
