"""Types that cross the Temporal boundary: workflow input, activity inputs and outputs,
signals and queries. Imported by workflows (inside the sandbox), activities, the API and
the worker, so it stays free of I/O. They travel through the pydantic data converter,
which keeps `Decimal` and `datetime` exact.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from deltran.vocabulary import PaymentStatus, SettlementMode, WindowStatus


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
    # How long one attempt of a step may take before Temporal retries it elsewhere
    # (a worker that died mid-step is noticed after this long).
    step_timeout_s: int = 30
    # How many times a step runs as a local activity (whose retries ops cannot see)
    # before it runs on as a regular activity (visible in the UI and the API).
    local_step_attempts: int = 6
    # Whether the steps may run as local activities (workflows/payment.py). Absent (None)
    # in inputs recorded before this field: their history's patch marker decides.
    local_steps: bool | None = None


class ComplianceOutcome(_Frozen):
    passed: bool
    reason_code: str | None = None
    reason: str | None = None


class ObligationCreated(_Frozen):
    """The obligation engine's answer when the obligation exists: it, and how it settles."""

    accepted: Literal[True] = True  # tells the two answers apart (and is what older readers read)
    obligation_id: UUID
    settlement_mode: SettlementMode = SettlementMode.GROSS
    routing_reason: str | None = None
    window_id: UUID | None = None
    # A cross-currency payment's second leg (provider → creditor agent), settled with the
    # first (activities/fx_settlement.py); None for a payment in one currency.
    target_obligation_id: UUID | None = None
    target_window_id: UUID | None = None


class ObligationRefused(_Frozen):
    """The obligation engine's answer when the risk engine refused it: no obligation exists."""

    accepted: Literal[False] = False
    reason_code: str
    reason: str


# Payloads recorded before the two answers were split read as one or the other: a
# refusal had accepted=false and its reason, an obligation its id (extra keys ignored).
# Keep this a plain (smart) union: the oldest recorded payloads carry no `accepted` at
# all, so a discriminator on it would not read them.
ObligationOutcome = ObligationCreated | ObligationRefused


class FiatBooking(_Frozen):
    """A booked camt.054 credit matched to a payment: carried by the signal that tells
    the workflow the fiat is on DelTran's settlement account."""

    notification_id: UUID
    camt054_entry_reference: str
    bank_confirmation_reference: str
    amount: Decimal
    currency: str
    booking_date: date | None = None


class WindowSettlement(_Frozen):
    """A clearing window settled: every net debtor's funding was booked (or the
    fallback settled what they covered). Signalled to each payment it settled."""

    window_id: UUID
    settlement_reference: str


class SettleInput(_Frozen):
    payment_id: UUID
    obligation_id: UUID
    # Exactly one: the payment's own booked camt.054 (gross) or its window (net).
    booking: FiatBooking | None = None
    window: WindowSettlement | None = None


class ClearingInput(_Frozen):
    """What a clearing-window run starts with (the schedule's action)."""

    currency: str
    funding_timeout_s: int


class CloseInput(_Frozen):
    currency: str
    closed_by: str  # the clearing workflow's id: one close per run, retries included


class NetInput(_Frozen):
    window_id: UUID
    funding_timeout_s: int


class WindowRef(_Frozen):
    window_id: UUID | None  # None: nothing was open (no schedule had opened a window)


class FundingInstructionOut(_Frozen):
    bic: str
    amount: Decimal
    reference: str


class NettingSummary(_Frozen):
    window_id: UUID
    obligations_count: int
    gross: Decimal
    net: Decimal
    efficiency: Decimal
    liquidity_saved: Decimal
    netting_ms: int
    instructions: list[FundingInstructionOut]


class WindowOutcome(_Frozen):
    window_id: UUID
    status: WindowStatus  # SETTLED or PARTIALLY_SETTLED
    settlement_reference: str
    settled_obligations: int
    rolled_obligations: int
    fallback_method: str | None = None


class ClearingState(_Frozen):
    currency: str
    window_id: UUID | None = None
    status: WindowStatus | Literal["NO_WINDOW"] = WindowStatus.CLOSING
    funded_references: list[str] = []
    instructions: list[FundingInstructionOut] = []


class MintInput(_Frozen):
    payment_id: UUID
    obligation_id: UUID


class MintResult(_Frozen):
    token_id: UUID
    amount: Decimal
    currency: str


class FxOutcome(_Frozen):
    """Where a cross-currency payment stands after a settlement or expiry step: still
    AWAITING_SETTLEMENT (a leg waits), COMPLETED (both legs paid; the creditor agent's
    token) or EXPIRED / CANCELLED (no leg paid)."""

    status: PaymentStatus
    token_id: UUID | None = None
    settled_legs: int = 0


class ExpireInput(_Frozen):
    payment_id: UUID
    obligation_id: UUID


class CancelRequest(_Frozen):
    """The debtor agent's recall, as the payment workflow's `cancel` update carries it."""

    payment_id: UUID
    case_id: str  # the camt.056's Assgnmt/Id, or DelTran's for a JSON request
    reason_code: str  # ISO 20022 cancellation reason (deltran/cancellations.py)
    reason: str | None = None
    requested_by: UUID  # the debtor agent's participant id
    message_name: str | None = None  # "camt.056.001.12" when it came as one


class CancelOutcome(_Frozen):
    """Whether the payment was cancelled; if not, the status that stopped it (a payment
    that has settled, or whose window has closed, is its creditor agent's to return)."""

    cancelled: bool
    status: PaymentStatus
    detail: str


class PaymentState(_Frozen):
    """What the workflow's `state` query returns."""

    payment_id: UUID
    status: PaymentStatus
    obligation_id: UUID | None = None
    token_id: UUID | None = None
    rejection_code: str | None = None
    rejection_reason: str | None = None
    booking: FiatBooking | None = None
    settlement_mode: SettlementMode | None = None
    window_id: UUID | None = None
    # A cross-currency payment's second leg, and how many of its legs have settled.
    target_obligation_id: UUID | None = None
    settled_legs: int | None = None


class ReconciliationResult(_Frozen):
    """One account-monitor run, as its workflow returns it (the run itself is a row)."""

    run_id: str
    ok: bool
    breaks: int


class DeliveryInput(_Frozen):
    """A bank's webhook delivery workflow: deliver its events numbered after `after_seq`."""

    bic: str
    after_seq: int = 0
    # Delivery policy (deltran/config.py webhook_*), fixed per run so a replay sees the same.
    retry_first_s: float = 1.0
    retry_longest_s: float = 600.0
    period_s: int = 24 * 3600
    timeout_s: float = 10.0


class PendingDeliveries(_Frozen):
    """The next events to deliver, in order; `webhook` False when the bank has none (the
    workflow then ends: setting one starts it again)."""

    webhook: bool
    events: list[tuple[UUID, int]]  # (event id, seq)
    through: int = 0  # the last seq numbered when read: a signal up to it tells nothing new


class DeliveryOutcome(_Frozen):
    delivered: bool  # False: nothing to deliver (already delivered, or no webhook any more)


class RedemptionInput(_Frozen):
    """A redemption's workflow: its payout instructed, then burned or released."""

    redemption_id: UUID
    deadline_s: int  # from the start, for runs started without `deadline`
    deadline: datetime | None = None  # no payout booked by then releases the tokens


class PayoutState(_Frozen):
    status: str  # the redemption's (deltran.vocabulary.RedemptionStatus)
    booked: bool  # its DBIT camt.054 is matched: the tokens must burn
