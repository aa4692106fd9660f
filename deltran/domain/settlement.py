"""The settlement engine's matching rules: what one camt.054 entry settles, and why not.

A booked credit settles a gross payment it names (UETR first, else EndToEndId) when
amount and currency agree and the payment still waits for it, or funds the window
instruction whose reference it carries (at least the instructed amount; what the
window's settlement does not take of it is refunded, deltran/refunds.py). Everything else is stored as an exception with
its reason. Pure: deltran/intake/camt054.py finds the candidates and stores the outcome.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Protocol, TypeVar

from deltran.vocabulary import EntryOutcome, FundingStatus, PaymentStatus, SettlementMode

# A booked credit can fund a payment that is still being screened or already waits.
FUNDABLE = (PaymentStatus.SCREENING, PaymentStatus.AWAITING_SETTLEMENT)
# Outcomes ops must look at (docs/runbook.md, "camt.054 exceptions").
EXCEPTIONS = frozenset(
    {
        EntryOutcome.UNMATCHED,
        EntryOutcome.AMBIGUOUS,
        EntryOutcome.AMOUNT_MISMATCH,
        EntryOutcome.PAYMENT_NOT_AWAITING,
        EntryOutcome.PAYOUT_NOT_AWAITING,
    }
)
# A window funding carries its instruction's reference as EndToEndId.
FUNDING_REFERENCE_PREFIX = "FUND-"

Outcome = tuple[str, str | None]  # (outcome, why)


class Entry(Protocol):
    @property
    def status(self) -> str: ...
    @property
    def credit_debit(self) -> str: ...
    @property
    def reversal(self) -> bool: ...
    @property
    def amount(self) -> Decimal: ...
    @property
    def currency(self) -> str: ...
    @property
    def uetr(self) -> str | None: ...
    @property
    def end_to_end_id(self) -> str | None: ...


class Payable(Protocol):
    """What an entry can pay: a payment or a window funding instruction."""

    @property
    def amount(self) -> Decimal: ...
    @property
    def currency(self) -> str: ...
    @property
    def status(self) -> str: ...


P = TypeVar("P", bound=Payable)


def may_fund_a_window(entry: Entry) -> bool:
    return entry.end_to_end_id is not None and entry.end_to_end_id.startswith(FUNDING_REFERENCE_PREFIX)


# A payout's reference (deltran/redemptions.py): its DBIT camt.054 carries it as EndToEndId.
PAYOUT_REFERENCE_PREFIX = "RDM-"
# A refund's (deltran/refunds.py): stranded fiat paid back, likewise by a DBIT camt.054.
REFUND_REFERENCE_PREFIX = "RFD-"


class Payout(Payable, Protocol):
    """A redemption's payout."""

    @property
    def notification_id(self) -> object: ...


def is_payout(entry: Entry) -> bool:
    """A debit that names a payout: the settlement agent paying a redemption out."""
    return entry.credit_debit == "DBIT" and (entry.end_to_end_id or "").startswith(PAYOUT_REFERENCE_PREFIX)


def is_refund_payout(entry: Entry) -> bool:
    """A debit that names a refund: the settlement agent paying stranded fiat back."""
    return entry.credit_debit == "DBIT" and (entry.end_to_end_id or "").startswith(REFUND_REFERENCE_PREFIX)


