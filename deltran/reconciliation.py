"""Account monitor: proves the 1:1 backing, and stops minting when it does not hold.

Three tiers (docs/architecture.md, "The token ledger and the 1:1 rule"):
- at every mint, inside the mint's transaction: the currency's token supply (the sum of
  token balances) must not exceed its booked fiat (the sum of fiat balances) — O(banks),
  the ledger's backing rule (deltran/ledger.backing_problems);
- intraday, on a schedule: per currency, token supply (everything minted), the sum of
  token balances, the fiat ledger and the fiat booked by camt.054 entries must agree;
- end of day: transaction by transaction — every booked camt.054 entry ↔ its obligation
  or window funding ↔ its token; unmatched entries, amount mismatches, payments stuck
  past their deadline, settled obligations without a token, tokens without a settled
  obligation.
A backing mismatch opens the currency's circuit breaker: mints then fail with a
retryable error, so payments wait (retrying, visible in the Temporal UI) until an admin
closes the breaker once the break is resolved.

The checks and the breaker live here, in the core: the scheduled runs
(activities/reconciliation.py), the mint (activities/tokens/), the admin API and
`deltran monitor` all use them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from deltran.config import Settings
from deltran.db.tables import CircuitBreaker, ReconciliationRun
from deltran.ledger import BACKING_SQL, SUPPLY_SQL
from deltran.observability import metrics
from deltran.refunds import REVERSED
from deltran.vocabulary import AccountKind, BreakerState, ReconciliationTier

BREAKS_LISTED_MAX = 1000
# A settled obligation gets its token seconds later; only a lasting gap is a break.
SETTLE_TO_MINT_GRACE = timedelta(minutes=5)


@dataclass(frozen=True)
class Backing:
    currency: str
    token_supply: Decimal  # everything minted: booked fiat turned into tokens
    token_balances: Decimal  # what banks hold
    fiat_ledger: Decimal  # the fiat accounts' balances
    fiat_booked: Decimal  # booked camt.054 credits matched to a payment or funding, less their refunded part

    def breaks(self) -> list[str]:
        found = []
        if self.token_balances != self.token_supply:
            found.append(f"token balances {self.token_balances} ≠ token supply {self.token_supply}")
        if self.fiat_ledger != self.token_supply:
            found.append(f"fiat ledger {self.fiat_ledger} ≠ token supply {self.token_supply}")
        if self.token_supply > self.fiat_booked:
            found.append(f"token supply {self.token_supply} exceeds booked fiat {self.fiat_booked}")
        return found


# -- the circuit breaker -------------------------------------------------------------------


async def breaker_is_open(session: AsyncSession, currency: str) -> bool:
    state = await session.scalar(select(CircuitBreaker.state).where(CircuitBreaker.currency == currency))
    return state == BreakerState.OPEN


async def open_breaker(session: AsyncSession, currency: str, reason: str) -> bool:
    """Open it (idempotent). True when this call opened it."""
    opened = await session.scalar(
        insert(CircuitBreaker)
        .values(currency=currency, state=BreakerState.OPEN, reason=reason, opened_at=func.now())
        .on_conflict_do_update(
            index_elements=[CircuitBreaker.currency],
            set_={
                "state": BreakerState.OPEN,
                "reason": reason,
                "opened_at": func.now(),
                "closed_at": None,
                "closed_by": None,
            },
            where=CircuitBreaker.state == BreakerState.CLOSED,
        )
        .returning(CircuitBreaker.currency)
    )
    if opened is not None:
        metrics.circuit_breaker_trips.labels(currency).inc()
        metrics.circuit_breaker_open.labels(currency).set(1)
    return opened is not None


class BreakNotResolved(Exception):
    pass


async def close_breaker(session: AsyncSession, currency: str, actor: str) -> None:
    """Close it, but only if the currency's backing reconciles now."""
    backing = (await backing_by_currency(session)).get(currency)
    if backing is not None and (problems := backing.breaks()):
        raise BreakNotResolved("; ".join(problems))
    await session.execute(
        update(CircuitBreaker)
        .where(CircuitBreaker.currency == currency, CircuitBreaker.state == BreakerState.OPEN)
        .values(state=BreakerState.CLOSED, closed_at=func.now(), closed_by=actor)
    )
    metrics.circuit_breaker_open.labels(currency).set(0)


# -- tier a: at every mint -----------------------------------------------------------------


# -- tier b: intraday ----------------------------------------------------------------------

