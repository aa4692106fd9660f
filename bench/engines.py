"""`make bench-engines`: each engine's step alone against PostgreSQL, payments/s per core
next to the plan's per-engine figures, and the slowest engine named.

What it measures
    The engines' own code, called directly as the worker's activities (and the API's
    intake) call it, without Temporal or HTTP in between: a payment is submitted
    (`deltran.intake.payments.submit_payments`, one payment per message as the JSON API
    sends it), screened (`screen_payment`), routed by the liquidity router and assessed by
    the risk engine (each also alone, read-only, before the obligation), made an
    obligation (`create_obligation`, which routes and assesses in its own transaction),
    booked by a camt.054 (`receive_camt054` on the parsed, XSD-validated message, one
    entry per message), settled (`settle_obligation`), minted (`mint_token`, through the
    worker's group-commit batcher) and checked by the account monitor's tier a (token
    supply <= booked fiat, what every mint runs). A stand-in for the Temporal client
    records the workflow starts and the camt.054 signals; the bookings it records are
    what the settlement step is given, as the workflow would be.

    Each step runs alone over the same N payments (BENCH_ENGINES_N, default 3,000), from
    CALLERS concurrent callers (BENCH_ENGINES_CALLERS, default 64, the order of a
    worker's concurrent activities), after a warm-up of the whole pipeline on other
    payments (connections, prepared statements, caches). The payments are urgent (gross:
    settled by their own camt.054), AED, from the four UAE demo banks to the four Indian
    ones, each from its own debtor account (the risk engine counts a debtor's recent
    payments); an AED clearing window is open and the UAE banks have net debit caps, so
    the router takes the window's share lock and the risk engine alone runs its cap check
    under its advisory lock, as for a net payment.

    payments/s = payments / wall time of the step. CPU = this process's CPU time plus
    every PostgreSQL process's (the postmaster, its live children and the children it
    reaped, from /proc), over the step; cores = CPU / wall; payments/s per core =
    payments / CPU. The plan's figures are for the whole system (any number of cores);
    they are printed beside the per-core figures so the gap is visible, not because
    they are the same unit.

The server
    Its own embedded PostgreSQL, durable (fsync and synchronous commit on, as for `make
    up`), migrated and seeded with the demo banks (bench/common.py `embedded_postgres`),
    in a temporary directory removed at the end. The process runs under the worker's
    garbage-collector settings (deltran/gc_tuning.py).

What it checks
    At the end: every payment passed compliance, has one GROSS obligation, SETTLED, one
    MATCHED camt.054 entry, one token, and is COMPLETED; no account below zero; per
    currency token supply == fiat ledger == booked fiat (the monitor's tier b finds no
    break).

Output
    A table on stdout and engines.json (bench/common.py `results_path`): a list of
    {"engine", "per_s", "cores", "plan_per_s", "per_core_per_s", "plan_engine",
    "payments", "seconds", "cpu_s": {"bench", "postgres"}}.
"""

from __future__ import annotations

import asyncio
import os
import platform
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

from schwifty import IBAN
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import async_sessionmaker
from temporalio.client import Client

from activities import liquidity, risk
from activities.compliance import ComplianceActivities
from activities.obligations import ObligationActivities
from activities.settlement import SettlementActivities
from activities.tokens import TokenActivities
from bench.common import (
    embedded_postgres,
    logger,
    postmaster_pid,
    print_table,
    process_tree_cpu_s,
    results_path,
    write_json,
)
from cli.demo import IBANS
from cli.devstack.postgres import LocalPostgres
from deltran import gc_tuning, ledger, reconciliation
from deltran.config import Settings, get_settings
from deltran.db.engine import make_engine, make_session_factory
from deltran.db.payment_rows import agents_of
from deltran.db.tables import ClearingWindow, NetDebitCap, Participant, Payment
from deltran.intake.camt054 import receive_camt054
from deltran.intake.payments import NewPayment, submit_payments
from deltran.iso20022.camt054 import BookingSpec, build_camt054, parse_camt054
from deltran.participants import seed_demo
from deltran.shared import FiatBooking, MintInput, ObligationCreated, SettleInput
from deltran.vocabulary import SettlementMode

