"""The token engine's rules: when an obligation may be minted. Pure (no database,
no Temporal): activities/tokens/ applies them, tests/unit/test_mint_rules.py covers
every case."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from deltran.vocabulary import SETTLED_WINDOW_STATUSES, EntryOutcome, ObligationStatus


class Obligation(Protocol):
    """What the rules read of an obligation (a row, or a batch's evidence row)."""

    @property
    def status(self) -> str: ...
    @property
    def bank_confirmation_reference(self) -> str | None: ...
    @property
    def camt054_entry_reference(self) -> str | None: ...
    @property
    def amount(self) -> Decimal: ...
    @property
    def currency(self) -> str: ...


@dataclass(frozen=True)
class FiatEvidence:
    """The booked camt.054 entry the obligation's closure refers to."""

    entry_status: str
    credit_debit: str
    reversal: bool
    amount: Decimal
    currency: str
    outcome: str


def mint_refusal(obligation: Obligation, fiat: FiatEvidence | None) -> str | None:
    """Why this obligation may not be minted, or None. Pure: tested for every case."""
    if obligation.status != ObligationStatus.SETTLED:
        return f"obligation is {obligation.status}, not SETTLED"
    if not obligation.bank_confirmation_reference or not obligation.camt054_entry_reference:
        return "the bank confirmation reference is missing"
    if fiat is None:
        return "no booked camt.054 entry backs this obligation"
    if fiat.entry_status != "BOOK" or fiat.credit_debit != "CRDT" or fiat.reversal:
        return "the backing camt.054 entry is not a booked credit"
    if fiat.outcome != EntryOutcome.MATCHED:
        return f"the backing camt.054 entry is {fiat.outcome}"
    if fiat.amount != obligation.amount or fiat.currency != obligation.currency:
        return (
            f"booked fiat {fiat.amount} {fiat.currency} does not equal the obligation's"
            f" {obligation.amount} {obligation.currency}"
        )
    return None


def net_mint_refusal(obligation: Obligation, window_status: str | None, transfer_posted: bool) -> str | None:
    """Why a net obligation may not be minted, or None. Pure."""
    if obligation.status != ObligationStatus.SETTLED:
        return f"obligation is {obligation.status}, not SETTLED"
    if not obligation.bank_confirmation_reference or not obligation.camt054_entry_reference:
        return "the window settlement reference is missing"
    if window_status not in SETTLED_WINDOW_STATUSES:
        return f"its clearing window is {window_status}, not settled"
    if not transfer_posted:
        return "the window's settlement did not move this obligation's tokens"
    return None
