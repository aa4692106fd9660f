"""`make bench-clearing`: how long closing a clearing window takes, next to a plain GROUP BY.

What it measures
    For 100,000 and then 1,000,000 obligations among 50 banks in 4 currencies (AED, INR,
    USD, EUR; a quarter of the obligations each), the wall time of what a clearing run does
    when it closes a window: for each currency, `close_window` in one transaction and
    `net_window` in the next (activities/clearing.py, called exactly as the activities
    call them: net positions per bank, gross/net/efficiency, one funding instruction per
    net debtor). The four currencies close one after the other; `close s` is the sum.

    The baseline is the cheapest query that still reads every obligation of the window:
    `SELECT payer_id, sum(amount) FROM obligations WHERE clearing_window_id = :w
    GROUP BY payer_id`, over the same rows, also summed over the four windows.
    `ratio` = close s / baseline s: how many plain scans-and-sums a close costs. The launch
    plan needs 100,000 obligations per cycle; the aim is 1,000,000 within about 2x.

How it is fair
    Right before each window closes, the baseline runs twice on that window's rows (the
    first run also warms the cache and sets hint bits) and the faster run counts; the close
    then runs once (a window can only close once) on the same, now warm, rows. Both go
    through the same engine and pool, and both times include the round trips.
    PostgreSQL may run the baseline as a parallel query; it cannot parallelise the
    netting statement because that statement writes (INSERT in a CTE) — part of what the
    ratio shows.

The server
    Its own embedded PostgreSQL (cli.devstack.LocalPostgres) in a temporary directory
    on a free port, durable=True: fsync, synchronous_commit and full_page_writes on, the
    same settings as `make up`, for the load and for the timings alike. The data are
    generated set-based in SQL (INSERT ... SELECT over generate_series) — payments
    (AWAITING_SETTLEMENT) and their PENDING, NET obligations, each in its currency's OPEN
    window, random payer != payee, random amounts with 2 decimals — then VACUUM ANALYZE
    and a CHECKPOINT, so neither autovacuum nor a spread checkpoint runs during the
    timings. Each size gets fresh windows (closing the 100k windows opens the ones the 1M
    set goes into); the 100k rows stay in the table. The server is stopped and its
    directory removed at the end, whatever happens.

What it checks
    Every measured result: positions sum to zero per window, match an independent
    recomputation (received - paid per bank) exactly, one funding instruction per net
    debtor for its net debit, the window's count and gross equal its obligations', the
    counts add up to N, and the baseline summed the same gross. A wrong close is not timed.

Output
    One table on stdout and clearing.json (bench/common.py `results_path`): a list of
    {"obligations", "close_seconds", "baseline_seconds", "ratio", ...} (plus netting
    efficiency, per-window figures and the server version).

Runs as root too (the server then runs as the `embedded_postgres` user).
"""

from __future__ import annotations

import asyncio
import os
import platform
import time
import uuid
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from activities.clearing import close_window, ensure_open_window, net_window
from bench.common import embedded_postgres, insert_banks, logger, print_table, results_path, write_json
from cli.devstack.postgres import ADMIN_ROLE, LocalPostgres
from deltran.db.engine import make_engine, make_session_factory

SIZES = (100_000, 1_000_000)
BANKS = 50
CURRENCIES = ("AED", "INR", "USD", "EUR")
FUNDING_TIMEOUT_S = 3600
RESULTS_NAME = "clearing"

# -- data ----------------------------------------------------------------------------------

_BANK_INDEX = text(
    """
    CREATE TEMP TABLE bench_banks AS
    SELECT (row_number() OVER (ORDER BY bic) - 1)::int AS ix, id, bic, country
    FROM participants WHERE name LIKE 'Bench Bank %'
    """
)

