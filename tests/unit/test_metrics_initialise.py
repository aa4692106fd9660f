"""Event counters exist at 0 from the start (deltran/observability/metrics.py `initialise`):
a dashboard shows 0 rather than "No data", and `increase()` sees the first event."""

from __future__ import annotations

from prometheus_client import REGISTRY

from deltran.observability import metrics

# Codes nothing else records anything for (ISO 4217 reserves XTS for testing, XXX for "no
# currency"), one per test, so the values seen are the initialiser's alone in any order.
KIND = "test_only_kind"


def _value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_every_event_counter_starts_at_zero_for_the_known_labels():
    currency = "XTS"
    assert _value("deltran_window_fallbacks_total", currency=currency) is None
    metrics.initialise([currency], [KIND])
    for name in (
        "deltran_window_fallbacks_total",
        "deltran_obligations_rolled_total",
        "deltran_circuit_breaker_trips_total",
        "deltran_windows_closed_total",
        "deltran_tokens_minted_total",
    ):
        assert _value(name, currency=currency) == 0.0, name
    for mode in ("GROSS", "NET"):
        assert _value("deltran_obligations_created_total", currency=currency, mode=mode) == 0.0
    for tier in ("intraday", "end_of_day"):
        assert _value("deltran_reconciliation_breaks_total", tier=tier, kind=KIND) == 0.0
    assert _value("deltran_payments_final_total", status="COMPLETED") is not None


def test_initialising_again_never_resets_a_count():
    currency = "XXX"
    metrics.initialise([currency], [KIND])
    metrics.window_fallbacks.labels(currency).inc()
    before = _value("deltran_window_fallbacks_total", currency=currency)
    metrics.initialise([currency], [KIND])
    assert _value("deltran_window_fallbacks_total", currency=currency) == before >= 1.0