_BACKING = text(
    f"""
    WITH ledger AS (
        SELECT currency, {SUPPLY_SQL} AS token_balances, {BACKING_SQL} AS fiat_ledger
        FROM accounts GROUP BY currency
    ), minted AS (
        SELECT currency, coalesce(sum(amount) FILTER (WHERE kind = 'fiat_booked'), 0)
                         - coalesce(sum(amount) FILTER (WHERE kind = 'redeemed'), 0) AS supply
        FROM ledger_transfers WHERE kind IN ('fiat_booked', 'redeemed') GROUP BY currency
    ), booked AS (
        -- Booked and matched: credits that funded payments and windows, less the payouts
        -- whose tokens are burned (one matched but not yet burned is neither here nor in
        -- supply's burn: between the two commits the tiers still agree; one that never
        -- burns is the end-of-day payout_not_burned).
        -- A window funding's part its settlement did not take is refunded, never minted.
        SELECT n.currency, coalesce(sum(n.amount - coalesce(rf.amount, 0)) FILTER (WHERE n.credit_debit = 'CRDT'), 0)
                           - coalesce(sum(n.amount) FILTER (WHERE n.credit_debit = 'DBIT'), 0) AS fiat_booked
        FROM bank_notifications n LEFT JOIN redemptions r ON r.id = n.redemption_id
        LEFT JOIN refunds rf ON rf.entry_id = n.id
        WHERE n.outcome = 'MATCHED' AND n.entry_status = 'BOOK' AND NOT n.reversal
          AND (n.credit_debit = 'CRDT' OR r.status = 'COMPLETED')
        GROUP BY n.currency
    )
    SELECT c.currency,
           coalesce(m.supply, 0) AS supply, coalesce(l.token_balances, 0) AS token_balances,
           coalesce(l.fiat_ledger, 0) AS fiat_ledger, coalesce(b.fiat_booked, 0) AS fiat_booked
    FROM (SELECT currency FROM ledger UNION SELECT currency FROM booked) c
    LEFT JOIN ledger l USING (currency) LEFT JOIN minted m USING (currency) LEFT JOIN booked b USING (currency)
    ORDER BY c.currency
    """
)


async def backing_by_currency(session: AsyncSession) -> dict[str, Backing]:
    rows = (await session.execute(_BACKING)).all()
    return {r.currency: Backing(r.currency, r.supply, r.token_balances, r.fiat_ledger, r.fiat_booked) for r in rows}


# -- tier c: end of day --------------------------------------------------------------------

