import uuid
from decimal import Decimal

from activities.liquidity import route
from activities.risk import score

WINDOW = uuid.uuid4()


def test_default_is_net_in_the_open_window():
    r = route(amount=Decimal("100"), currency="AED", urgent=False, gross_threshold=Decimal("5000000"), open_window_id=WINDOW)
    assert (r.mode, r.window_id) == ("NET", WINDOW)


def test_urgent_settles_gross():
    r = route(amount=Decimal("100"), currency="AED", urgent=True, gross_threshold=Decimal("5000000"), open_window_id=WINDOW)
    assert (r.mode, r.window_id) == ("GROSS", None) and "urgent" in r.reason


def test_at_or_above_the_threshold_settles_gross():
    at = route(amount=Decimal("5000000"), currency="AED", urgent=False, gross_threshold=Decimal("5000000"), open_window_id=WINDOW)
    below = route(amount=Decimal("4999999.99"), currency="AED", urgent=False, gross_threshold=Decimal("5000000"), open_window_id=WINDOW)
    assert at.mode == "GROSS" and "5000000.00 AED" in at.reason
    assert below.mode == "NET"


def test_without_an_open_window_settles_gross():
    r = route(amount=Decimal("100"), currency="USD", urgent=False, gross_threshold=None, open_window_id=None)
    assert r.mode == "GROSS" and "no clearing window" in r.reason


def test_risk_score_weighs_amount_corridor_and_velocity():
    low, _ = score(amount=Decimal("100"), gross_threshold=Decimal("1000000"), cross_border=False, high_risk_corridor=False, recent_payments=0)
    high, factors = score(amount=Decimal("1000000"), gross_threshold=Decimal("1000000"), cross_border=True, high_risk_corridor=True, recent_payments=10)
    assert low < Decimal(1)
    assert high == Decimal(100) and factors["velocity"] == "25" and factors["corridor"] == "25"
    cross, _ = score(amount=Decimal("100"), gross_threshold=Decimal("1000000"), cross_border=True, high_risk_corridor=False, recent_payments=0)
    assert cross - low == Decimal(10)