# One row per payment/obligation: currency round-robin (exactly N/4 each, interleaved as
# they would arrive), payer uniform, payee uniform among the other 49, 1.00 .. 100,000.00.
_DRAW = text(
    """
    CREATE TEMP TABLE bench_draw AS
    WITH p AS (SELECT CAST(:banks AS int) AS banks, CAST(:n AS int) AS n)
    SELECT g,
           gen_random_uuid() AS payment_id,
           gen_random_uuid() AS obligation_id,
           (ARRAY['AED','INR','USD','EUR'])[g % 4 + 1]::varchar(3) AS currency,
           payer_ix,
           (payer_ix + 1 + floor(random() * (banks - 1))::int) % banks AS payee_ix,
           round((1 + random() * 99999)::numeric, 2) AS amount
    FROM p, LATERAL (SELECT g, floor(random() * banks)::int AS payer_ix FROM generate_series(1, n) AS g) AS s
    """
)

_PAYMENTS = text(
    """
    INSERT INTO payments (
        id, instructing_bic, end_to_end_id, fingerprint, amount, currency,
        debtor_name, debtor_iban, debtor_account, debtor_agent_bic,
        creditor_name, creditor_iban, creditor_account, creditor_agent_bic,
        remittance_info, status, workflow_id)
    SELECT d.payment_id, pa.bic, x.e2e, md5(x.e2e) || md5(pa.bic || x.e2e), d.amount, d.currency,
           'Debtor ' || d.g,
           CASE WHEN pa.country IN ('AE', 'DE') THEN pa.country || '07' || lpad(d.g::text, 19, '0') END,
           CASE WHEN pa.country IN ('IN', 'US') THEN lpad(d.g::text, 11, '0') END,
           pa.bic,
           'Creditor ' || d.g,
           CASE WHEN pe.country IN ('AE', 'DE') THEN pe.country || '07' || lpad(d.g::text, 19, '0') END,
           CASE WHEN pe.country IN ('IN', 'US') THEN lpad(d.g::text, 11, '0') END,
           pe.bic,
           'Invoice ' || d.g, 'AWAITING_SETTLEMENT', 'payment-' || pa.bic || '-' || x.e2e
    FROM bench_draw d
    JOIN bench_banks pa ON pa.ix = d.payer_ix
    JOIN bench_banks pe ON pe.ix = d.payee_ix
    CROSS JOIN LATERAL (SELECT 'BENCH-' || :tag || '-' || d.g AS e2e) AS x
    """
)

_OBLIGATIONS = text(
    """
    INSERT INTO obligations (
        id, payment_id, payer_id, payee_id, amount, currency, status, settlement_mode, clearing_window_id)
    SELECT d.obligation_id, d.payment_id, pa.id, pe.id, d.amount, d.currency, 'PENDING', 'NET', w.id
    FROM bench_draw d
    JOIN bench_banks pa ON pa.ix = d.payer_ix
    JOIN bench_banks pe ON pe.ix = d.payee_ix
    JOIN unnest(CAST(:currencies AS varchar[]), CAST(:windows AS uuid[])) AS w(currency, id)
      ON w.currency = d.currency
    """
)

# -- measured ------------------------------------------------------------------------------

_BASELINE = text("SELECT payer_id, sum(amount) FROM obligations WHERE clearing_window_id = :w GROUP BY payer_id")

# -- checks --------------------------------------------------------------------------------

_RECOMPUTED = text(
    """
    SELECT participant_id, sum(amount) AS net FROM (
        SELECT payee_id AS participant_id, amount FROM obligations WHERE clearing_window_id = :w
        UNION ALL
        SELECT payer_id, -amount FROM obligations WHERE clearing_window_id = :w
    ) AS legs GROUP BY participant_id
    """
)


log = logger("bench-clearing")