# Each query lists one kind of break, transaction by transaction.
_EOD_CHECKS: dict[str, str] = {
    "unmatched_entry": """
        SELECT id::text AS ref, currency, amount, outcome || coalesce(': ' || outcome_detail, '') AS detail
        FROM bank_notifications
        WHERE outcome IN ('UNMATCHED', 'AMBIGUOUS', 'PAYMENT_NOT_AWAITING')
          AND entry_status = 'BOOK' AND credit_debit = 'CRDT'
          -- explained: being paid back, or paid back (deltran/refunds.py)
          AND NOT EXISTS (SELECT 1 FROM refunds r WHERE r.entry_id = bank_notifications.id)
    """,
    "amount_or_currency_mismatch": """
        SELECT id::text AS ref, currency, amount, outcome_detail AS detail
        FROM bank_notifications WHERE outcome = 'AMOUNT_MISMATCH' AND entry_status = 'BOOK' AND credit_debit = 'CRDT'
          AND NOT EXISTS (SELECT 1 FROM refunds r WHERE r.entry_id = bank_notifications.id)
    """,
    "booked_entry_not_minted": """
        SELECT n.id::text AS ref, n.currency, n.amount, 'booked and matched, but its fiat was never minted: '
               || coalesce('payment is ' || p.status, 'window is ' || w.status) AS detail
        FROM bank_notifications n
        LEFT JOIN payments p ON p.id = n.payment_id
        LEFT JOIN funding_instructions f ON f.id = n.funding_instruction_id
        LEFT JOIN clearing_windows w ON w.id = f.window_id
        WHERE n.outcome = 'MATCHED'
          AND (p.status IN ('COMPLETED', 'PARTIALLY_RETURNED', 'RETURNED', 'REJECTED', 'EXPIRED', 'CANCELLED')
               OR f.status = 'EXPIRED'
               OR w.status IN ('SETTLED', 'PARTIALLY_SETTLED'))
          AND NOT EXISTS (SELECT 1 FROM ledger_transfers t WHERE t.notification_id = n.id)
          -- a window funding its settlement took none of: all of it refunded
          AND NOT EXISTS (SELECT 1 FROM refunds r WHERE r.entry_id = n.id AND r.amount = n.amount)
    """,
    "payment_stuck_past_deadline": """
        SELECT p.id::text AS ref, p.currency, p.amount, p.status || ' since ' || p.created_at AS detail
        FROM payments p
        WHERE (p.status = 'AWAITING_SETTLEMENT'
               AND p.created_at < now() - make_interval(secs => :deadline_s) - interval '1 hour')
           OR (p.status IN ('SCREENING', 'SETTLED') AND p.updated_at < now() - interval '1 hour')
    """,
    "settled_obligation_without_token": """
        SELECT o.id::text AS ref, o.currency, o.amount, 'settled at ' || o.settled_at || ', no token' AS detail
        FROM obligations o
        WHERE o.status = 'SETTLED' AND o.settled_at < now() - make_interval(secs => :grace_s)
          AND NOT EXISTS (SELECT 1 FROM tokens t WHERE t.obligation_id = o.id)
          -- a cross-currency leg in escrow waits for its other leg until the payment's
          -- deadline (past it, payment_stuck_past_deadline lists the payment)
          AND NOT (o.escrowed AND EXISTS (
              SELECT 1 FROM payments p WHERE p.id = o.payment_id AND p.status = 'AWAITING_SETTLEMENT'))
    """,
    "payout_not_burned": """
        SELECT n.id::text AS ref, n.currency, n.amount,
               'payout booked at ' || n.received_at || ', its redemption is ' || r.status AS detail
        FROM bank_notifications n JOIN redemptions r ON r.id = n.redemption_id
        WHERE n.outcome = 'MATCHED' AND n.credit_debit = 'DBIT' AND r.status <> 'COMPLETED'
          AND n.received_at < now() - make_interval(secs => :grace_s)
    """,
    "payout_not_awaiting": """
        SELECT id::text AS ref, currency, amount, outcome_detail AS detail
        FROM bank_notifications WHERE outcome = 'PAYOUT_NOT_AWAITING'
    """,
    # Fiat that left the settlement account naming a payout, but booked nothing: a wrong
    # amount, an unknown reference. Money out with no tokens burned.
    "payout_entry_not_matched": """
        SELECT id::text AS ref, currency, amount, outcome || coalesce(': ' || outcome_detail, '') AS detail
        FROM bank_notifications
        WHERE credit_debit = 'DBIT' AND entry_status = 'BOOK' AND NOT reversal
          AND (end_to_end_id LIKE 'RDM-%' OR end_to_end_id LIKE 'RFD-%') AND outcome IN ('UNMATCHED', 'AMOUNT_MISMATCH')
    """,
    # Stranded fiat the settlement agent has not paid back in the time it has for a payout.
    "refund_not_paid": """
        SELECT r.reference AS ref, r.currency, r.amount,
               'instructed at ' || r.instructed_at || ': ' || r.reason AS detail
        FROM refunds r
        WHERE r.status = 'PAYOUT_INSTRUCTED' AND r.instructed_at < now() - make_interval(secs => :payout_s)
    """,
    # Owed, and held by ops or compliance: listed every day until released or returned.
    "refund_held": """
        SELECT r.reference AS ref, r.currency, r.amount,
               'held since ' || r.updated_at || ': ' || coalesce(r.held_reason, '')
               || ' (owed: ' || r.reason || ')' AS detail
        FROM refunds r WHERE r.status = 'HELD'
    """,
    # A window funding is minted as far as its settlement took it and the rest refunded:
    # together, the booked amount (a refund held — the funder no longer ACTIVE, the entry
    # reversed — shows here; one with neither a mint nor a refund is booked_entry_not_minted).
    "window_funding_not_accounted": """
        SELECT n.id::text AS ref, n.currency, n.amount,
               'window ' || w.id || ' is ' || w.status || ': minted ' || coalesce(t.amount, 0)
               || ' and refunded ' || coalesce(r.amount, 0) || ' of the ' || n.amount || ' booked' AS detail
        FROM bank_notifications n
        JOIN funding_instructions f ON f.id = n.funding_instruction_id
        JOIN clearing_windows w ON w.id = f.window_id
        LEFT JOIN ledger_transfers t ON t.notification_id = n.id AND t.kind = 'fiat_booked'
        LEFT JOIN refunds r ON r.entry_id = n.id
        WHERE n.outcome = 'MATCHED' AND w.status IN ('SETTLED', 'PARTIALLY_SETTLED')
          AND (t.id IS NOT NULL OR r.id IS NOT NULL)
          AND coalesce(t.amount, 0) + coalesce(r.amount, 0) <> n.amount
    """,
    # Paid back twice: the agent reversed a credit DelTran also refunds.
    "refunded_entry_reversed": f"""
        SELECT r.reference AS ref, r.currency, r.amount,
               'refund ' || r.status || ' of entry ' || n.id || ', which the settlement agent reversed' AS detail
        FROM refunds r JOIN bank_notifications n ON n.id = r.entry_id
        WHERE r.status IN ('PAYOUT_INSTRUCTED', 'COMPLETED') AND {REVERSED}
    """,
    "token_without_settled_obligation": """
        SELECT t.id::text AS ref, t.currency, t.amount, 'obligation is ' || o.status AS detail
        FROM tokens t JOIN obligations o ON o.id = t.obligation_id
        WHERE o.status <> 'SETTLED' OR o.amount <> t.amount OR o.currency <> t.currency
    """,
}


