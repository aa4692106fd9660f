import uuid
from decimal import Decimal

from deltran.config import Settings
from deltran.domain.liquidity import OpenWindow, route
from deltran.domain.risk import score

WINDOW = uuid.uuid4()
STALE_AFTER_S = Settings().clearing_window_stale_after_s
FRESH = OpenWindow(WINDOW, age_s=30.0)


def test_default_is_net_in_the_open_window():
    r = route(
        amount=Decimal("100"),
        currency="AED",
        urgent=False,
        gross_threshold=Decimal("5000000"),
        open_window=FRESH,
        stale_after_s=STALE_AFTER_S,
    )
    assert (r.mode, r.window_id) == ("NET", WINDOW)


def test_urgent_settles_gross():
    r = route(
        amount=Decimal("100"),
        currency="AED",
        urgent=True,
        gross_threshold=Decimal("5000000"),
        open_window=FRESH,
        stale_after_s=STALE_AFTER_S,
    )
    assert (r.mode, r.window_id) == ("GROSS", None) and "urgent" in r.reason


def test_at_or_above_the_threshold_settles_gross():
    at = route(
        amount=Decimal("5000000"),
        currency="AED",
        urgent=False,
        gross_threshold=Decimal("5000000"),
        open_window=FRESH,
        stale_after_s=STALE_AFTER_S,
    )
    below = route(
        amount=Decimal("4999999.99"),
        currency="AED",
        urgent=False,
        gross_threshold=Decimal("5000000"),
        open_window=FRESH,
        stale_after_s=STALE_AFTER_S,
    )
    assert at.mode == "GROSS" and "5000000.00 AED" in at.reason
    assert below.mode == "NET"


def test_without_an_open_window_settles_gross():
    r = route(
        amount=Decimal("100"),
        currency="USD",
        urgent=False,
        gross_threshold=None,
        open_window=None,
        stale_after_s=STALE_AFTER_S,
    )
    assert r.mode == "GROSS" and "no clearing window" in r.reason


def test_a_window_open_longer_than_any_healthy_schedule_keeps_it_settles_gross():
    """A paused (or deleted, or long-stopped) clearing schedule leaves its window open; a
    payment joining it would wait for a close that never comes."""
    assert STALE_AFTER_S == 2 * 60 + 600  # two intervals (a close skipped while funding) + the funding timeout
    at_limit = route(
        amount=Decimal("100"),
        currency="AED",
        urgent=False,
        gross_threshold=None,
        open_window=OpenWindow(WINDOW, age_s=STALE_AFTER_S),
        stale_after_s=STALE_AFTER_S,
    )
    stale = route(
        amount=Decimal("100"),
        currency="AED",
        urgent=False,
        gross_threshold=None,
        open_window=OpenWindow(WINDOW, age_s=STALE_AFTER_S + 1),
        stale_after_s=STALE_AFTER_S,
    )
    assert (at_limit.mode, at_limit.window_id, at_limit.window_stale) == ("NET", WINDOW, False)
    assert (stale.mode, stale.window_id, stale.window_stale) == ("GROSS", None, True)
    assert "has not closed for 721 s" in stale.reason and "paused or not running" in stale.reason


def test_risk_score_weighs_amount_corridor_and_velocity():
    low, _ = score(
        amount=Decimal("100"),
        gross_threshold=Decimal("1000000"),
        cross_border=False,
        high_risk_corridor=False,
        recent_payments=0,
    )
    high, factors = score(
        amount=Decimal("1000000"),
        gross_threshold=Decimal("1000000"),
        cross_border=True,
        high_risk_corridor=True,
        recent_payments=10,
    )
    assert low < Decimal(1)
    assert high == Decimal(100) and factors["velocity"] == "25" and factors["corridor"] == "25"
    cross, _ = score(
        amount=Decimal("100"),
        gross_threshold=Decimal("1000000"),
        cross_border=True,
        high_risk_corridor=False,
        recent_payments=0,
    )
    assert cross - low == Decimal(10)


def test_a_payment_whose_fiat_is_already_booked_settles_gross_on_that_booking():
    # Netted, its early camt.054 would stay booked with nothing ever to mint it.
    r = route(
        amount=Decimal("100"),
        currency="AED",
        urgent=False,
        gross_threshold=None,
        open_window=FRESH,
        stale_after_s=STALE_AFTER_S,
        prefunded=True,
    )
    assert (r.mode, r.window_id) == ("GROSS", None)
    assert "already booked" in r.reason