async def load(engine: AsyncEngine, sessions: async_sessionmaker, n: int) -> dict[str, uuid.UUID]:
    """N payments and obligations into the currencies' open windows; their ids."""
    async with sessions() as session, session.begin():
        windows = {c: await ensure_open_window(session, c) for c in CURRENCIES}
    t0 = time.perf_counter()
    async with engine.connect() as conn:
        await conn.execute(_BANK_INDEX)
        await conn.execute(_DRAW, {"n": n, "banks": BANKS})
        t1 = time.perf_counter()
        await conn.execute(_PAYMENTS, {"tag": str(n)})
        t2 = time.perf_counter()
        await conn.execute(_OBLIGATIONS, {"currencies": list(windows), "windows": [windows[c] for c in windows]})
        await conn.execute(text("DROP TABLE bench_draw, bench_banks"))
        await conn.commit()
    t3 = time.perf_counter()
    log(
        f"  {n:,} payments + obligations inserted in {t3 - t0:.1f}s"
        f" (draw {t1 - t0:.1f}s, payments {t2 - t1:.1f}s, obligations {t3 - t2:.1f}s)"
    )
    t0 = time.perf_counter()
    autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
    async with autocommit.connect() as conn:
        await conn.execute(text("VACUUM (ANALYZE) payments, obligations, participants, clearing_windows"))
    log(f"  VACUUM ANALYZE in {time.perf_counter() - t0:.1f}s")
    return windows


async def checkpoint(admin: AsyncEngine) -> None:
    t0 = time.perf_counter()
    async with admin.connect() as conn:
        await conn.execute(text("CHECKPOINT"))
    log(f"  CHECKPOINT in {time.perf_counter() - t0:.1f}s")


async def time_baseline(sessions: async_sessionmaker, window_id: uuid.UUID) -> tuple[float, list]:
    async with sessions() as session:
        t0 = time.perf_counter()
        rows = (await session.execute(_BASELINE, {"w": window_id})).all()
        return time.perf_counter() - t0, rows


async def time_close(sessions: async_sessionmaker, currency: str, closed_by: str):
    """What the clearing workflow runs: close_window, then net_window, one activity
    (= one transaction) each."""
    t0 = time.perf_counter()
    async with sessions() as session, session.begin():
        window_id = await close_window(session, currency, closed_by)
    async with sessions() as session, session.begin():
        summary = await net_window(session, window_id, FUNDING_TIMEOUT_S)
    return time.perf_counter() - t0, window_id, summary


async def verify(sessions: async_sessionmaker, window_id: uuid.UUID, summary, baseline_rows: list, n: int) -> None:
    async with sessions() as session:
        count, gross = (
            await session.execute(
                text("SELECT count(*), sum(amount) FROM obligations WHERE clearing_window_id = :w"),
                {"w": window_id},
            )
        ).one()
        window = (
            await session.execute(
                text("SELECT status, obligations_count, gross_amount, net_amount FROM clearing_windows WHERE id = :w"),
                {"w": window_id},
            )
        ).one()
        stored = dict(
            (
                await session.execute(
                    text("SELECT participant_id, net_amount FROM net_positions WHERE window_id = :w"),
                    {"w": window_id},
                )
            ).all()
        )
        recomputed = dict((await session.execute(_RECOMPUTED, {"w": window_id})).all())
        instructions = dict(
            (
                await session.execute(
                    text("SELECT participant_id, amount FROM funding_instructions WHERE window_id = :w"),
                    {"w": window_id},
                )
            ).all()
        )
    assert count == n // len(CURRENCIES), (count, n)
    assert summary.obligations_count == count == window.obligations_count, (summary.obligations_count, count)
    assert summary.gross == gross == window.gross_amount, (summary.gross, gross)
    assert sum(amount for _, amount in baseline_rows) == gross, "the baseline read other rows"
    assert window.status == "AWAITING_FUNDING", window.status
    assert len(stored) == BANKS, len(stored)
    assert sum(stored.values(), Decimal(0)) == 0, "net positions do not sum to zero"
    assert stored == recomputed, "net positions differ from received - paid"
    debtors = {p: -net for p, net in stored.items() if net < 0}
    assert instructions == debtors, "funding instructions are not one per net debtor for its net debit"
    assert len(summary.instructions) == len(debtors)
    assert summary.net == sum(debtors.values(), Decimal(0)) == window.net_amount


