"""The liquidity router's rules: NET or GROSS, and why. Pure; activities/liquidity.py
reads the open window and applies them (its docstring tells each rule's reason)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

from deltran.money import format_amount
from deltran.vocabulary import SettlementMode


@dataclass(frozen=True)
class OpenWindow:
    id: uuid.UUID
    age_s: float  # since it opened


@dataclass(frozen=True)
class Route:
    mode: SettlementMode
    reason: str
    window_id: uuid.UUID | None
    window_stale: bool = False  # GROSS because the open window is stale (ops must look)


def route(
    *,
    amount: Decimal,
    currency: str,
    urgent: bool,
    gross_threshold: Decimal | None,
    open_window: OpenWindow | None,
    stale_after_s: float,
    prefunded: bool = False,
) -> Route:
    """The routing rules, pure."""
    if prefunded:
        return Route(
            SettlementMode.GROSS, "its fiat is already booked (camt.054 received during screening): settles alone", None
        )
    if urgent:
        return Route(SettlementMode.GROSS, "flagged urgent: settles alone", None)
    if gross_threshold is not None and amount >= gross_threshold:
        return Route(
            SettlementMode.GROSS,
            f"{format_amount(amount, currency)} {currency} reaches the gross threshold of"
            f" {format_amount(gross_threshold, currency)} {currency}",
            None,
        )
    if open_window is None:
        return Route(SettlementMode.GROSS, f"no clearing window is open for {currency}", None)
    if open_window.age_s > stale_after_s:
        return Route(
            SettlementMode.GROSS,
            f"the open {currency} clearing window has not closed for {open_window.age_s:.0f} s (more than"
            f" {stale_after_s:.0f} s): its schedule is paused or not running",
            None,
            window_stale=True,
        )
    return Route(SettlementMode.NET, f"joins the open {currency} clearing window", open_window.id)
