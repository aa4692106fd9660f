"""The `deltran` command: one entry point for every role.

deltran up                 the whole local stack (what `make up` runs)
deltran api | worker       one process of the stack
deltran migrate [REV]      upgrade the database (default: head)
deltran migrate --down REV downgrade it (e.g. -1, base)
deltran seed               demo banks and keys into $DELTRAN_HOME/credentials.json
deltran bank ...           add | list | suspend | activate | rotate-key
deltran schedules          create/update the clearing and reconciliation schedules
deltran breaker ...        list | close CUR: the circuit breakers that stop minting
deltran reconcile TIER     run the account monitor now (intraday | end_of_day)
deltran demo SCENARIO      uae-india | recall | load | netting | reset | seed (against `make up`)
deltran camt054 ...        print a booked camt.054 for a payment, or --debit for a payout (settlement-agent tool)
deltran pacs008 ...        print a pacs.008 for one payment (a bank's tool)
deltran audit verify|seal  prove the audit log's hash chain unbroken / seal it now
deltran audit verify|seal  check the audit log's hash chain | seal pending records now
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from datetime import date
from decimal import Decimal

from cli import bank as bank_cli
from deltran import gc_tuning
from deltran.config import get_settings
from deltran.observability.logs import configure_logging, log_settings_from_env
from deltran.vocabulary import ReconciliationTier


def _api(_: argparse.Namespace) -> int:
    import uvicorn

    from api.main import KEEP_ALIVE_S, create_app

    settings = get_settings()
    app = create_app(settings)
    gc_tuning.tune(settings.gc_gen0_threshold)
    # log_config=None: uvicorn's own loggers go through our handler (JSON lines).
    uvicorn.run(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        timeout_keep_alive=KEEP_ALIVE_S,
        log_level=logging.getLevelName(logging.getLogger().level).lower(),
    )
    return 0


def _worker(_: argparse.Namespace) -> int:
    from worker.main import run_worker

    asyncio.run(run_worker(get_settings()))
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from deltran.db import migrate

    url = get_settings().effective_database_url
    if args.down:
        migrate.downgrade(url, args.down)
    else:
        migrate.upgrade(url, args.revision)
    return 0


def _seed(_: argparse.Namespace) -> int:
    from cli.devstack.stack import seed

    settings = get_settings()
    asyncio.run(seed(settings))
    print(f"demo credentials in {settings.credentials_path}")
    return 0


def _schedules(_: argparse.Namespace) -> int:
    from cli.devstack.stack import schedule_clearing

    for schedule in asyncio.run(schedule_clearing(get_settings())):
        print(schedule)
    return 0


def _breaker(args: argparse.Namespace) -> int:
    from cli.monitor import breaker

    return breaker(args)


def _reconcile(args: argparse.Namespace) -> int:
    from cli.monitor import reconcile

    return reconcile(args)


def _demo(args: argparse.Namespace) -> int:
    from cli import demo

    settings = get_settings()
    scenario = args.scenario
    if scenario == "uae-india":
        return demo.uae_india(settings)
    if scenario == "recall":
        return demo.recall(settings)
    if scenario == "load":
        return demo.load(settings, args.seconds, args.concurrency, args.in_flight)
    if scenario == "netting":
        return demo.netting(settings, args.payments, args.currency)
    if scenario == "fx":
        return demo.fx(settings, args.source, args.target, args.amount)
    return demo.reset(settings) if scenario == "reset" else demo.seed(settings)


def _up(_: argparse.Namespace) -> int:
    from cli.devstack.stack import run_stack

    return run_stack(get_settings())


def _camt054(args: argparse.Namespace) -> int:
    from deltran.iso20022.camt054 import BookingSpec, build_camt054

    booking = BookingSpec(
        end_to_end_id=args.end_to_end_id,
        amount=Decimal(args.amount),
        currency=args.currency,
        entry_reference=args.entry_reference or f"NTRY-{args.end_to_end_id}"[:35],
        bank_reference=args.bank_reference or f"BOOK-{args.end_to_end_id}"[:35],
        status=args.status,
        credit_debit="DBIT" if args.debit else "CRDT",
        booking_date=date.today(),
    )
    sys.stdout.buffer.write(build_camt054([booking], message_id=f"CAMT-{args.end_to_end_id}"[:35]))
    return 0


def _audit(args: argparse.Namespace) -> int:
    from deltran import audit
    from deltran.db.engine import make_engine, make_session_factory

    async def run() -> int:
        engine = make_engine(get_settings().effective_database_url, pool_size=1)
        try:
            sessions = make_session_factory(engine)
            if args.audit_command == "seal":
                print(f"sealed {await audit.seal_pending(sessions)} audit record(s)")
                return 0
            report = await audit.verify_chain(sessions)
        finally:
            await engine.dispose()
        print(f"sealed: {report.sealed}  unsealed: {report.unsealed}")
        if report.head_seal_seq is not None:
            print(f"head: seal_seq {report.head_seal_seq} hash {report.head_hash}")
        if report.ok:
            print("OK: the chain is unbroken")
            return 0
        assert report.first_break is not None
        print(f"BROKEN ({report.first_break['reason']}): {report.first_break['detail']}")
        return 1

    return asyncio.run(run())


def _pacs008(args: argparse.Namespace) -> int:
    from deltran.iso20022.pacs008 import Pacs008Spec, build_pacs008

    spec = Pacs008Spec(
        end_to_end_id=args.end_to_end_id,
        amount=Decimal(args.amount),
        currency=args.currency,
        debtor_name=args.debtor_name,
        debtor_agent_bic=args.debtor_bic,
        debtor_iban=args.debtor_iban,
        debtor_account=args.debtor_account,
        creditor_name=args.creditor_name,
        creditor_agent_bic=args.creditor_bic,
        creditor_iban=args.creditor_iban,
        creditor_account=args.creditor_account,
        remittance_info=args.remittance_info,
        urgent=args.urgent,
    )
    xml = build_pacs008(
        [spec],
        message_id=f"MSG-{args.end_to_end_id}"[:35],
        instructing_agent_bic=args.debtor_bic,
        with_app_header=args.app_header,
    )
    sys.stdout.buffer.write(xml)
    return 0


def main(argv: list[str] | None = None) -> int:
    # JSON lines by default (DELTRAN_LOG_FORMAT=text for a terminal), at DELTRAN_LOG_LEVEL.
    level, as_json = log_settings_from_env()
    configure_logging(level, json=as_json)
    parser = argparse.ArgumentParser(prog="deltran", description="DelTran clearing and settlement")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="start the whole local stack").set_defaults(run=_up)
    commands.add_parser("api", help="run the HTTP API").set_defaults(run=_api)
    commands.add_parser("worker", help="run a Temporal worker").set_defaults(run=_worker)
    migrate = commands.add_parser("migrate", help="upgrade (or --down) the database schema")
    migrate.add_argument("revision", nargs="?", default="head")
    migrate.add_argument("--down", metavar="REV", help="downgrade to REV instead (e.g. -1 or base)")
    migrate.set_defaults(run=_migrate)
    commands.add_parser("seed", help="seed demo banks and write their keys").set_defaults(run=_seed)
    bank_cli.add_parser(commands)
    commands.add_parser(
        "schedules", help="create or update the clearing and reconciliation schedules (idempotent)"
    ).set_defaults(run=_schedules)
    breaker_cmd = commands.add_parser("breaker", help="the circuit breakers that stop minting per currency")
    breaker_actions = breaker_cmd.add_subparsers(dest="breaker_command", required=True)
    breaker_actions.add_parser("list", help="every currency's breaker")
    breaker_actions.add_parser("close", help="close after the break is resolved").add_argument("currency")
    breaker_cmd.set_defaults(run=_breaker)
    reconcile_cmd = commands.add_parser("reconcile", help="run the account monitor now")
    reconcile_cmd.add_argument("tier", choices=[t.value for t in ReconciliationTier])
    reconcile_cmd.set_defaults(run=_reconcile)
    demo = commands.add_parser("demo", help="demo scenarios against the running stack")
    demo_kinds = demo.add_subparsers(dest="scenario", required=True)
    demo_kinds.add_parser("uae-india", help="one 100,000 AED payment followed step by step").set_defaults(run=_demo)
    demo_kinds.add_parser(
        "recall", help="a payment recalled before settlement, one after (accepted: returned), one returned in part"
    ).set_defaults(run=_demo)
    load = demo_kinds.add_parser("load", help="payments with live throughput, p95 and error rate")
    load.add_argument("--seconds", type=int, default=30)
    load.add_argument("--concurrency", type=int, default=10)
    load.add_argument("--in-flight", type=int, default=100, help="most payments in processing at once (closed loop)")
    load.set_defaults(run=_demo)
    net = demo_kinds.add_parser("netting", help="many payments, one window: gross vs net per bank")
    net.add_argument("--payments", type=int, default=100)
    net.add_argument("--currency", default="AED")
    net.set_defaults(run=_demo)
    fx = demo_kinds.add_parser("fx", help="100,000 AED arriving as INR: two legs netted, paid together")
    fx.add_argument("--source", default="AED")
    fx.add_argument("--target", default="INR")
    fx.add_argument("--amount", default="100000.00")
    fx.set_defaults(run=_demo)
    demo_kinds.add_parser("reset", help="remove payments, windows and tokens (banks and keys stay)").set_defaults(
        run=_demo
    )
    demo_kinds.add_parser("seed", help="demo banks, keys and schedules").set_defaults(run=_demo)
    camt = commands.add_parser("camt054", help="print a camt.054.001.08 booking a payment's fiat")
    camt.add_argument("--end-to-end-id", required=True)
    camt.add_argument("--amount", required=True)
    camt.add_argument("--currency", required=True)
    camt.add_argument("--entry-reference")
    camt.add_argument("--bank-reference")
    camt.add_argument("--status", default="BOOK", choices=["BOOK", "PDNG", "INFO"])
    camt.add_argument(
        "--debit", action="store_true", help="a DBIT: the payout of a redemption or a refund (its reference)"
    )
    camt.set_defaults(run=_camt054)
    pacs = commands.add_parser("pacs008", help="print a pacs.008.001.08 for one payment (a bank's tool)")
    pacs.add_argument("--end-to-end-id", required=True)
    pacs.add_argument("--amount", required=True)
    pacs.add_argument("--currency", required=True)
    pacs.add_argument("--debtor-name", required=True)
    pacs.add_argument("--debtor-bic", required=True)
    pacs.add_argument("--creditor-name", required=True)
    pacs.add_argument("--creditor-bic", required=True)
    for party in ("debtor", "creditor"):
        account = pacs.add_mutually_exclusive_group(required=True)
        account.add_argument(f"--{party}-iban")
        account.add_argument(f"--{party}-account", help="domestic account number (no IBAN)")
    pacs.add_argument("--remittance-info")
    pacs.add_argument("--app-header", action="store_true", help="wrap with a head.001 AppHdr")
    pacs.add_argument("--urgent", action="store_true", help="InstrPrty HIGH: settle gross, alone")
    pacs.set_defaults(run=_pacs008)
    audit = commands.add_parser("audit", help="the audit log: verify its hash chain, or seal now")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    audit_commands.add_parser("verify", help="prove the chain unbroken (exit 1 at the first break)")
    audit_commands.add_parser("seal", help="seal the committed, unsealed records now")
    audit.set_defaults(run=_audit)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