def payout_outcome(entry: Entry, payout: Payout | None, what: str = "redemption") -> Outcome:
    """A booked DBIT books the payout it names when amount and currency agree and the
    payout is instructed and not booked yet. Anything else is an exception: money that
    left DelTran's settlement account without tokens to burn."""
    if entry.status != "BOOK":
        return EntryOutcome.NOT_BOOKED, f"entry status {entry.status} does not book a payout"
    if payout is None:
        return EntryOutcome.UNMATCHED, "no payout has this reference"
    if entry.reversal:
        return EntryOutcome.PAYOUT_NOT_AWAITING, f"a reversal of a payout: look at the {what} by hand"
    if entry.amount != payout.amount or entry.currency != payout.currency:
        return (
            EntryOutcome.AMOUNT_MISMATCH,
            f"booked {entry.amount} {entry.currency}, the payout is {payout.amount} {payout.currency}",
        )
    if payout.status != "PAYOUT_INSTRUCTED" or payout.notification_id is not None:
        return (
            EntryOutcome.PAYOUT_NOT_AWAITING,
            f"the {what} is {payout.status}: it is not awaiting a payout; the payout is to be reversed",
        )
    return EntryOutcome.MATCHED, None


def unsettling(entry: Entry) -> Outcome | None:
    """Why this entry cannot settle any payment, before looking one up; or None."""
    if entry.status != "BOOK":
        return EntryOutcome.NOT_BOOKED, f"entry status {entry.status} does not settle"
    if entry.credit_debit != "CRDT" or entry.reversal:
        return EntryOutcome.NOT_A_CREDIT, "only booked credits settle payments"
    if entry.uetr is None and entry.end_to_end_id is None:
        return EntryOutcome.UNMATCHED, "the entry carries neither UETR nor EndToEndId"
    return None


def choose_payment(entry: Entry, candidates: list[P]) -> tuple[Outcome | None, P | None]:
    """The one payment the entry's reference names, or why there is none. Several
    payments share an EndToEndId (it is unique per instructing bank only): the one of
    the same amount and currency that still waits is chosen, if it is alone."""
    if not candidates:
        return (EntryOutcome.UNMATCHED, "no payment has this reference"), None
    if len(candidates) > 1:
        same = [
            p for p in candidates if p.amount == entry.amount and p.currency == entry.currency and p.status in FUNDABLE
        ]
        if len(same) != 1:
            return (EntryOutcome.AMBIGUOUS, f"{len(candidates)} payments share this EndToEndId"), None
        candidates = same
    return None, candidates[0]


def payment_outcome(entry: Entry, payment: Payable, settlement_mode: str | None) -> Outcome:
    """What the entry does for the payment it names."""
    if payment.amount != entry.amount or payment.currency != entry.currency:
        return (
            EntryOutcome.AMOUNT_MISMATCH,
            f"booked {entry.amount} {entry.currency}, payment is {payment.amount} {payment.currency}",
        )
    if payment.status not in FUNDABLE:
        return EntryOutcome.PAYMENT_NOT_AWAITING, f"payment is {payment.status}"
    if settlement_mode == SettlementMode.NET:
        return (
            EntryOutcome.PAYMENT_NOT_AWAITING,
            "the payment settles net in its clearing window: fund the window's instruction",
        )
    return EntryOutcome.MATCHED, None


def funding_outcome(entry: Entry, instruction: Payable) -> Outcome:
    """What the entry does for the window funding instruction it names."""
    if entry.status != "BOOK":
        return EntryOutcome.NOT_BOOKED, f"entry status {entry.status} does not fund"
    if entry.credit_debit != "CRDT" or entry.reversal:
        return EntryOutcome.NOT_A_CREDIT, "only booked credits fund a window"
    if entry.amount < instruction.amount or entry.currency != instruction.currency:
        return (
            EntryOutcome.AMOUNT_MISMATCH,
            f"booked {entry.amount} {entry.currency}, instructed {instruction.amount} {instruction.currency}",
        )
    if instruction.status != FundingStatus.PENDING:
        return (
            EntryOutcome.PAYMENT_NOT_AWAITING,
            f"funding instruction is {instruction.status}: the booked fiat is to be returned",
        )
    if entry.amount > instruction.amount:
        return EntryOutcome.MATCHED, (
            f"over-funded by {entry.amount - instruction.amount} {entry.currency}:"
            " the excess is refunded when the window settles"
        )
    return EntryOutcome.MATCHED, None
