"""`make bench-mint`: validated mints per second, group commit against one transaction per mint.

What it measures
    Settled gross obligations, each with its booked, matched camt.054 entry, minted with
    every validation of the token engine kept (obligation SETTLED, both references present, no
    token yet — the unique index the final guard —, the booked fiat verified against the
    obligation, the ledger postings under the accounts' CHECK constraints, the tier-a
    backing check supply <= fiat per currency inside the transaction, the circuit
    breaker), the payment then COMPLETED:
    - baseline: `TokenActivities.mint_one`, one transaction per mint (what mint_token did
      before group commit), BASELINE_CALLERS concurrent callers, BASELINE_N obligations;
    - batched: `TokenActivities.mint_token`, the activity itself, which coalesces the
      concurrent mints of the process into one transaction per batch
      (activities/tokens/batcher.py; max_batch 1,000, linger 2 ms, 3 batches in flight), BATCH_CALLERS
      (3,000) concurrent callers, BATCH_N obligations. 3,000 is the concurrency a worker
      needs for 10,000 mints/s when a mint takes ~0.3 s end to end (Little's law):
      a minting worker runs with DELTRAN_WORKER_MAX_CONCURRENT_ACTIVITIES=3000 (the
      default of 100 suits a worker that does everything). The process runs under the
      worker's garbage-collector settings (deltran/gc_tuning.py).
    mints/s = obligations / wall time from the first call to the last result, in the same
    run, on the same server, over the same data set (disjoint obligations of it). The
    baseline mints fewer (5,000 against 100,000; BENCH_MINT_BASELINE_N, BENCH_MINT_N,
    BENCH_MINT_BASELINE_CALLERS, BENCH_MINT_CALLERS override) because it is slow: every
    mint holds its three accounts' row locks through a durable commit, and 50 banks'
    accounts are shared by all mints.

The server
    Its own embedded PostgreSQL (cli.devstack.LocalPostgres) in a temporary directory
    on a free port, durable=True (fsync, synchronous_commit, full_page_writes on, as for
    `make up`): every batch and every baseline mint is a durable commit. The data are
    generated set-based in SQL (INSERT ... SELECT over generate_series): 50 banks with
    their fiat and token accounts in AED, INR, USD and EUR, the payments (SETTLED), their
    obligations (SETTLED, GROSS, with both references) and one booked camt.054 credit per
    payment (MATCHED), random payer != payee and amounts; then VACUUM ANALYZE and a
    CHECKPOINT. Stopped and removed at the end, whatever happens.

What it checks
    After both runs: exactly one token per obligation minted (no duplicates), every
    result's token is the one stored, every payment COMPLETED, no account below zero, and
    per currency token supply == fiat ledger == booked fiat minted (the monitor's tier-b
    query finds no break). No batch failed (a failure would fall back to one by one).

Output
    A table on stdout and mint.json (bench/common.py `results_path`): {"mints_per_s", "baseline_per_s",
    "ratio", ...} (plus callers, counts, batch sizes and the server version).
"""

from __future__ import annotations

import asyncio
import os
import platform
import time
import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from activities.tokens import TokenActivities
from bench.common import embedded_postgres, insert_banks, logger, print_table, results_path, write_json
from cli.devstack.postgres import ADMIN_ROLE, LocalPostgres
from deltran import gc_tuning, reconciliation
from deltran.config import get_settings
from deltran.db.engine import make_engine, make_session_factory
from deltran.shared import MintInput, MintResult

BASELINE_N = int(os.environ.get("BENCH_MINT_BASELINE_N", 5_000))
BATCH_N = int(os.environ.get("BENCH_MINT_N", 100_000))
BASELINE_CALLERS = int(os.environ.get("BENCH_MINT_BASELINE_CALLERS", 50))
BATCH_CALLERS = int(os.environ.get("BENCH_MINT_CALLERS", 3000))
BANKS = 50
CURRENCIES = ("AED", "INR", "USD", "EUR")
TARGET = 10_000
RESULTS_NAME = "mint"

# -- data ----------------------------------------------------------------------------------

_ACCOUNTS = text(
    """
    INSERT INTO accounts (id, participant_id, currency, kind)
    SELECT gen_random_uuid(), p.id, c, k FROM participants p,
           unnest(CAST(:currencies AS varchar[])) AS c, unnest(ARRAY['fiat', 'token']) AS k
    """
)

