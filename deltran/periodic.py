"""A background round run every few moments until asked to stop (the audit sealer, the
event numberer): a failing round (PostgreSQL restarting) is logged and the next one tries
again — what it had to do waits, nothing is lost."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable


async def run_every(
    interval_s: float, stop: asyncio.Event, round_: Callable[[], Awaitable[None]], log: logging.Logger, what: str
) -> None:
    while not stop.is_set():
        try:
            await round_()
        except Exception:
            log.exception("%s failed, retrying in %.1fs", what, interval_s)
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
        except TimeoutError:
            pass
