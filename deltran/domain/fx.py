"""The FX engine's pricing rules: which provider's rate a quote takes, the rate it
states, and how each side's amount is rounded. Pure: deltran/fx.py reads the rate
sheets and stores the quote.

A provider prices a pair BASE/QUOTE (e.g. AED/INR) in QUOTE per one BASE: it buys BASE
at `bid` and sells it at `ask` (bid ≤ ask). A quote converts a source currency into a
target currency, so its rate is the factor from source to target (ISO 20022's
XchgRate: IntrBkSttlmAmt = InstdAmt × XchgRate):

- selling BASE (source BASE, target QUOTE): rate = bid;
- buying BASE (source QUOTE, target BASE): rate = 1 / ask.

A rate is stated with at most 10 decimals and 11 digits in all (the XSD's BaseOneRate),
rounded down — never better for the payer than the provider priced. The debtor agent
gets the best rate among the providers that price the pair (the highest), ties to the
rate posted first, then the BIC.

Rounding, each side to its currency's minor units:
- source fixed (what leaves is given): target = source × rate, rounded down;
- target fixed (what arrives is given): source = target / rate, rounded up.
So the payee never receives more, nor the payer pays less, than the stated rate gives:
the provider is never short by a rounding, and the difference is below one minor unit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, localcontext

from deltran.money import MINOR_UNITS

RATE_FRACTION_DIGITS = 10
RATE_TOTAL_DIGITS = 11
_PRECISION = 50


class FxError(ValueError):
    """A pair, rate or amount that cannot be priced."""


@dataclass(frozen=True)
class Pair:
    base: str
    quote: str

    @classmethod
    def parse(cls, text: str) -> Pair:
        """ "AED/INR" → Pair("AED", "INR"): two different supported currencies."""
        base, slash, quote = text.partition("/")
        if not slash or len(base) != 3 or len(quote) != 3 or not (base + quote).isalpha() or not text.isupper():
            raise FxError(f"pair {text!r} is not BASE/QUOTE in ISO 4217 codes, e.g. AED/INR")
        for currency in (base, quote):
            if currency not in MINOR_UNITS:
                raise FxError(f"currency {currency} is not supported")
        if base == quote:
            raise FxError(f"pair {text} converts a currency into itself")
        return cls(base, quote)

    def __str__(self) -> str:
        return f"{self.base}/{self.quote}"

    def converts(self, source: str, target: str) -> bool:
        return {source, target} == {self.base, self.quote}


@dataclass(frozen=True)
class Rate:
    """A provider's price for a pair, as posted."""

    provider: str  # BIC
    pair: Pair
    bid: Decimal
    ask: Decimal
    valid_until: datetime
    posted_at: datetime


def spread(bid: Decimal, ask: Decimal) -> Decimal:
    """(ask − bid) / mid: the relative width the admin's max_spread bounds."""
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return (ask - bid) / ((ask + bid) / 2)


def check_rate(bid: Decimal, ask: Decimal, max_spread: Decimal) -> None:
    """A posted bid/ask: positive, bid ≤ ask, each a rate a quote can state as is, and no
    wider than the pair allows."""
    if not (bid.is_finite() and ask.is_finite()) or bid <= 0 or ask <= 0:
        raise FxError("bid and ask must be positive numbers")
    if bid > ask:
        raise FxError(f"bid {bid} is above ask {ask}")
    for value in (bid, ask):
        if _state(value) != value:
            raise FxError(f"rate {value} has more than {RATE_TOTAL_DIGITS} digits or {RATE_FRACTION_DIGITS} decimals")
    width = spread(bid, ask)
    if width > max_spread:
        raise FxError(f"spread {width:.6f} is wider than the {max_spread} allowed for the pair")


def applied_rate(rate: Rate, source: str, target: str) -> Decimal:
    """The factor from source to target this sheet gives, as a quote states it."""
    if not rate.pair.converts(source, target):
        raise FxError(f"{rate.pair} does not convert {source} into {target}")
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        factor = rate.bid if source == rate.pair.base else Decimal(1) / rate.ask
        return _state(factor)


def best(rates: Sequence[Rate], source: str, target: str) -> tuple[Rate, Decimal] | None:
    """The sheet giving the most target per source, and its stated rate (None: no sheet)."""
    priced = [(applied_rate(r, source, target), r) for r in rates if r.pair.converts(source, target)]
    priced = [(factor, r) for factor, r in priced if factor > 0]
    if not priced:
        return None
    factor, rate = min(priced, key=lambda p: (-p[0], p[1].posted_at, p[1].provider))
    return rate, factor


def target_for(source_amount: Decimal, rate: Decimal, target: str) -> Decimal:
    """What arrives for a fixed source amount: rounded down to the target's minor units."""
    with localcontext() as ctx:
        ctx.prec = _PRECISION  # the product exact: rounded once, down, never half-even first
        return _to_minor(source_amount * rate, target, ROUND_FLOOR)


def source_for(target_amount: Decimal, rate: Decimal, source: str) -> Decimal:
    """What must leave for a fixed target amount: rounded up to the source's minor units."""
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return _to_minor(target_amount / rate, source, ROUND_CEILING)


def _to_minor(amount: Decimal, currency: str, rounding: str) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return amount.quantize(Decimal(1).scaleb(-MINOR_UNITS[currency]), rounding=rounding)


def _state(factor: Decimal) -> Decimal:
    """A factor as a quote states it: at most 10 decimals and 11 digits, rounded down."""
    integer_digits = max(len(str(int(factor))), 1) if factor >= 1 else 0
    decimals = min(RATE_FRACTION_DIGITS, RATE_TOTAL_DIGITS - integer_digits)
    if decimals < 0:
        raise FxError(f"rate {factor} has more than {RATE_TOTAL_DIGITS} integer digits")
    return factor.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_FLOOR).normalize()