_DRAW = text(
    """
    CREATE TEMP TABLE bench_draw AS
    WITH banks AS (SELECT (row_number() OVER (ORDER BY bic) - 1)::int AS ix, id, bic, country FROM participants),
         n AS (SELECT CAST(:n AS int) AS n, CAST(:banks AS int) AS banks)
    SELECT g, gen_random_uuid() AS payment_id, gen_random_uuid() AS obligation_id,
           (ARRAY['AED','INR','USD','EUR'])[g % 4 + 1]::varchar(3) AS currency,
           pa.id AS payer_id, pa.bic AS payer_bic, pa.country AS payer_country,
           pe.id AS payee_id, pe.bic AS payee_bic, pe.country AS payee_country,
           round((1 + random() * 99999)::numeric, 2) AS amount,
           'BENCH-MINT-' || g AS e2e, 'NTRY-BENCH-MINT-' || g AS entry_reference
    FROM n, LATERAL (
        SELECT g, floor(random() * banks)::int AS payer_ix, floor(random() * (banks - 1))::int AS offset_ix
        FROM generate_series(1, n) AS g
    ) AS s
    JOIN banks pa ON pa.ix = s.payer_ix
    JOIN banks pe ON pe.ix = (s.payer_ix + 1 + s.offset_ix) % (SELECT banks FROM n)
    """
)

_PAYMENTS = text(
    """
    INSERT INTO payments (
        id, instructing_bic, end_to_end_id, fingerprint, amount, currency,
        debtor_name, debtor_iban, debtor_account, debtor_agent_bic,
        creditor_name, creditor_iban, creditor_account, creditor_agent_bic,
        remittance_info, status, workflow_id)
    SELECT payment_id, payer_bic, e2e, md5(e2e) || md5(payer_bic || e2e), amount, currency,
           'Debtor ' || g,
           CASE WHEN payer_country IN ('AE', 'DE') THEN payer_country || '07' || lpad(g::text, 19, '0') END,
           CASE WHEN payer_country IN ('IN', 'US') THEN lpad(g::text, 11, '0') END,
           payer_bic,
           'Creditor ' || g,
           CASE WHEN payee_country IN ('AE', 'DE') THEN payee_country || '07' || lpad(g::text, 19, '0') END,
           CASE WHEN payee_country IN ('IN', 'US') THEN lpad(g::text, 11, '0') END,
           payee_bic,
           'Invoice ' || g, 'SETTLED', 'payment-' || payer_bic || '-' || e2e
    FROM bench_draw
    """
)

_OBLIGATIONS = text(
    """
    INSERT INTO obligations (
        id, payment_id, payer_id, payee_id, amount, currency, status, settlement_mode,
        settled_at, bank_confirmation_reference, camt054_entry_reference)
    SELECT obligation_id, payment_id, payer_id, payee_id, amount, currency, 'SETTLED', 'GROSS',
           now(), 'BR-' || entry_reference, entry_reference
    FROM bench_draw
    """
)

_MESSAGE = text(
    """
    INSERT INTO camt054_messages (id, message_id, body_sha256, body)
    VALUES (CAST(:id AS uuid), 'BENCH-MINT', repeat('0', 64), '<Document/>')
    """
)

_NOTIFICATIONS = text(
    """
    INSERT INTO bank_notifications (
        id, message_row_id, account, entry_reference, tx_index, end_to_end_id, bank_reference,
        amount, currency, credit_debit, entry_status, reversal, booking_date, outcome, payment_id)
    SELECT gen_random_uuid(), CAST(:message AS uuid), 'AE070331234567890123456', entry_reference, 0, e2e,
           'BR-' || entry_reference, amount, currency, 'CRDT', 'BOOK', false, current_date, 'MATCHED', payment_id
    FROM bench_draw
    """
)

# -- checks --------------------------------------------------------------------------------

_CHECK = text(
    """
    SELECT (SELECT count(*) FROM tokens) AS tokens,
           (SELECT count(DISTINCT obligation_id) FROM tokens) AS distinct_obligations,
           (SELECT count(*) FROM obligations) AS obligations,
           (SELECT count(*) FROM payments WHERE status <> 'COMPLETED') AS not_completed,
           (SELECT count(*) FROM accounts
             WHERE (kind IN ('token', 'reserved', 'paid_out') AND credits_posted < debits_posted)
                OR (kind = 'fiat' AND debits_posted < credits_posted)) AS negative_accounts,
           (SELECT count(*) FROM ledger_transfers) AS transfers
    """
)