# Every kind of break a run can report (the metric's `kind` label).
BREAK_KINDS: tuple[str, ...] = ("backing_mismatch", *_EOD_CHECKS)


async def end_of_day_breaks(session: AsyncSession, settings: Settings) -> list[dict]:
    params = {
        "deadline_s": settings.payment_deadline_s,
        "grace_s": SETTLE_TO_MINT_GRACE.total_seconds(),
        "payout_s": settings.redemption_deadline_s,
    }
    found: list[dict] = []
    for kind, query in _EOD_CHECKS.items():
        clause = text(query)
        bound = {k: v for k, v in params.items() if f":{k}" in query}
        for row in (await session.execute(clause, bound)).all():
            found.append(
                {
                    "kind": kind,
                    "ref": row.ref,
                    "currency": row.currency,
                    "amount": str(row.amount),
                    "detail": row.detail,
                }
            )
    return found


# -- runs ----------------------------------------------------------------------------------


_FX_POSITIONS = text(
    """
    SELECT p.bic, a.currency, a.kind, a.credits_posted - a.debits_posted AS held
    FROM participants p
    LEFT JOIN accounts a ON a.participant_id = p.id AND a.kind IN ('token', 'escrow')
    WHERE p.fx_provider
    """
)
_FX_KINDS = (AccountKind.TOKEN, AccountKind.ESCROW)


async def _gauge_fx_positions(session: AsyncSession, currencies: Iterable[str]) -> None:
    """What each FX provider holds per currency, spendable and in escrow (the clearing
    dashboard's provider positions), as of this run: 0 where it holds nothing yet."""
    held: dict[tuple[str, str, str], Decimal] = {}
    providers = set()
    for row in await session.execute(_FX_POSITIONS):
        providers.add(row.bic)
        if row.currency is not None:
            held[row.bic, row.currency, row.kind] = row.held
    for bic in providers:
        for currency in set(currencies) | {c for b, c, _ in held if b == bic}:
            for kind in _FX_KINDS:
                amount = held.get((bic, currency, kind), Decimal(0))
                metrics.fx_provider_holdings.labels(bic, currency, kind).set(float(amount))


async def run_reconciliation(session: AsyncSession, tier: str, settings: Settings) -> ReconciliationRun:
    """One run of a tier, stored with its result; a backing break opens the breaker."""
    backing = await backing_by_currency(session)
    breaks: list[dict] = []
    for currency, b in backing.items():
        for problem in b.breaks():
            breaks.append(
                {"kind": "backing_mismatch", "ref": currency, "currency": currency, "amount": None, "detail": problem}
            )
        metrics.token_supply.labels(currency).set(float(b.token_balances))
        metrics.fiat_balance.labels(currency).set(float(b.fiat_ledger))
        metrics.backing_ratio.labels(currency).set(float(b.token_balances / b.fiat_ledger) if b.fiat_ledger else 1.0)
    for currency in {b["currency"] for b in breaks}:
        await open_breaker(session, currency, f"{tier} reconciliation: backing mismatch")
    if tier == ReconciliationTier.END_OF_DAY:
        breaks += await end_of_day_breaks(session, settings)
    await _gauge_fx_positions(session, settings.supported_currencies)
    states = dict((await session.execute(select(CircuitBreaker.currency, CircuitBreaker.state))).all())
    for currency in set(backing) | set(states):
        metrics.circuit_breaker_open.labels(currency).set(1 if states.get(currency) == BreakerState.OPEN else 0)
    summary = {
        c: {
            "token_supply": str(b.token_supply),
            "token_balances": str(b.token_balances),
            "fiat_ledger": str(b.fiat_ledger),
            "fiat_booked": str(b.fiat_booked),
        }
        for c, b in backing.items()
    }
    run = ReconciliationRun(
        tier=tier,
        ok=not breaks,
        summary=summary,
        breaks=breaks[:BREAKS_LISTED_MAX],
        break_count=len(breaks),
        finished_at=func.now(),
    )
    session.add(run)
    await session.flush()
    metrics.reconciliation_runs.labels(tier).inc()
    metrics.reconciliation_open_breaks.labels(tier).set(len(breaks))
    for found in breaks:
        metrics.reconciliation_breaks.labels(tier, found["kind"]).inc()
    return run
