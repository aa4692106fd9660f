"""`deltran breaker list|close CUR` and `deltran reconcile TIER`: the account monitor
from the shell (the same functions as the worker's runs and the admin API)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys

from sqlalchemy import select

from deltran import audit, reconciliation
from deltran.config import get_settings
from deltran.db.engine import make_engine, make_session_factory
from deltran.db.tables import CircuitBreaker


def breaker(args: argparse.Namespace) -> int:
    return asyncio.run(_breaker(args))


def reconcile(args: argparse.Namespace) -> int:
    return asyncio.run(_reconcile(args.tier))


async def _breaker(args: argparse.Namespace) -> int:
    engine = make_engine(get_settings().effective_database_url, pool_size=1)
    try:
        async with make_session_factory(engine)() as session:
            if args.breaker_command == "list":
                for b in (await session.scalars(select(CircuitBreaker).order_by(CircuitBreaker.currency))).all():
                    print(f"{b.currency}  {b.state:<6}  {b.reason or ''}")
                return 0
            currency = args.currency.upper()
            actor = f"cli:{getpass.getuser()}"
            try:
                async with session.begin():
                    await reconciliation.close_breaker(session, currency, actor)
                    await audit.record(session, actor=actor, action="breaker.close", subject=currency, result="ok")
            except reconciliation.BreakNotResolved as exc:
                print(f"not closed: the {currency} backing still does not reconcile: {exc}", file=sys.stderr)
                return 1
            print(f"{currency} circuit breaker closed; waiting mints go on at their next retry")
            return 0
    finally:
        await engine.dispose()


async def _reconcile(tier: str) -> int:
    settings = get_settings()
    engine = make_engine(settings.effective_database_url, pool_size=1)
    try:
        async with make_session_factory(engine)() as session, session.begin():
            run = await reconciliation.run_reconciliation(session, tier, settings)
        print(f"{tier} reconciliation: {'OK' if run.ok else f'{run.break_count} break(s)'}")
        for item in run.breaks[:50]:
            print(f"  {item['kind']:<34} {item['currency']}  {item['ref']}  {item['detail']}")
        return 0 if run.ok else 1
    finally:
        await engine.dispose()
