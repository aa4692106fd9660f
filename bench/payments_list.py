"""`make bench-list`: GET /v1/payments' page query at a million payments.

Its own embedded PostgreSQL (durable, migrated), filled with `BENCH_LIST_N` payments
(1,000,000) between 40 banks over a year (one every 30 s; statuses and currencies mixed as
a live system's would be), then ANALYZEd. Each case is the API's own page query
(api/payment_views.py `page_of_payments`), run `BENCH_LIST_REPEAT` times (20) after a
warm-up; the baseline is the same query in the same run with migration 0009's indexes
dropped inside its (rolled back) transaction: what the listing would cost without them,
every other index in place. Prints median and p95 per case and writes `payments-list.json`
(bench/common.py `results_path`).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from api import cursor
from api.payment_views import PageQuery, page_of_payments
from bench.common import embedded_postgres, logger, print_table, write_json
from deltran.db.engine import make_engine

N = int(os.environ.get("BENCH_LIST_N", "1000000"))
REPEAT = int(os.environ.get("BENCH_LIST_REPEAT", "20"))
BANKS = 40
START = datetime(2026, 1, 1, tzinfo=UTC)
STEP_S = 30
LISTING_INDEXES = ("ix_payments_debtor_listing", "ix_payments_creditor_listing", "ix_payments_listing")
log = logger("bench-list")

# Payment i: debtor bank i % 40, creditor bank (i + 1 + i / 40 % 39) % 40 (never the
# debtor), created START + 30 s * i; each bank's payments mixed over the currencies and
# the states (94 % COMPLETED, 3 % REJECTED, 1 % EXPIRED, 2 % AWAITING_SETTLEMENT).
_FILL = text(
    """
    INSERT INTO payments (id, instructing_bic, end_to_end_id, fingerprint, amount, currency,
        debtor_name, debtor_iban, debtor_agent_bic, creditor_name, creditor_account, creditor_agent_bic,
        status, workflow_id, created_at, updated_at)
    SELECT gen_random_uuid(), d.bic, 'BL-' || i, md5(i::text) || md5(i::text), 100 + i % 9000,
           (ARRAY['AED','INR','USD','EUR'])[(i / :banks) % 4 + 1],
           'Debtor ' || i, 'AE070331234567890123456', d.bic, 'Creditor ' || i, '30001234567', c.bic,
           CASE WHEN (i / :banks * 37) % 100 < 94 THEN 'COMPLETED' WHEN (i / :banks * 37) % 100 < 97 THEN 'REJECTED'
                WHEN (i / :banks * 37) % 100 < 98 THEN 'EXPIRED' ELSE 'AWAITING_SETTLEMENT' END,
           'payment-bl-' || i, ts, ts
    FROM generate_series(0, :n - 1) AS i
    CROSS JOIN LATERAL (SELECT CAST(:start AS timestamptz) + make_interval(secs => i * :step) AS ts) AS t
    JOIN (SELECT k, 'BK' || lpad(k::text, 2, '0') || 'AEAA' AS bic FROM generate_series(0, :banks - 1) k) d
      ON d.k = i % :banks
    JOIN (SELECT k, 'BK' || lpad(k::text, 2, '0') || 'AEAA' AS bic FROM generate_series(0, :banks - 1) k) c
      ON c.k = (i % :banks + 1 + (i / :banks) % (:banks - 1)) % :banks
    """
)


def _middle() -> datetime:
    return START + timedelta(seconds=STEP_S * N // 2)


def cases() -> list[tuple[str, PageQuery]]:
    bank = "BK07AEAA"
    mid = _middle()
    # A cursor in the middle of the year: keyset pages cost the same however deep.
    deep = cursor.Position(mid, uuid.UUID(int=0))

    def q(**kw) -> PageQuery:
        base = dict(bic=bank, role=None, status=None, currency=None, since=None, until=None, after=None, limit=100)
        return PageQuery(**{**base, **kw})

    return [
        ("bank, sent and received, first page (100)", q()),
        ("bank, sent and received, a page half a year deep", q(after=deep)),
        ("bank, received, first page (500)", q(role="creditor", limit=500)),
        ("bank, EXPIRED (1 %), first page", q(status="EXPIRED")),
        ("bank, INR, one day, first page", q(currency="INR", since=mid, until=mid + timedelta(days=1))),
        ("admin, every payment, first page", q(bic=None)),
        ("admin, every payment, a page half a year deep", q(bic=None, after=deep)),
    ]


async def _time(sessions: async_sessionmaker, query: PageQuery, *, indexed: bool) -> tuple[list[float], list]:
    """Timings of the page query, and the ids of its page. The baseline drops migration
    0009's indexes inside each (rolled back) transaction: the query as it would run
    without them, every other index in place."""
    times: list[float] = []
    ids: list = []
    async with sessions() as session:
        for n in range(REPEAT + 1):  # the first is a warm-up: plans and buffers
            if not indexed:
                await session.execute(text(f"DROP INDEX {', '.join(LISTING_INDEXES)}"))
            t0 = time.perf_counter()
            page, _ = await page_of_payments(session, query)
            if n:
                times.append((time.perf_counter() - t0) * 1000)
            ids = [p.id for p in page]
            await session.rollback()
    return times, ids


def _p95(times: list[float]) -> float:
    return sorted(times)[max(0, round(0.95 * len(times)) - 1)]


async def run(url: str) -> list[dict]:
    engine = make_engine(url, pool_size=2)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    try:
        t0 = time.perf_counter()
        async with engine.begin() as conn:
            await conn.execute(_FILL, {"n": N, "start": START, "step": STEP_S, "banks": BANKS})
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("ANALYZE payments"))
        log(f"{N:,} payments stored and analysed in {time.perf_counter() - t0:.0f} s")
        results = []
        for name, query in cases():
            indexed, ids = await _time(sessions, query, indexed=True)
            plain, plain_ids = await _time(sessions, query, indexed=False)
            assert ids == plain_ids, name  # the same page either way
            rows = len(ids)
            results.append(
                {
                    "case": name,
                    "rows": rows,
                    "p50_ms": round(statistics.median(indexed), 2),
                    "p95_ms": round(_p95(indexed), 2),
                    "baseline_p50_ms": round(statistics.median(plain), 1),
                }
            )
            log(f"{name}: {results[-1]['p50_ms']} ms (without the indexes {results[-1]['baseline_p50_ms']} ms)")
        return results
    finally:
        await engine.dispose()


def main() -> None:
    with embedded_postgres("bench-list") as pg:
        results = asyncio.run(run(pg.url))
    header = ("case", "rows", "p50 ms", "p95 ms", "without the indexes p50 ms", "vs baseline")
    print_table(
        header,
        [
            (
                r["case"],
                str(r["rows"]),
                f"{r['p50_ms']:.2f}",
                f"{r['p95_ms']:.2f}",
                f"{r['baseline_p50_ms']:,.1f}",
                f"{r['baseline_p50_ms'] / r['p50_ms']:,.0f}x",
            )
            for r in results
        ],
        label_first=True,
    )
    path = write_json("payments-list", {"payments": N, "repeat": REPEAT, "cases": results})
    print(f"Wrote {path}")


if __name__ == "__main__":
    main()