N = int(os.environ.get("BENCH_ENGINES_N", 3_000))
CALLERS = int(os.environ.get("BENCH_ENGINES_CALLERS", 64))
WARM_UP = 300
CURRENCY = "AED"
PAYERS = ("EBILAEAD", "NBADAEAA", "ADCBAEAA", "MASHAEAD")
PAYEES = ("SBININBB", "HDFCINBB", "ICICINBB", "UTIBINBB")
ACTOR = "bench-engines"
RESULTS_NAME = "engines"

log = logger("bench-engines")


# -- the plan's figures (whole-system TPS per engine) ------------------------------------------


@dataclass(frozen=True)
class Engine:
    name: str  # the row's label and the JSON's "engine"
    plan_engine: str | None  # the plan's engine it stands for
    plan_per_s: int | None


GATEWAY = Engine("payment intake (no HTTP)", "Gateway", 5_000)
COMPLIANCE = Engine("compliance", "Compliance", 3_000)
ROUTER = Engine("liquidity router", "Liquidity Router", 2_000)
RISK = Engine("risk", "Risk", 1_500)
OBLIGATION = Engine("obligation (with risk and routing)", "Obligation", 4_000)
CAMT054 = Engine("camt.054 intake", None, None)
SETTLEMENT = Engine("settlement", "Settlement", 1_000)
TOKENS = Engine("minting", "Token Engine", 10_000)
MONITOR = Engine("account monitor (tier a)", "Account Monitor", 500)


# -- the Temporal client's stand-in ----------------------------------------------------------


@dataclass
class RecordingTemporal:
    """Records what the intakes ask of Temporal: the workflows started and the camt.054
    bookings signalled, by workflow id."""

    started: set[str] = field(default_factory=set)
    bookings: dict[str, FiatBooking] = field(default_factory=dict)

    async def start_workflow(self, run: Any, data: Any, *, id: str, **_: Any) -> None:  # noqa: A002 -- Client's name
        self.started.add(id)

    def get_workflow_handle(self, workflow_id: str) -> _RecordingHandle:
        return _RecordingHandle(self, workflow_id)


@dataclass
class _RecordingHandle:
    temporal: RecordingTemporal
    workflow_id: str

    async def signal(self, signal: Any, arg: Any) -> None:
        assert isinstance(arg, FiatBooking), f"unexpected signal {signal} for {self.workflow_id}"
        self.temporal.bookings[self.workflow_id] = arg


# -- the payments ----------------------------------------------------------------------------