_TOKENS_OF = text("SELECT obligation_id, id FROM tokens")


log = logger("bench-mint")


async def load(engine: AsyncEngine, n: int) -> list[MintInput]:
    t0 = time.perf_counter()
    async with engine.begin() as conn:
        await insert_banks(conn, BANKS, letter="M", name="Mint Bench Bank")
        await conn.execute(_ACCOUNTS, {"currencies": list(CURRENCIES)})
        await conn.execute(_DRAW, {"n": n, "banks": BANKS})
        await conn.execute(_PAYMENTS)
        await conn.execute(_OBLIGATIONS)
        message = uuid.uuid4()
        await conn.execute(_MESSAGE, {"id": message})
        await conn.execute(_NOTIFICATIONS, {"message": message})
        rows = (await conn.execute(text("SELECT payment_id, obligation_id FROM bench_draw ORDER BY g"))).all()
        await conn.execute(text("DROP TABLE bench_draw"))
    log(f"  {n:,} settled obligations with their booked camt.054 entries in {time.perf_counter() - t0:.1f}s")
    t0 = time.perf_counter()
    autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
    async with autocommit.connect() as conn:
        await conn.execute(
            text(
                "VACUUM (ANALYZE) participants, accounts, payments, obligations, bank_notifications,"
                " tokens, ledger_transfers"
            )
        )
    log(f"  VACUUM ANALYZE in {time.perf_counter() - t0:.1f}s")
    return [MintInput(payment_id=p, obligation_id=o) for p, o in rows]


async def checkpoint(admin: AsyncEngine) -> None:
    t0 = time.perf_counter()
    async with admin.connect() as conn:
        await conn.execute(text("CHECKPOINT"))
    log(f"  CHECKPOINT in {time.perf_counter() - t0:.1f}s")


async def drive(mint, inputs: list[MintInput], callers: int) -> tuple[float, dict]:
    """`callers` concurrent callers, each minting the next obligation until none is left."""
    queue = iter(inputs)
    results: dict[uuid.UUID, MintResult] = {}

    async def caller() -> None:
        for data in queue:
            results[data.obligation_id] = await mint(data)

    t0 = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return time.perf_counter() - t0, results


async def verify(engine: AsyncEngine, results: dict[uuid.UUID, MintResult], n: int) -> dict:
    async with engine.connect() as conn:
        check = (await conn.execute(_CHECK)).one()
        stored = dict((await conn.execute(_TOKENS_OF)).all())
    async with make_session_factory(engine)() as session:
        backing = await reconciliation.backing_by_currency(session)
    assert check.obligations == n, check
    assert check.tokens == check.distinct_obligations == n, f"not exactly one token per obligation: {check}"
    assert check.not_completed == 0, check
    assert check.negative_accounts == 0, check
    assert check.transfers == 2 * n, check
    assert stored == {o: r.token_id for o, r in results.items()}, "a result differs from the stored token"
    for currency, b in backing.items():
        assert not b.breaks(), (currency, b.breaks())
        assert b.token_supply == b.token_balances == b.fiat_ledger == b.fiat_booked, b
    return {c: str(b.token_supply) for c, b in backing.items()}


