"""Numbers committed events (deltran/events.py `number_pending`) a moment after they are
written, so `GET /v1/events` and webhook deliveries see them in order; with several
workers an advisory lock lets one number at a time. A failure (PostgreSQL restarting) is
logged and retried next round: unnumbered events simply wait, nothing is lost."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sqlalchemy.ext.asyncio import async_sessionmaker

from deltran import events
from deltran.periodic import run_every

log = logging.getLogger("deltran.events")
INTERVAL_S = 0.2

# Told every round's result (None: another numberer had the lock), without waiting on it:
# the webhook waker notes which deliveries to wake and wakes them from its own task.
OnRound = Callable[[events.Numbered | None], None]


async def run_numberer(
    sessions: async_sessionmaker,
    stop: asyncio.Event,
    on_round: OnRound | None = None,
    interval_s: float = INTERVAL_S,
) -> None:
    async def number_round() -> None:
        numbered = await events.number_pending(sessions)
        if numbered is not None and numbered.count:
            log.debug("numbered %d event(s) up to %d", numbered.count, numbered.last_seq)
        if on_round is not None:
            on_round(numbered)

    await run_every(interval_s, stop, number_round, log, "event numberer: numbering")