def new_payments(count: int, tag: str) -> list[NewPayment]:
    """Urgent AED payments UAE → India, each from its own registry-valid debtor IBAN."""
    bank_codes = {bic: IBAN(IBANS[bic]).bank_code for bic in PAYERS}
    payments = []
    for i in range(count):
        payer, payee = PAYERS[i % len(PAYERS)], PAYEES[(i // len(PAYERS)) % len(PAYEES)]
        payments.append(
            NewPayment(
                instructing_bic=payer,
                end_to_end_id=f"ENG-{tag}-{i}",
                amount=Decimal(1_000 + (i * 7919) % 99_000) + Decimal("0.25"),
                currency=CURRENCY,
                debtor_name=f"Al Noor Trading {tag} {i}",
                debtor_iban=str(IBAN.generate("AE", bank_code=bank_codes[payer], account_code=f"{i:016d}")),
                debtor_account=None,
                debtor_agent_bic=payer,
                creditor_name=f"Mumbai Textiles {tag} {i}",
                creditor_iban=None,
                creditor_account=f"{i:012d}",
                creditor_agent_bic=payee,
                remittance_info=f"Invoice {tag}-{i}",
                urgent=True,
            )
        )
    return payments


@dataclass
class Flow:
    """One payment as it goes through the steps."""

    new: NewPayment
    payment_id: uuid.UUID | None = None
    workflow_id: str | None = None
    obligation_id: uuid.UUID | None = None
    camt054: bytes | None = None


# -- a step under measurement ------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    engine: Engine
    payments: int
    seconds: float
    bench_cpu_s: float
    postgres_cpu_s: float

    @property
    def per_s(self) -> float:
        return self.payments / self.seconds

    @property
    def cpu_s(self) -> float:
        return self.bench_cpu_s + self.postgres_cpu_s

    @property
    def cores(self) -> float:
        return self.cpu_s / self.seconds

    @property
    def per_core_per_s(self) -> float:
        return self.payments / self.cpu_s

    def as_json(self) -> dict:
        return {
            "engine": self.engine.name,
            "per_s": round(self.per_s, 1),
            "cores": round(self.cores, 2),
            "plan_per_s": self.engine.plan_per_s,
            "per_core_per_s": round(self.per_core_per_s, 1),
            "plan_engine": self.engine.plan_engine,
            "payments": self.payments,
            "seconds": round(self.seconds, 3),
            "cpu_s": {"bench": round(self.bench_cpu_s, 3), "postgres": round(self.postgres_cpu_s, 3)},
        }


async def drive(step: Callable[[Flow], Awaitable[None]], flows: Sequence[Flow], callers: int) -> None:
    """`callers` concurrent callers, each taking the next payment until none is left."""
    queue = iter(flows)

    async def caller() -> None:
        for flow in queue:
            await step(flow)

    await asyncio.gather(*(caller() for _ in range(callers)))


class Steps:
    """The engines' steps over one payment each, with what they hand to the next step."""

    def __init__(self, sessions: async_sessionmaker, settings: Settings, window_id: uuid.UUID) -> None:
        self.sessions = sessions
        self.settings = settings
        self.window_id = window_id
        self.temporal = RecordingTemporal()
        self.client = cast(Client, self.temporal)
        self.compliance = ComplianceActivities(sessions, settings)
        self.obligations = ObligationActivities(sessions, settings)
        self.settlement = SettlementActivities(sessions)
        self.tokens = TokenActivities(sessions)

    async def intake(self, flow: Flow) -> None:
        async with self.sessions() as session:
            (accepted,) = await submit_payments(session, self.client, self.settings, [flow.new], actor=ACTOR)
        assert accepted.created, accepted
        flow.payment_id, flow.workflow_id = accepted.payment_id, accepted.workflow_id

    async def screen(self, flow: Flow) -> None:
        assert flow.payment_id is not None
        outcome = await self.compliance.screen_payment(flow.payment_id)
        assert outcome.passed, (flow.new.end_to_end_id, outcome)

    async def _payment(self, session, flow: Flow) -> Payment:
        payment = await session.scalar(select(Payment).where(Payment.id == flow.payment_id))
        assert payment is not None
        return payment

    async def route(self, flow: Flow) -> None:
        """What create_obligation asks the router, in a transaction of its own."""
        async with self.sessions() as session, session.begin():
            payment = await self._payment(session, flow)
            decision = await liquidity.route_payment(session, payment, self.settings)
        assert decision.mode == SettlementMode.GROSS, decision

    async def assess(self, flow: Flow) -> None:
        """The risk engine on the payment as if it were netted in the open window: the
        velocity count and the net debit cap under its advisory lock."""
        async with self.sessions() as session, session.begin():
            payment = await self._payment(session, flow)
            agents = await agents_of(session, payment)
            assessment = await risk.assess(session, payment, agents, self.window_id, self.settings)
        assert assessment.breach is None, assessment

    async def oblige(self, flow: Flow) -> None:
        assert flow.payment_id is not None
        outcome = await self.obligations.create_obligation(flow.payment_id)
        assert isinstance(outcome, ObligationCreated) and outcome.settlement_mode == SettlementMode.GROSS, outcome
        flow.obligation_id = outcome.obligation_id

    async def book(self, flow: Flow) -> None:
        assert flow.camt054 is not None
        message = parse_camt054(flow.camt054, max_bytes=self.settings.max_body_bytes)
        async with self.sessions() as session:
            (entry,) = await receive_camt054(session, self.client, message, flow.camt054, actor=ACTOR)
        assert entry.outcome == "MATCHED" and not entry.duplicate, (entry.outcome, entry.detail)

    async def settle(self, flow: Flow) -> None:
        assert flow.payment_id is not None and flow.obligation_id is not None and flow.workflow_id is not None
        booking = self.temporal.bookings[flow.workflow_id]
        await self.settlement.settle_obligation(
            SettleInput(payment_id=flow.payment_id, obligation_id=flow.obligation_id, booking=booking)
        )

    async def mint(self, flow: Flow) -> None:
        assert flow.payment_id is not None and flow.obligation_id is not None
        await self.tokens.mint_token(MintInput(payment_id=flow.payment_id, obligation_id=flow.obligation_id))

    async def check_backing(self, flow: Flow) -> None:
        async with self.sessions() as session, session.begin():
            problems = await ledger.backing_problems(session, [CURRENCY])
        assert not problems, problems

    def pipeline(self) -> list[tuple[Engine, Callable[[Flow], Awaitable[None]]]]:
        return [
            (GATEWAY, self.intake),
            (COMPLIANCE, self.screen),
            (ROUTER, self.route),
            (RISK, self.assess),
            (OBLIGATION, self.oblige),
            (CAMT054, self.book),
            (SETTLEMENT, self.settle),
            (TOKENS, self.mint),
            (MONITOR, self.check_backing),
        ]


def camt054_for(flow: Flow) -> bytes:
    """The settlement agent's notification booking the payment's fiat: one entry."""
    new = flow.new
    return build_camt054(
        [
            BookingSpec(
                end_to_end_id=new.end_to_end_id,
                amount=new.amount,
                currency=new.currency,
                entry_reference=f"NTRY-{new.end_to_end_id}",
                bank_reference=f"BR-{new.end_to_end_id}",
            )
        ],
        message_id=f"MSG-{new.end_to_end_id}",
    )


async def run_pipeline(steps: Steps, flows: list[Flow], callers: int, postmaster: int) -> list[Measured]:
    measured = []
    for engine, step in steps.pipeline():
        if engine is CAMT054:  # the bank's messages exist before DelTran receives them
            for flow in flows:
                flow.camt054 = camt054_for(flow)
        cpu0, pg0, t0 = time.process_time(), process_tree_cpu_s(postmaster), time.perf_counter()
        await drive(step, flows, callers)
        seconds = time.perf_counter() - t0
        measured.append(
            Measured(
                engine,
                len(flows),
                seconds,
                bench_cpu_s=time.process_time() - cpu0,
                postgres_cpu_s=process_tree_cpu_s(postmaster) - pg0,
            )
        )
    return measured


# -- setup and checks ------------------------------------------------------------------------


async def prepare(sessions: async_sessionmaker) -> uuid.UUID:
    """The demo banks, an open AED window and net debit caps for the payers that no
    benchmark payment comes near. Returns the window's id."""
    with tempfile.TemporaryDirectory(prefix="deltran-bench-engines-") as home:
        await seed_demo(sessions, Path(home) / "credentials.json")
    async with sessions() as session, session.begin():
        window = ClearingWindow(currency=CURRENCY)
        session.add(window)
        payers = (await session.scalars(select(Participant.id).where(Participant.bic.in_(PAYERS)))).all()
        session.add_all(NetDebitCap(participant_id=p, currency=CURRENCY, cap=Decimal("1e12")) for p in payers)
        await session.flush()
        return window.id


_CHECK = text(
    """
    SELECT (SELECT count(*) FROM payments) AS payments,
           (SELECT count(*) FROM payments WHERE status <> 'COMPLETED') AS not_completed,
           (SELECT count(*) FROM compliance_results WHERE passed) AS screened_passed,
           (SELECT count(*) FROM obligations WHERE status = 'SETTLED' AND settlement_mode = 'GROSS') AS settled_gross,
           (SELECT count(*) FROM obligations) AS obligations,
           (SELECT count(*) FROM bank_notifications WHERE outcome = 'MATCHED') AS matched_entries,
           (SELECT count(*) FROM bank_notifications) AS entries,
           (SELECT count(*) FROM tokens) AS tokens,
           (SELECT count(DISTINCT obligation_id) FROM tokens) AS distinct_obligations,
           (SELECT count(*) FROM accounts
             WHERE (kind IN ('token', 'reserved', 'paid_out') AND credits_posted < debits_posted)
                OR (kind = 'fiat' AND debits_posted < credits_posted)) AS negative_accounts
    """
)


async def verify(sessions: async_sessionmaker, total: int) -> dict[str, str]:
    async with sessions() as session:
        check = (await session.execute(_CHECK)).one()
        backing = await reconciliation.backing_by_currency(session)
    assert check.payments == total and check.not_completed == 0, check
    assert check.screened_passed == check.obligations == check.settled_gross == total, check
    assert check.matched_entries == check.entries == total, check
    assert check.tokens == check.distinct_obligations == total, f"not exactly one token per obligation: {check}"
    assert check.negative_accounts == 0, check
    for currency, b in backing.items():
        assert not b.breaks(), (currency, b.breaks())
        assert b.token_supply == b.token_balances == b.fiat_ledger == b.fiat_booked, b
    return {c: str(b.token_supply) for c, b in backing.items()}


async def run(pg: LocalPostgres) -> dict:
    settings = get_settings()
    engine = make_engine(pg.socket_url, pool_size=CALLERS)
    sessions = make_session_factory(engine)
    try:
        async with engine.connect() as conn:
            server = await conn.scalar(text("SHOW server_version"))
        window_id = await prepare(sessions)
        gc_tuning.tune(settings.gc_gen0_threshold)
        steps = Steps(sessions, settings, window_id)
        postmaster = postmaster_pid(pg)
        log(f"warm-up: {WARM_UP} payments through every step")
        await run_pipeline(steps, [Flow(p) for p in new_payments(WARM_UP, "WARM")], CALLERS, postmaster)
        log(f"measuring: {N:,} payments, each step alone, {CALLERS} concurrent callers")
        measured = await run_pipeline(steps, [Flow(p) for p in new_payments(N, "RUN")], CALLERS, postmaster)
        for m in measured:
            log(f"  {m.engine.name}: {m.per_s:,.0f}/s on {m.cores:.2f} cores, {m.per_core_per_s:,.0f}/s per core")
        supply = await verify(sessions, WARM_UP + N)
        log(f"verified: {WARM_UP + N:,} payments COMPLETED, one token each; supply == booked fiat; no balance < 0")
        return {
            "engines": [m.as_json() for m in measured],
            "callers": CALLERS,
            "payments": N,
            "token_supply": supply,
            "postgres": server,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        }
    finally:
        await engine.dispose()


def print_results(engines: list[dict]) -> None:
    header = ("engine", "payments/s", "cores", "per core/s", "plan", "plan TPS")
    rows = [
        (
            e["engine"],
            f"{e['per_s']:,.0f}",
            f"{e['cores']:.2f}",
            f"{e['per_core_per_s']:,.0f}",
            e["plan_engine"] or "-",
            f"{e['plan_per_s']:,}" if e["plan_per_s"] else "-",
        )
        for e in engines
    ]
    print_table(header, rows, label_first=True)


def main() -> None:
    started = time.perf_counter()
    with embedded_postgres("bench-engines") as pg:
        result = asyncio.run(run(pg))
    engines = result["engines"]
    print_results(engines)
    write_json(RESULTS_NAME, engines)
    slowest = min(engines, key=lambda e: e["per_core_per_s"])
    print(
        f"Slowest engine per core: {slowest['engine']}, {slowest['per_core_per_s']:,.0f} payments/s per core"
        f" ({slowest['per_s']:,.0f}/s on {slowest['cores']:.2f} cores). {result['payments']:,} payments,"
        f" {result['callers']} callers; {platform.python_implementation()} {result['python']},"
        f" {result['cpus']} CPUs, PostgreSQL {result['postgres']} (durable)."
        f" Wrote {results_path(RESULTS_NAME)} in {time.perf_counter() - started:.0f}s total."
    )


if __name__ == "__main__":
    main()
