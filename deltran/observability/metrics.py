"""Prometheus metrics, all `deltran_`-prefixed. The names are a contract: the Grafana
dashboards and alert rules under deploy/ query them. Each process (API, worker) serves
the ones it records on its own /metrics.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

from deltran.vocabulary import (
    FINAL_PAYMENT_STATUSES,
    FINAL_REDEMPTION_STATUSES,
    CancellationStatus,
    ObligationLeg,
    ReconciliationTier,
    RefundStatus,
    ReturnReason,
    SettlementMode,
)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
SETTLEMENT_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 21600, 86400)

# -- API ------------------------------------------------------------------------------------
http_requests = Counter(
    "deltran_http_requests",
    "HTTP requests answered, by route template, method and status",
    ["route", "method", "status"],
)
http_request_seconds = Histogram(
    "deltran_http_request_duration_seconds",
    "HTTP request latency by route template",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)

# -- payments and obligations ---------------------------------------------------------------
payments_final = Counter("deltran_payments_final", "Payments that reached a final status", ["status"])
obligations_created = Counter(
    "deltran_obligations_created", "Obligations recorded, by currency and settlement mode", ["currency", "mode"]
)
settlements = Counter(
    "deltran_settlements",
    "Obligations settled, by currency and mode (GROSS vs NET: fallback usage)",
    ["currency", "mode"],
)
settlement_seconds = Histogram(
    "deltran_settlement_seconds", "Obligation created → settled", ["currency", "mode"], buckets=SETTLEMENT_BUCKETS
)

# -- clearing -------------------------------------------------------------------------------
windows_closed = Counter("deltran_windows_closed", "Clearing windows closed and netted", ["currency"])
stale_window_routings = Counter(
    "deltran_stale_window_routings",
    "Payments routed gross because their currency's open window outlived its schedule (paused or not running)",
    ["currency"],
)
window_fallbacks = Counter(
    "deltran_window_fallbacks", "Windows settled by the fallback (a net debtor did not fund)", ["currency"]
)
obligations_rolled = Counter(
    "deltran_obligations_rolled", "Obligations the fallback rolled into the next window", ["currency"]
)
netting_efficiency = Gauge("deltran_netting_efficiency", "Netting efficiency of the last window (0-1)", ["currency"])
liquidity_saved = Gauge("deltran_liquidity_saved", "Liquidity saved by the last window (gross - net)", ["currency"])
netting_seconds = Histogram(
    "deltran_netting_duration_seconds",
    "Time netting a window took",
    ["currency"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30),
)

workflow_starts_pending = Gauge(
    "deltran_workflow_starts_pending",
    "Payment workflows the API is starting after its 202 (the rows are committed)",
)
workflow_starts_failed = Counter(
    "deltran_workflow_starts_failed",
    "Payment workflow starts after a 202 that failed (Temporal unavailable): the sweeper or a resubmission starts them",
)

step_attempts_failed = Counter(
    "deltran_step_attempts_failed",
    "Attempts of a workflow step (activity, local or regular) that failed and will be retried:"
    " a database that is down, an open circuit breaker… A step that keeps failing alerts",
    ["step"],
)
activity_failed_permanently = Counter(
    "deltran_activity_failed_permanently",
    "Activity executions failed without retry: an invariant or integrity constraint no retry can change",
    ["activity", "kind"],
)

# -- tokens and backing ---------------------------------------------------------------------
tokens_minted = Counter("deltran_tokens_minted", "Tokens minted (one per settled obligation)", ["currency"])
tokens_minted_amount = Counter("deltran_tokens_minted_amount", "Amount minted in tokens", ["currency"])
token_supply = Gauge("deltran_token_supply", "Token supply at the last reconciliation", ["currency"])
fiat_balance = Gauge("deltran_fiat_balance", "Booked fiat backing the tokens at the last reconciliation", ["currency"])
backing_ratio = Gauge("deltran_backing_ratio", "Token supply / booked fiat (1 when fully backed)", ["currency"])

# -- account monitor ------------------------------------------------------------------------
reconciliation_runs = Counter("deltran_reconciliation_runs", "Reconciliation runs, by tier", ["tier"])
reconciliation_breaks = Counter(
    "deltran_reconciliation_breaks", "Breaks found by reconciliation, by tier and kind", ["tier", "kind"]
)
reconciliation_open_breaks = Gauge(
    "deltran_reconciliation_open_breaks", "Breaks found by the last run of each tier", ["tier"]
)
circuit_breaker_open = Gauge(
    "deltran_circuit_breaker_open", "1 while minting is stopped for the currency", ["currency"]
)
circuit_breaker_trips = Counter("deltran_circuit_breaker_trips", "Times the breaker opened", ["currency"])


# -- redemptions ----------------------------------------------------------------------------
redemptions = Counter(
    "deltran_redemptions", "Redemptions that ended: COMPLETED (paid out, burned) or RELEASED", ["currency", "status"]
)
tokens_burned_amount = Counter(
    "deltran_tokens_burned_amount", "Tokens burned for booked payouts, in the currency's units", ["currency"]
)

# -- recalls and returns ----------------------------------------------------------------------
recalls = Counter(
    "deltran_recalls",
    "Recalls decided: CNCL (cancelled before settlement, or returned when its creditor agent accepted),"
    " PDCR (settled: sent to the creditor agent), RJCR (refused, or the payment had ended unsettled)",
    ["status"],
)
returns = Counter("deltran_returns", "Returns of settled payments (pacs.004), by reason", ["currency", "reason"])
returned_amount = Counter(
    "deltran_returned_amount", "Tokens moved back to debtor agents by returns, in the currency's units", ["currency"]
)
refunds = Counter(
    "deltran_refunds",
    "Refunds of stranded fiat: PAYOUT_INSTRUCTED (listed for the settlement agent, or again on release),"
    " COMPLETED (its DBIT booked), HELD (taken off the list by ops or compliance)",
    ["currency", "status"],
)
fx_quotes = Counter(
    "deltran_fx_quotes",
    "FX quotes given to debtor agents, by pair and the side fixed (SOURCE, TARGET)",
    ["pair", "fixed"],
)
fx_settled_amount = Counter(
    "deltran_fx_settled_amount",
    "Cross-currency legs paid to their payees (both legs of a payment, together), by currency and leg",
    ["currency", "leg"],
)
fx_provider_holdings = Gauge(
    "deltran_fx_provider_holdings",
    "What each FX provider holds per currency at the last reconciliation: its tokens, and legs owed to it in escrow",
    ["provider", "currency", "kind"],
)
fx_legs_unwound = Counter(
    "deltran_fx_legs_unwound",
    "Cross-currency legs given back to their payer from escrow: the payment's other leg never settled",
    ["currency"],
)

# -- webhooks -------------------------------------------------------------------------------
webhook_attempts = Counter(
    "deltran_webhook_delivery_attempts",
    "Webhook delivery attempts by bank and outcome: delivered (a 2xx) or failed (any other answer, or none)",
    ["bic", "outcome"],
)
webhook_gave_up = Counter(
    "deltran_webhook_deliveries_failed",
    "Events whose delivery was retried for the whole delivery period and given up (still at GET /v1/events)",
    ["bic"],
)
webhook_delivery_seconds = Histogram(
    "deltran_webhook_delivery_seconds",
    "From an event's writing to its delivery",
    buckets=SETTLEMENT_BUCKETS,
)


def initialise(currencies: Iterable[str], break_kinds: Iterable[str], steps: Iterable[str] = ()) -> None:
    """Create every event counter's series at zero for the label values known at start.

    A series is otherwise born at its first event: until then a dashboard shows "No
    data" instead of 0, and `increase()` misses that first event (a series that appears
    at 1 has not increased). Idempotent; only counters whose labels are a known, finite
    set (histograms and gauges stay absent until measured: an absent gauge is honest)."""
    for currency in currencies:
        for counter in (
            windows_closed,
            stale_window_routings,
            window_fallbacks,
            obligations_rolled,
            tokens_minted,
            tokens_minted_amount,
            circuit_breaker_trips,
        ):
            counter.labels(currency)
        for mode in SettlementMode:
            obligations_created.labels(currency, mode)
            settlements.labels(currency, mode)
    for status in FINAL_PAYMENT_STATUSES:
        payments_final.labels(status)
    for currency in currencies:
        tokens_burned_amount.labels(currency)
        for ended in FINAL_REDEMPTION_STATUSES:
            redemptions.labels(currency, ended)
    for tier in ReconciliationTier:
        reconciliation_runs.labels(tier)
        for kind in break_kinds:
            reconciliation_breaks.labels(tier, kind)
    for step in steps:
        step_attempts_failed.labels(step)
    for answer in CancellationStatus:
        recalls.labels(answer)
    for currency in currencies:
        fx_legs_unwound.labels(currency)
        for leg in ObligationLeg:
            fx_settled_amount.labels(currency, leg)
    for currency in currencies:
        returned_amount.labels(currency)
        for reason in ReturnReason:
            returns.labels(currency, reason)
        for refund_status in (RefundStatus.PAYOUT_INSTRUCTED, RefundStatus.COMPLETED, RefundStatus.HELD):
            refunds.labels(currency, refund_status)
