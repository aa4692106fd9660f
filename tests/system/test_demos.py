"""The demo scenarios run against a real stack (the suite's), with small sizes."""

from __future__ import annotations

import asyncio
from urllib.parse import urlparse

import pytest
from sqlalchemy import func, select

from cli import demo
from deltran.db.tables import AuditLog, Payment
from worker.schedules import schedule_id


@pytest.fixture
def demo_settings(settings, api_url):
    """The suite's stack as `make up` would name it; schedules that never fire during
    the suite, for EUR only (the other tests settle AED gross)."""
    return settings.model_copy(
        update={
            "api_port": urlparse(api_url).port,
            "supported_currencies": ("EUR",),
            "clearing_interval_s": 86400,
            "reconciliation_interval_s": 86400,
        }
    )


async def _drop_schedules(temporal_env) -> None:
    for sid in (schedule_id("EUR"), "reconciliation-intraday", "reconciliation-end-of-day"):
        try:
            await temporal_env.client.get_schedule_handle(sid).delete()
        except Exception:  # not created by this test
            pass


async def test_uae_india_follows_one_payment_to_completed(demo_settings, capsys):
    assert await asyncio.to_thread(demo.uae_india, demo_settings) == 0
    out = capsys.readouterr().out
    assert "COMPLETED" in out and "100000.00 AED to SBININBB" in out and "/workflows/payment-EBILAEAD-" in out
    # The receiving side: told by a signed webhook, then 25,000 AED redeemed, paid out and burned.
    assert "payment.credited by webhook" in out and "signature verified" in out
    assert "9. paid out, burned" in out and "AED paid out (webhook: redemption.completed)" in out


async def test_recall_cancels_one_payment_and_returns_two(demo_settings, capsys):
    assert await asyncio.to_thread(demo.recall, demo_settings) == 0
    out = capsys.readouterr().out
    assert "Conf CNCL: the payment is CANCELLED" in out
    assert "4. recalled (FRAD)    PDCR" in out and "recall CNCL, payment RETURNED: 7500.00 AED back" in out
    assert "payment PARTIALLY_RETURNED" in out
    assert "Emirates NBD holds 9500.00 AED more tokens, the returns'" in out


async def test_load_counts_every_payment(demo_settings, sessions, capsys):
    async with sessions() as session:
        before = await session.scalar(
            select(func.count()).select_from(Payment).where(Payment.end_to_end_id.like("LOAD-%"))
        )
    assert await asyncio.to_thread(demo.load, demo_settings, 1, 2) == 0
    async with sessions() as session:
        after = await session.scalar(
            select(func.count()).select_from(Payment).where(Payment.end_to_end_id.like("LOAD-%"))
        )
    out = capsys.readouterr().out
    assert after > before and "error rate" in out
    # Closed loop: everything accepted in the 1 s completes within the drain.
    assert f"every one of the {after - before} accepted payments COMPLETED" in out, out[-500:]


async def test_netting_settles_a_window_and_reset_clears_it(demo_settings, sessions, temporal_env, capsys):
    from activities.clearing import ensure_open_window

    async with sessions() as session, session.begin():
        await ensure_open_window(session, "EUR")
    assert await asyncio.to_thread(demo.netting, demo_settings, 12, "EUR") == 0
    out = capsys.readouterr().out
    assert "12 payments COMPLETED" in out and "netting efficiency" in out
    try:
        assert await asyncio.to_thread(demo.reset, demo_settings) == 0
        async with sessions() as session:
            assert await session.scalar(select(func.count()).select_from(Payment)) == 0
            assert (
                await session.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "demo.reset"))
                >= 1
            )
        assert await asyncio.to_thread(demo.seed, demo_settings) == 0
        assert "seeded the demo banks" in capsys.readouterr().out
    finally:
        await _drop_schedules(temporal_env)


async def test_fx_nets_both_legs_in_their_windows_and_pays_them_together(
    demo_settings, sessions, http, credentials, capsys
):
    from activities.clearing import ensure_open_window
    from tests.support.payments import auth

    admin = auth(credentials["admin"])
    for pair in ("USD/EUR", "EUR/USD"):  # no other desk's sheet: Mashreq's quote
        await http.delete(f"/v1/admin/fx/pairs/{pair}", headers=admin)
    async with sessions() as session, session.begin():
        for currency in ("EUR", "USD"):
            await ensure_open_window(session, currency)
    assert await asyncio.to_thread(demo.fx, demo_settings, "EUR", "USD", "1000.00") == 0
    out = capsys.readouterr().out
    assert "from MASHAEAD" in out and "SOURCE" in out and "TARGET" in out
    assert "1000.00 EUR into escrow; SOURCE leg SETTLED, payment AWAITING_SETTLEMENT" in out, out
    assert "COMPLETED[/green]" not in out and "COMPLETED: SBININBB holds 1080.00 USD" in out, out
