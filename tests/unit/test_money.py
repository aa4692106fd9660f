"""Money rules: ISO 4217 minor units, exact Decimals, no junk amounts."""

from __future__ import annotations

from decimal import Decimal

import pytest

from deltran.money import MINOR_UNITS, AmountError, format_amount, parse_amount

# --------------------------------------------------------------------------- minor units


@pytest.mark.parametrize(
    "currency, units",
    [("AED", 2), ("INR", 2), ("USD", 2), ("EUR", 2), ("GBP", 2), ("SAR", 2), ("JPY", 0), ("KWD", 3), ("BHD", 3)],
)
def test_minor_units_follow_iso_4217(currency, units):
    assert MINOR_UNITS[currency] == units


@pytest.mark.parametrize(
    "value, currency, expected",
    [
        ("100000.00", "AED", "100000.00"),
        ("100000", "AED", "100000.00"),
        ("0.01", "AED", "0.01"),
        ("12.5", "INR", "12.50"),
        ("1500", "JPY", "1500"),
        ("1500.0", "JPY", "1500"),  # trailing zeros are not extra precision
        ("1500.000", "JPY", "1500"),
        ("0.001", "KWD", "0.001"),
        ("1.5", "KWD", "1.500"),
        ("7.125", "BHD", "7.125"),
        (" 42.10 ", "USD", "42.10"),  # surrounding whitespace is tolerated
    ],
)
def test_parse_accepts_and_quantizes_to_the_currency(value, currency, expected):
    amount = parse_amount(value, currency)
    assert isinstance(amount, Decimal)
    assert amount == Decimal(expected)
    # Quantized: exactly the currency's minor units, so str() is canonical.
    assert str(amount) == expected
    assert amount.as_tuple().exponent == -MINOR_UNITS[currency]


def test_parse_accepts_decimal_input():
    amount = parse_amount(Decimal("250.5"), "EUR")
    assert str(amount) == "250.50"


@pytest.mark.parametrize(
    "value, currency",
    [
        ("10.001", "AED"),
        ("0.005", "USD"),
        ("1.5", "JPY"),
        ("0.1", "JPY"),
        ("0.0001", "KWD"),
        ("1.2345", "BHD"),
        (Decimal("1.001"), "EUR"),
    ],
)
def test_parse_rejects_more_decimals_than_the_currency_has(value, currency):
    with pytest.raises(AmountError, match="more decimals"):
        parse_amount(value, currency)


@pytest.mark.parametrize("value", ["0", "0.00", "-0", "-0.01", "-100", Decimal("0"), Decimal("-5")])
def test_parse_rejects_zero_and_negative(value):
    with pytest.raises(AmountError, match="greater than zero|not a decimal number"):
        parse_amount(value, "AED")


@pytest.mark.parametrize(
    "value", ["NaN", "nan", "sNaN", "Infinity", "-Infinity", "inf", Decimal("NaN"), Decimal("Infinity")]
)
def test_parse_rejects_non_finite(value):
    with pytest.raises(AmountError, match="finite|not a decimal number"):
        parse_amount(value, "AED")


@pytest.mark.parametrize("value", ["", "   ", "abc", "1,000.00", "10.00 AED", "1.2.3", "0x10", "--1"])
def test_parse_rejects_non_numeric(value):
    with pytest.raises(AmountError, match="not a decimal number"):
        parse_amount(value, "AED")


@pytest.mark.parametrize("currency", ["XXX", "aed", "", "CHF", "BTC"])
def test_parse_rejects_unsupported_currency(currency):
    with pytest.raises(AmountError, match="not supported"):
        parse_amount("10.00", currency)


def test_amount_error_is_a_value_error():
    # Callers (pydantic validators) rely on it being a ValueError.
    assert issubclass(AmountError, ValueError)


def test_parse_rejects_huge_amounts_with_amount_error():
    with pytest.raises(AmountError):
        parse_amount("1e30", "AED")
    with pytest.raises(AmountError):
        parse_amount(Decimal("1e30"), "AED")


@pytest.mark.parametrize("text", ["1_000.00", "\u0661\u0660\u0660", "+5.00", "1e3", " "])
def test_parse_accepts_only_plain_ascii_decimals(text):
    with pytest.raises(AmountError):
        parse_amount(text, "AED")


# --------------------------------------------------------------------------- format


@pytest.mark.parametrize(
    "amount, currency, expected",
    [
        (Decimal("5"), "AED", "5.00"),
        (Decimal("100000.00000"), "AED", "100000.00"),  # as NUMERIC(38,5) reads back
        (Decimal("0.1"), "USD", "0.10"),
        (Decimal("1500"), "JPY", "1500"),
        (Decimal("1500.00000"), "JPY", "1500"),
        (Decimal("0.5"), "KWD", "0.500"),
        (Decimal("7.12500"), "BHD", "7.125"),
        (Decimal("3.1"), "ZZZ", "3.10"),  # unknown currency: two decimals
    ],
)
def test_format_amount_uses_the_currency_minor_units(amount, currency, expected):
    assert format_amount(amount, currency) == expected


@pytest.mark.parametrize("currency", sorted(MINOR_UNITS))
def test_format_round_trips_parse(currency):
    text = "1234" if MINOR_UNITS[currency] == 0 else "1234." + "5" * MINOR_UNITS[currency]
    assert format_amount(parse_amount(text, currency), currency) == text
