"""A worker's event counters exist from its start, for every cleared currency and every
kind of reconciliation break: the dashboards' panels read 0 on a fresh stack."""

from __future__ import annotations

from prometheus_client import REGISTRY

from deltran.reconciliation import BREAK_KINDS


async def test_a_started_worker_has_every_event_counter_for_its_currencies(worker, settings):
    assert settings.supported_currencies
    for currency in settings.supported_currencies:
        for name in (
            "deltran_window_fallbacks_total",
            "deltran_obligations_rolled_total",
            "deltran_circuit_breaker_trips_total",
        ):
            assert REGISTRY.get_sample_value(name, {"currency": currency}) is not None, (name, currency)
    for kind in BREAK_KINDS:
        assert (
            REGISTRY.get_sample_value("deltran_reconciliation_breaks_total", {"tier": "end_of_day", "kind": kind})
            is not None
        )
