"""The FX pricing rules (deltran/domain/fx.py): the stated rate, the best provider, and
rounding that never favours the payee or the payer by a minor unit or more."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deltran.domain import fx
from deltran.money import MINOR_UNITS

PROPERTIES = settings(max_examples=200, deadline=None, derandomize=True, database=None)
NOW = datetime(2026, 12, 7, tzinfo=UTC)
AED_INR = fx.Pair("AED", "INR")

rates = st.one_of(
    st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("99999"), places=4),
    st.decimals(min_value=Decimal("0.0000000001"), max_value=Decimal("9.9999999999"), places=10),
    st.decimals(min_value=Decimal("1"), max_value=Decimal("99999999"), places=3),
)
currencies = st.sampled_from(sorted(MINOR_UNITS))


def _amounts(currency: str):
    # Up to the largest amount DelTran stores (fewer than 18 integer digits).
    return st.decimals(min_value=Decimal(1), max_value=Decimal(10**18) - 1, places=MINOR_UNITS[currency])


def _rate(provider: str, bid: str, ask: str, posted_s: int = 0) -> fx.Rate:
    return fx.Rate(
        provider, AED_INR, Decimal(bid), Decimal(ask), NOW + timedelta(hours=1), NOW + timedelta(seconds=posted_s)
    )


@PROPERTIES
@given(st.data(), rates, currencies, currencies)
def test_a_fixed_source_never_delivers_more_than_the_rate_gives(data, rate, source, target):
    amount = data.draw(_amounts(source))
    delivered = fx.target_for(amount, rate, target)
    minor = Decimal(1).scaleb(-MINOR_UNITS[target])
    assert delivered <= amount * rate < delivered + minor
    assert delivered == delivered.quantize(minor)


@PROPERTIES
@given(st.data(), rates, currencies, currencies)
def test_a_fixed_target_is_always_covered_by_what_leaves(data, rate, source, target):
    amount = data.draw(_amounts(target))
    paid = fx.source_for(amount, rate, source)
    minor = Decimal(1).scaleb(-MINOR_UNITS[source])
    assert paid * rate >= amount > (paid - minor) * rate
    assert paid == paid.quantize(minor)


@PROPERTIES
@given(st.decimals(min_value=Decimal("0.0000000001"), max_value=Decimal("99999999999"), allow_nan=False))
def test_a_stated_rate_fits_iso_20022_and_never_exceeds_the_price(factor):
    # BaseOneRate: the value is i × 10^-n with |i| < 10^11 and n ≤ 10.
    stated = fx._state(factor)
    _, digits, exponent = stated.normalize().as_tuple()
    assert isinstance(exponent, int)
    integer_digits = len(digits) + exponent if exponent >= 0 else len(digits)
    assert stated <= factor and -exponent <= fx.RATE_FRACTION_DIGITS and integer_digits <= fx.RATE_TOTAL_DIGITS
    kept = min(fx.RATE_FRACTION_DIGITS, fx.RATE_TOTAL_DIGITS - len(str(int(factor)))) if factor >= 1 else 10
    assert factor - stated < Decimal(1).scaleb(-kept)  # rounded down by less than its last digit


def test_a_large_product_is_rounded_once_and_down():
    # At Python's default 28 digits the product would round half-even to …994.16 first.
    assert fx.target_for(Decimal("440000000003390410.97"), Decimal("22.651234567"), "INR") == Decimal(
        "9966543209556796994.15"
    )


def test_each_direction_takes_its_own_side_of_the_sheet():
    sheet = _rate("MASHAEAD", "22.60", "22.70")
    assert fx.applied_rate(sheet, "AED", "INR") == Decimal("22.60")
    assert fx.applied_rate(sheet, "INR", "AED") == Decimal("0.0440528634")  # 1 / 22.70, down
    with pytest.raises(fx.FxError):
        fx.applied_rate(sheet, "AED", "USD")


def test_the_best_rate_wins_then_the_earliest_sheet_then_the_bic():
    sheets = [
        _rate("AAAAAEAD", "22.60", "22.70", posted_s=2),
        _rate("BBBBAEAD", "22.65", "22.75", posted_s=3),
        _rate("CCCCAEAD", "22.65", "22.69", posted_s=1),
    ]
    chosen = fx.best(sheets, "AED", "INR")
    assert chosen is not None and (chosen[0].provider, chosen[1]) == ("CCCCAEAD", Decimal("22.65"))
    chosen = fx.best(sheets, "INR", "AED")
    assert chosen is not None and chosen[0].provider == "CCCCAEAD"  # the lowest ask
    assert fx.best(sheets, "AED", "USD") is None and fx.best([], "AED", "INR") is None


@pytest.mark.parametrize(
    "bid, ask, max_spread, why",
    [
        ("22.70", "22.60", "0.01", "above ask"),
        ("0", "22.60", "0.01", "positive"),
        ("22.00", "23.00", "0.01", "wider"),
        ("22.6000000001", "22.70", "0.01", "digits"),
        ("0.00000000001", "0.0000000001", "0.99", "digits"),
    ],
)
def test_a_sheet_is_refused_when_it_cannot_be_quoted_as_posted(bid, ask, max_spread, why):
    with pytest.raises(fx.FxError, match=why):
        fx.check_rate(Decimal(bid), Decimal(ask), Decimal(max_spread))


def test_a_pair_is_two_supported_currencies_written_base_slash_quote():
    assert fx.Pair.parse("AED/INR") == AED_INR and str(AED_INR) == "AED/INR"
    for text in ("AED-INR", "aed/inr", "AED/AED", "AED/XXX", "AEDINR", "AED/INRX"):
        with pytest.raises(fx.FxError):
            fx.Pair.parse(text)
