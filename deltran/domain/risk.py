"""The risk engine's score: amount, corridor and velocity, 0-100. Pure;
activities/risk.py gathers its inputs and checks the net debit cap."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal


@dataclass(frozen=True)
class RiskAssessment:
    score: Decimal
    factors: dict = field(default_factory=dict)
    breach: str | None = None  # why the net debit cap refuses this payment


def score(
    *,
    amount: Decimal,
    gross_threshold: Decimal | None,
    cross_border: bool,
    high_risk_corridor: bool,
    recent_payments: int,
) -> tuple[Decimal, dict]:
    """The risk score and its factors, pure."""
    amount_factor = min(Decimal(50), Decimal(50) * amount / gross_threshold) if gross_threshold else Decimal(25)
    corridor_factor = Decimal(25) if high_risk_corridor else Decimal(10) if cross_border else Decimal(0)
    velocity_factor = min(Decimal(25), Decimal(5) * recent_payments)
    total = (amount_factor + corridor_factor + velocity_factor).quantize(Decimal("0.01"))
    factors = {
        "amount": str(amount_factor.quantize(Decimal("0.01"))),
        "corridor": str(corridor_factor),
        "velocity": str(velocity_factor),
        "recent_payments": recent_payments,
    }
    return min(total, Decimal(100)), factors
