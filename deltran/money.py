"""Money rules: ISO 4217 minor units and exact Decimal amounts (never float)."""

from __future__ import annotations

import re
from decimal import Decimal

# Minor units per ISO 4217 for the currencies DelTran may clear. A currency missing
# here cannot be accepted: we would not know how many decimals it allows.
MINOR_UNITS: dict[str, int] = {
    "AED": 2,
    "INR": 2,
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "SAR": 2,
    "JPY": 0,
    "KWD": 3,
    "BHD": 3,
}


# Plain ASCII decimal notation only: no exponent, sign, underscores or non-ASCII digits.
# 18 integer digits bound the amount well inside NUMERIC(38, 5) and Decimal's precision.
_AMOUNT_TEXT = re.compile(r"^[0-9]{1,18}(\.[0-9]+)?$")


class AmountError(ValueError):
    """An amount that cannot be money in its currency."""


def parse_amount(value: str | Decimal, currency: str) -> Decimal:
    """Parse and check an amount: finite, positive, no more decimals than the currency has."""
    if currency not in MINOR_UNITS:
        raise AmountError(f"currency {currency!r} is not supported")
    if isinstance(value, Decimal):
        amount = value
    else:
        text = str(value).strip()
        if not _AMOUNT_TEXT.match(text):
            raise AmountError(f"amount {value!r} is not a decimal number (digits and an optional point)")
        amount = Decimal(text)
    if not amount.is_finite():
        raise AmountError("amount must be a finite number")
    if amount <= 0:
        raise AmountError("amount must be greater than zero")
    exponent = amount.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    if amount.adjusted() >= 18:
        raise AmountError(f"amount {amount} is too large")
    if -exponent > MINOR_UNITS[currency]:
        raise AmountError(f"amount {amount} has more decimals than {currency} allows ({MINOR_UNITS[currency]})")
    return amount.quantize(Decimal(1).scaleb(-MINOR_UNITS[currency]))


def format_amount(amount: Decimal, currency: str) -> str:
    """The canonical text of an amount: exactly the currency's minor units."""
    return str(amount.quantize(Decimal(1).scaleb(-MINOR_UNITS.get(currency, 2))))


def format_rate(rate: Decimal) -> str:
    """An FX rate as JSON shows it: its digits, without trailing zeros or an exponent."""
    return format(rate.normalize(), "f")