async def run(pg: LocalPostgres) -> dict:
    engine = make_engine(pg.url, pool_size=max(BASELINE_CALLERS, 10))
    admin = create_async_engine(
        f"postgresql+asyncpg://{ADMIN_ROLE}@127.0.0.1:{pg.port}/deltran", isolation_level="AUTOCOMMIT"
    )
    sessions = make_session_factory(engine)
    try:
        async with engine.connect() as conn:
            server = await conn.scalar(text("SHOW server_version"))
        n = BASELINE_N + BATCH_N
        log(f"generating {n:,} obligations ({BASELINE_N:,} for the baseline, {BATCH_N:,} batched)")
        inputs = await load(engine, n)
        await checkpoint(admin)
        baseline_inputs, batch_inputs = inputs[:BASELINE_N], inputs[BASELINE_N:]
        # Both paths run under the worker's garbage-collector settings (deltran/gc_tuning.py).
        gc_tuning.tune(get_settings().gc_gen0_threshold)
        engine_one = TokenActivities(sessions)

        async def one(data: MintInput) -> MintResult:
            result, _ = await engine_one.mint_one(data)
            return result

        # Warm both paths (prepared statements, pool) on a few obligations of each set.
        await drive(one, baseline_inputs[:100], BASELINE_CALLERS)
        log(f"baseline: {BASELINE_N:,} mints, one transaction each, {BASELINE_CALLERS} concurrent callers")
        baseline_s, results = await drive(one, baseline_inputs, BASELINE_CALLERS)
        baseline_per_s = BASELINE_N / baseline_s
        log(f"  {baseline_s:.2f}s: {baseline_per_s:,.0f} mints/s")

        tokens = TokenActivities(sessions)
        log(f"batched: {BATCH_N:,} mints through the batcher, {BATCH_CALLERS} concurrent callers")
        batch_s, batch_results = await drive(tokens.mint_token, batch_inputs, BATCH_CALLERS)
        per_s = BATCH_N / batch_s
        batcher = tokens.batcher
        log(
            f"  {batch_s:.2f}s: {per_s:,.0f} mints/s in {batcher.batches:,} batches"
            f" (mean {BATCH_N / batcher.batches:.0f}, largest {batcher.largest_batch}), {batcher.batch_failures} failed"
        )
        assert batcher.batch_failures == 0, "a batch failed and fell back to one by one"
        results.update(batch_results)
        supply = await verify(engine, results, n)
        log(f"verified: {n:,} tokens, one per obligation; supply == fiat per currency; no balance below zero")
        return {
            "mints_per_s": round(per_s, 1),
            "baseline_per_s": round(baseline_per_s, 1),
            "ratio": round(per_s / baseline_per_s, 2),
            "batched": {
                "mints": BATCH_N,
                "seconds": round(batch_s, 3),
                "callers": BATCH_CALLERS,
                "batches": batcher.batches,
                "mean_batch": round(BATCH_N / batcher.batches, 1),
                "largest_batch": batcher.largest_batch,
                "max_batch": batcher.max_batch,
                "linger_ms": batcher.linger_s * 1000,
            },
            "baseline": {"mints": BASELINE_N, "seconds": round(baseline_s, 3), "callers": BASELINE_CALLERS},
            "target_per_s": TARGET,
            "token_supply": supply,
            "postgres": server,
            "durable": True,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        }
    finally:
        await engine.dispose()
        await admin.dispose()


def print_results(r: dict) -> None:
    header = ("path", "mints", "callers", "seconds", "mints/s", "vs baseline")
    rows = [
        (
            "one transaction per mint",
            f"{r['baseline']['mints']:,}",
            str(r["baseline"]["callers"]),
            f"{r['baseline']['seconds']:.2f}",
            f"{r['baseline_per_s']:,.0f}",
            "1.00x",
        ),
        (
            f"group commit (mean batch {r['batched']['mean_batch']:.0f})",
            f"{r['batched']['mints']:,}",
            str(r["batched"]["callers"]),
            f"{r['batched']['seconds']:.2f}",
            f"{r['mints_per_s']:,.0f}",
            f"{r['ratio']:.2f}x",
        ),
    ]
    print_table(header, rows, label_first=True)


def write_results(result: dict) -> None:
    write_json(RESULTS_NAME, result)


def main() -> None:
    started = time.perf_counter()
    with embedded_postgres("bench-mint") as pg:
        result = asyncio.run(run(pg))
    print_results(result)
    write_results(result)
    verdict = "reaches" if result["mints_per_s"] >= TARGET else "does NOT reach"
    print(
        f"Group commit mints {result['mints_per_s']:,.0f}/s, {result['ratio']:.1f}x one transaction per mint:"
        f" it {verdict} the plan's {TARGET:,} mints/s. {platform.python_implementation()} {platform.python_version()},"
        f" {os.cpu_count()} CPUs, PostgreSQL {result['postgres']} (durable)."
        f" Wrote {results_path(RESULTS_NAME)}"
        f" in {time.perf_counter() - started:.0f}s total."
    )


if __name__ == "__main__":
    main()
