"""Types that cross the Temporal boundary: workflow input, activity inputs and outputs,
signals and queries. Imported by workflows (inside the sandbox), activities, the API and
the worker, so it stays free of I/O. They travel through the pydantic data converter,
which keeps `Decimal` and `datetime` exact.
"""
from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import StrEnum
from uuid import UUID

from pydantic import BaseModel, ConfigDict


class PaymentStatus(StrEnum):
    SCREENING = "SCREENING"
    REJECTED = "REJECTED"
    AWAITING_SETTLEMENT = "AWAITING_SETTLEMENT"
    SETTLED = "SETTLED"
    COMPLETED = "COMPLETED"  # token minted
    EXPIRED = "EXPIRED"


FINAL_PAYMENT_STATUSES = frozenset(
    {PaymentStatus.REJECTED, PaymentStatus.COMPLETED, PaymentStatus.EXPIRED}
)


class ObligationStatus(StrEnum):
    PENDING = "PENDING"
    SETTLED = "SETTLED"
    RELEASED = "RELEASED"  # payment expired unfunded


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class PaymentInput(_Frozen):
    """What a payment workflow starts with; everything else it reads from Postgres."""

    payment_id: UUID
    end_to_end_id: str
    amount: Decimal
    currency: str
    debtor_agent_bic: str
    creditor_agent_bic: str
    # Fixed at start, so a change of configuration never alters a running payment.
    deadline_s: int


class ComplianceOutcome(_Frozen):
    passed: bool
    reason_code: str | None = None
    reason: str | None = None


class ObligationRef(_Frozen):
    obligation_id: UUID


class FiatBooking(_Frozen):
    """A booked camt.054 credit matched to a payment: carried by the signal that tells
    the workflow the fiat is on DelTran's settlement account."""

    notification_id: UUID
    camt054_entry_reference: str
    bank_confirmation_reference: str
    amount: Decimal
    currency: str
    booking_date: date | None = None


class SettleInput(_Frozen):
    payment_id: UUID
    obligation_id: UUID
    booking: FiatBooking


class MintInput(_Frozen):
    payment_id: UUID
    obligation_id: UUID


class MintResult(_Frozen):
    token_id: UUID
    amount: Decimal
    currency: str


class ExpireInput(_Frozen):
    payment_id: UUID
    obligation_id: UUID


class PaymentState(_Frozen):
    """What the workflow's `state` query returns."""

    payment_id: UUID
    status: PaymentStatus
    obligation_id: UUID | None = None
    token_id: UUID | None = None
    rejection_code: str | None = None
    rejection_reason: str | None = None
    booking: FiatBooking | None = None
