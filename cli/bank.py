"""`deltran bank add|list|suspend|activate|rotate-key`: participants from the shell.

The same service functions as the admin API, audited the same way (actor `cli:<user>`).
A new or rotated key is printed once; DelTran keeps only its digest.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys

from deltran import audit, participants
from deltran.config import get_settings
from deltran.db.engine import make_engine, make_session_factory
from deltran.identity import normalize_bic
from deltran.vocabulary import ParticipantStatus


def add_parser(commands) -> None:
    bank = commands.add_parser("bank", help="manage participant banks and their API keys")
    actions = bank.add_subparsers(dest="bank_command", required=True)
    add = actions.add_parser("add", help="add a bank; prints its API key once")
    add.add_argument("bic")
    add.add_argument("--name", required=True)
    add.add_argument("--country", required=True, help="ISO 3166 alpha-2, e.g. AE")
    add.add_argument(
        "--fx-provider", action="store_true", help="also an FX provider: posts rate sheets (PUT /v1/fx/rates)"
    )
    actions.add_parser("list", help="list banks and their status")
    for name, text in (
        ("suspend", "suspend a bank: its new payments are rejected"),
        ("activate", "re-activate a suspended bank"),
        ("rotate-key", "issue a new API key (the old one stops working); prints it once"),
    ):
        actions.add_parser(name, help=text).add_argument("bic")
    bank.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    engine = make_engine(get_settings().effective_database_url, pool_size=1)
    sessions = make_session_factory(engine)
    actor = f"cli:{getpass.getuser()}"
    try:
        async with sessions() as session:
            if args.bank_command == "list":
                for b in await participants.list_banks(session):
                    print(f"{b.bic:<11}  {b.country}  {b.status:<9}  {'FX' if b.fx_provider else '  '}  {b.name}")
                return 0
            async with session.begin():
                output = await _change(session, args, actor)
            print(output)
            return 0
    except (participants.UnknownBank, participants.BankExists, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        await engine.dispose()


async def _change(session, args: argparse.Namespace, actor: str) -> str:
    bic = normalize_bic(args.bic)
    if args.bank_command == "add":
        key = await participants.create_bank(session, bic, args.name, args.country, fx_provider=args.fx_provider)
        await audit.record(
            session,
            actor=actor,
            action="bank.add",
            subject=bic,
            result="ok",
            details={"name": args.name, "country": args.country.upper(), "fx_provider": args.fx_provider},
        )
        role = " (FX provider)" if args.fx_provider else ""
        return f"added {bic}{role}; API key (shown once): {key}"
    if args.bank_command == "rotate-key":
        key = await participants.rotate_key(session, bic)
        await audit.record(session, actor=actor, action="bank.rotate_key", subject=bic, result="ok")
        return f"new API key for {bic} (shown once): {key}"
    new_status = ParticipantStatus.SUSPENDED if args.bank_command == "suspend" else ParticipantStatus.ACTIVE
    await participants.set_status(session, bic, new_status)
    await audit.record(session, actor=actor, action=f"bank.{args.bank_command}", subject=bic, result="ok")
    return f"{bic} is {new_status}"
