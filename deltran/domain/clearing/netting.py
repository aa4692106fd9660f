"""Multilateral netting of one clearing window, in exact Decimal arithmetic.

The reference implementation: the database nets real windows set-based (one GROUP BY),
and the tests and the fallback use this. It knows nothing of currencies: the caller
nets one currency's window at a time, so every amount here is in the same currency.

A bank's net position is what it receives minus what it pays; positions sum to zero.
net = the sum of the net debit positions (a positive number), efficiency =
1 - net/gross, liquidity saved = gross - net (docs/architecture.md, "The clearing window
lifecycle").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

# Sums of up to millions of 18-digit amounts must be exact: far more digits than the
# default 28, and an Inexact result would be a bug rather than a rounding.
_PRECISION = 120
EFFICIENCY_QUANTUM = Decimal("0.000001")
_ZERO = Decimal(0)


@dataclass(frozen=True)
class GrossObligation:
    """One gross obligation in a window: `payer` owes `payee` `amount` (> 0)."""

    id: str
    payer: str
    payee: str
    amount: Decimal


@dataclass(frozen=True)
class NettingResult:
    positions: dict[str, Decimal]  # bank -> receives minus pays; sums to zero
    gross: Decimal  # sum of the obligations' amounts
    net: Decimal  # sum of the net debit positions, as a positive number
    efficiency: Decimal  # 1 - net/gross (0 when gross is 0), 6 decimals, in [0, 1]
    liquidity_saved: Decimal  # gross - net


def check_obligation(obligation: GrossObligation) -> None:
    """Raise ValueError unless the obligation can be cleared: a positive, finite Decimal
    amount between two different banks."""
    amount = obligation.amount
    if not isinstance(amount, Decimal):
        raise ValueError(f"obligation {obligation.id!r}: amount must be a Decimal, not {type(amount).__name__}")
    if not amount.is_finite() or amount <= 0:
        raise ValueError(f"obligation {obligation.id!r}: amount must be a finite number > 0, got {amount}")
    if obligation.payer == obligation.payee:
        raise ValueError(f"obligation {obligation.id!r}: payer and payee are the same bank")


def net(obligations: Iterable[GrossObligation]) -> NettingResult:
    """Net a window's gross obligations. Every bank named by an obligation gets a
    position, zero included."""
    positions: dict[str, Decimal] = {}
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        gross = _ZERO
        for obligation in obligations:
            check_obligation(obligation)
            gross += obligation.amount
            positions[obligation.payer] = positions.get(obligation.payer, _ZERO) - obligation.amount
            positions[obligation.payee] = positions.get(obligation.payee, _ZERO) + obligation.amount
        net_debit = -sum((p for p in positions.values() if p < 0), _ZERO)
        if gross == 0:
            efficiency = _ZERO.quantize(EFFICIENCY_QUANTUM)
        else:
            # net <= gross always (each debit position is at most the bank's payments),
            # so the ratio is in [0, 1], and so is its rounding to 6 decimals.
            efficiency = (1 - net_debit / gross).quantize(EFFICIENCY_QUANTUM, rounding=ROUND_HALF_EVEN)
        return NettingResult(
            positions=positions,
            gross=gross,
            net=net_debit,
            efficiency=efficiency,
            liquidity_saved=gross - net_debit,
        )


def transfers_to_settle(positions: Mapping[str, Decimal]) -> list[tuple[str, Decimal]]:
    """The funding instructions of a netted window: (bank, amount to fund) for every net
    debtor, largest first (ties by bank id). Once these are funded, applying all of the
    window's obligations together leaves every token balance >= 0."""
    debits = [(bank, -position) for bank, position in positions.items() if position < 0]
    return sorted(debits, key=lambda item: (-item[1], item[0]))