async def bench_size(engine: AsyncEngine, admin: AsyncEngine, sessions: async_sessionmaker, n: int) -> dict:
    log(f"{n:,} obligations: generating")
    windows = await load(engine, sessions, n)
    await checkpoint(admin)
    close_total = baseline_total = 0.0
    per_window = []
    gross_total = net_total = Decimal(0)
    for currency in CURRENCIES:
        first, _ = await time_baseline(sessions, windows[currency])
        second, rows = await time_baseline(sessions, windows[currency])
        baseline_s = min(first, second)
        close_s, closed, summary = await time_close(sessions, currency, f"bench-{n}-{currency}")
        assert closed == windows[currency], (closed, windows[currency])
        await verify(sessions, closed, summary, rows, n)
        log(
            f"  {currency}: {summary.obligations_count:,} obligations, close {close_s:.3f}s"
            f" (netting {summary.netting_ms} ms), baseline {baseline_s:.3f}s"
            f" (runs {first:.3f}s, {second:.3f}s), {len(summary.instructions)} net debtors,"
            f" efficiency {summary.efficiency:.2%} — verified"
        )
        close_total += close_s
        baseline_total += baseline_s
        gross_total += summary.gross
        net_total += summary.net
        per_window.append(
            {
                "currency": currency,
                "obligations": summary.obligations_count,
                "close_seconds": round(close_s, 4),
                "netting_ms": summary.netting_ms,
                "baseline_seconds": round(baseline_s, 4),
                "net_debtors": len(summary.instructions),
                "netting_efficiency": float(summary.efficiency),
            }
        )
    # All four currencies' amounts are drawn alike, so one efficiency over them is meaningful.
    efficiency = float(1 - net_total / gross_total)
    return {
        "obligations": n,
        "close_seconds": round(close_total, 4),
        "baseline_seconds": round(baseline_total, 4),
        "ratio": round(close_total / baseline_total, 2),
        "netting_efficiency": round(efficiency, 6),
        "windows": per_window,
    }


def print_results(results: list[dict]) -> None:
    header = ("obligations", "close s", "baseline GROUP BY s", "ratio", "netting efficiency")
    rows = [
        (
            f"{r['obligations']:,}",
            f"{r['close_seconds']:.3f}",
            f"{r['baseline_seconds']:.3f}",
            f"{r['ratio']:.2f}x",
            f"{r['netting_efficiency']:.2%}",
        )
        for r in results
    ]
    print_table(header, rows)


async def run(pg: LocalPostgres) -> list[dict]:
    engine = make_engine(pg.url, pool_size=2)
    admin = create_async_engine(
        f"postgresql+asyncpg://{ADMIN_ROLE}@127.0.0.1:{pg.port}/deltran", isolation_level="AUTOCOMMIT"
    )
    sessions = make_session_factory(engine)
    try:
        async with engine.begin() as conn:
            await insert_banks(conn, BANKS, letter="B", name="Bench Bank")
            server = await conn.scalar(text("SHOW server_version"))
        results = []
        for n in SIZES:
            result = await bench_size(engine, admin, sessions, n)
            result["postgres"] = server
            results.append(result)
        return results
    finally:
        await engine.dispose()
        await admin.dispose()


def write_results(results: list[dict]) -> None:
    write_json(RESULTS_NAME, results)


def main() -> None:
    started = time.perf_counter()
    with embedded_postgres("bench-clearing") as pg:
        results = asyncio.run(run(pg))
    print_results(results)
    write_results(results)
    largest = results[-1]
    verdict = "within" if largest["ratio"] <= 2 else "NOT within"
    print(
        f"{largest['obligations']:,} obligations close in {largest['ratio']:.2f}x the baseline:"
        f" {verdict} the 2x aim. {platform.python_implementation()} {platform.python_version()},"
        f" {os.cpu_count()} CPUs, PostgreSQL {largest['postgres']}."
        f" Wrote {results_path(RESULTS_NAME)}"
        f" in {time.perf_counter() - started:.0f}s total."
    )


if __name__ == "__main__":
    main()
