"""A bank's holdings and the statement of its token account, as values: read from the
ledger by deltran/statements.py, written out as JSON by the API and as camt.053 by
deltran/iso20022/camt053.py."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from deltran.vocabulary import TransferKind


@dataclass(frozen=True)
class Balance:
    currency: str
    fiat: Decimal  # fiat the bank booked on DelTran's settlement account (minted into tokens)
    tokens: Decimal
    reserved: Decimal  # tokens set aside for payouts not yet booked
    paid_out: Decimal  # fiat paid out to the bank (its redeemed tokens)
    # cross-currency legs it is owed, held until each payment's other leg settles too
    in_escrow: Decimal = Decimal(0)


@dataclass(frozen=True)
class Posting:
    id: uuid.UUID
    booked_at: datetime
    credit: bool  # to the bank's token account (else from it)
    amount: Decimal
    kind: TransferKind
    # An obligation's transfer: the payment and the other bank.
    obligation_id: uuid.UUID | None
    payment_id: uuid.UUID | None
    end_to_end_id: str | None
    uetr: uuid.UUID | None
    counterparty_bic: str | None
    # Booked fiat: the camt.054 entry behind it.
    entry_reference: str | None
    bank_reference: str | None
    notification_id: uuid.UUID | None = None


@dataclass(frozen=True)
class PostingKey:
    """A posting's place in its account's order: time, credits before debits (within one
    transaction, so a running balance never dips below zero), then id."""

    booked_at: datetime
    debit: bool
    id: uuid.UUID


@dataclass(frozen=True)
class Statement:
    """One page of the statement of [start, end): the period's opening and closing
    balances, the page's postings, and the balances before and after them."""

    bic: str
    currency: str
    start: datetime
    end: datetime  # exclusive; earlier than asked while a posting before it is uncommitted
    opening: Decimal
    closing: Decimal
    page: int  # from 1
    page_opening: Decimal
    page_closing: Decimal
    postings: list[Posting]
    next: PostingKey | None  # where the next page starts; None on the last
    read_at: datetime  # the snapshot's time

    @property
    def last_page(self) -> bool:
        return self.next is None
