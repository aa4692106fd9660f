"""The clearing schedules: one Temporal Schedule per currency (`clearing-<CUR>`) that
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
from workflows.clearing import ClearingWindowWorkflow


def schedule_id(currency: str) -> str:
    return f"clearing-{currency}"


def _schedule(currency: str, settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            ClearingWindowWorkflow.run,
            ClearingInput(currency=currency, funding_timeout_s=settings.window_funding_timeout_s),
            id=f"clearing-{currency}",
            task_queue=settings.task_queue,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=settings.clearing_interval_s))]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def ensure_schedules(client: Client, sessions: async_sessionmaker, settings: Settings) -> list[str]:
    ids = []
    for currency in settings.supported_currencies:
        async with sessions() as session, session.begin():
            await ensure_open_window(session, currency)
        wanted = _schedule(currency, settings)
        try:
            await client.create_schedule(schedule_id(currency), wanted)
        except ScheduleAlreadyRunningError:

            def replace(_: ScheduleUpdateInput, wanted: Schedule = wanted) -> ScheduleUpdate:
                return ScheduleUpdate(schedule=wanted)

            await client.get_schedule_handle(schedule_id(currency)).update(replace)
        ids.append(schedule_id(currency))
    return ids
