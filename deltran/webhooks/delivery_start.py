"""Starting and waking a bank's webhook delivery workflow (workflows/webhooks.py): by the
API when a bank sets its webhook, and by the event numberer when a bank with one has new
events. Signal-with-start: the running workflow is signalled, or a new run starts (after
the bank removed its webhook and set another)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker
from temporalio.client import Client

from deltran.config import Settings
from deltran.events import Numbered
from deltran.periodic import run_every
from deltran.shared import DeliveryInput
from deltran.temporal.contract import WebhookDeliveryContract, delivery_workflow_id

log = logging.getLogger("deltran.webhooks")


async def start_delivery(client: Client, settings: Settings, bic: str, last_seq: int = 0) -> None:
    await client.start_workflow(
        WebhookDeliveryContract.run,
        DeliveryInput(
            bic=bic,
            retry_first_s=settings.webhook_retry_first_s,
            retry_longest_s=settings.webhook_retry_longest_s,
            period_s=settings.webhook_delivery_period_s,
            timeout_s=settings.webhook_timeout_s,
        ),
        id=delivery_workflow_id(bic),
        task_queue=settings.task_queue,
        start_signal="events_numbered",
        start_signal_args=[last_seq],
    )


class DeliveryWaker:
    """After each numbering round: signal the delivery of each bank with new events to
    push — but only one that may be idle, and at most once a second. A delivery still
    working on events it was told of (one retrying a failing endpoint for hours, say) is
    not signalled again: it looks for more when it is done, and its history does not fill
    with signals. What is owed is remembered until it is sent. A signal Temporal does not
    take (it is down) is retried next round; a delivery also looks again on its own every
    few minutes."""

    MIN_INTERVAL_S = 1.0
    INTERVAL_S = 0.2
    SIGNAL_TIMEOUT_S = 5.0

    def __init__(self, client: Client, sessions: async_sessionmaker, settings: Settings) -> None:
        self._client, self._sessions, self._settings = client, sessions, settings
        self._owed: dict[uuid.UUID, int] = {}  # bank → the last seq it has not been told of
        self._told: dict[uuid.UUID, tuple[int, float]] = {}  # bank → (seq, when)

    def note(self, numbered: Numbered | None) -> None:
        """What a numbering round found (called by the numberer, which never waits on
        Temporal: the signals go out from `run`)."""
        if numbered is not None:
            for participant in numbered.to_deliver:
                self._owed[participant] = numbered.last_seq

    async def run(self, stop: asyncio.Event) -> None:
        await run_every(self.INTERVAL_S, stop, self.wake, log, "webhook waker: waking deliveries")

    async def wake(self) -> None:
        now = time.monotonic()
        due = {p: seq for p, seq in self._owed.items() if now - self._told.get(p, (0, 0.0))[1] >= self.MIN_INTERVAL_S}
        if not due:
            return
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    _IDLE,
                    {"ids": list(due), "told": [self._told.get(p, (0, 0.0))[0] for p in due]},
                )
            ).all()
        idle = [row for row in rows if not row.busy]  # a busy one looks for more when done
        outcomes = await asyncio.gather(
            *(self._signal(row.bic, due[row.participant_id]) for row in idle), return_exceptions=True
        )
        for row, outcome in zip(idle, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                log.warning("webhook delivery of %s not woken (%s); retrying", row.bic, outcome)
                continue
            self._told[row.participant_id] = (due[row.participant_id], now)
            self._owed.pop(row.participant_id, None)
        for gone in set(due) - {r.participant_id for r in rows}:  # no webhook any more
            self._owed.pop(gone, None)

    async def _signal(self, bic: str, last_seq: int) -> None:
        async with asyncio.timeout(self.SIGNAL_TIMEOUT_S):
            await start_delivery(self._client, self._settings, bic, last_seq)


# Of the banks owed a signal, those with a webhook, and whether their delivery is still on
# events up to the seq it was last told of.
_IDLE = text(
    """
    SELECT p.bic, b.participant_id, EXISTS (
               SELECT 1 FROM events e
               WHERE e.participant_id = b.participant_id AND e.delivery_status = 'PENDING'
                 AND e.seq > w.after_seq AND e.seq <= b.told
           ) AS busy
    FROM unnest(CAST(:ids AS uuid[]), CAST(:told AS bigint[])) AS b(participant_id, told)
    JOIN webhooks w ON w.participant_id = b.participant_id
    JOIN participants p ON p.id = b.participant_id
    """
)
