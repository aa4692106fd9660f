"""Request and response bodies of the HTTP API (separate from the table models)."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from schwifty import IBAN
from schwifty.exceptions import SchwiftyException

from deltran.identity import normalize_bic
from deltran.money import MINOR_UNITS, AmountError, parse_amount


def _valid_bic(value: str) -> str:
    try:
        return normalize_bic(value)
    except SchwiftyException as exc:
        raise ValueError(f"invalid BIC: {exc}") from None


# A BIC checked by schwifty and normalised as DelTran stores it (EBILAEADXXX → EBILAEAD).
Bic = Annotated[str, AfterValidator(_valid_bic)]
_UETR = re.compile(r"^[a-f0-9]{8}-[a-f0-9]{4}-4[a-f0-9]{3}-[89ab][a-f0-9]{3}-[a-f0-9]{12}$")


def _printable(value: str) -> str:
    """ISO 20022 text carries no control characters; PostgreSQL text cannot hold NUL;
    and what XML 1.0 cannot carry (surrogates, U+FFFE, U+FFFF) would make the payment's
    own pacs.002 unwritable."""
    if _CONTROL.search(value):
        raise ValueError("control characters and non-characters are not allowed")
    return value


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff]")
Max35Text = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=35), AfterValidator(_printable)
]
Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=140), AfterValidator(_printable)
]


class AccountChoiceIn(BaseModel):
    """An account as an IBAN, or a domestic account number for countries without IBAN."""

    model_config = ConfigDict(extra="forbid")

    iban: str | None = Field(default=None, description="IBAN, checked against the IBAN registry")
    account: str | None = Field(
        default=None,
        description="Domestic account number, for countries without IBAN (e.g. India)",
        pattern=r"^[A-Za-z0-9]{4,34}$",
    )

    @field_validator("iban")
    @classmethod
    def _iban(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return IBAN(value).compact
        except SchwiftyException as exc:
            raise ValueError(f"invalid IBAN: {exc}") from None

    @model_validator(mode="after")
    def _one_account(self) -> Self:
        if (self.iban is None) == (self.account is None):
            raise ValueError("give exactly one of 'iban' or 'account'")
        return self


class PartyIn(AccountChoiceIn):
    name: Name
    agent_bic: Bic = Field(description="BIC of the party's bank (8 or 11 characters)")


# An amount as JSON carries it: plain decimal text (its currency's minor units checked apart).
AmountText = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,18}(\.[0-9]{1,5})?$")]


class AmountIn(BaseModel):
    """A currency and an amount in it: at most the currency's minor units."""

    model_config = ConfigDict(extra="forbid")

    currency: str = Field(pattern=r"^[A-Z]{3}$", examples=["AED"])
    amount: str = Field(
        description='Decimal string, at most the currency\'s minor units, e.g. "100000.00"',
        pattern=r"^[0-9]{1,18}(\.[0-9]{1,5})?$",
        examples=["100000.00"],
    )

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, value: str) -> str:
        if value not in MINOR_UNITS:
            raise ValueError(f"currency {value} is not supported")
        return value

    @field_validator("amount")
    @classmethod
    def _amount_fits_currency(cls, value: str, info: ValidationInfo) -> str:
        currency = info.data.get("currency")
        if currency is not None:  # else the currency's own error says why
            try:
                parse_amount(value, currency)
            except AmountError as exc:
                raise ValueError(str(exc)) from None
        return value

    @property
    def decimal_amount(self) -> Decimal:
        return parse_amount(self.amount, self.currency)


class PaymentIn(AmountIn):
    end_to_end_id: Max35Text
    debtor: PartyIn
    creditor: PartyIn
    remittance_info: Name | None = None
    urgent: bool = Field(default=False, description="Settle gross, alone, instead of in a clearing window")
    uetr: uuid.UUID | None = Field(
        default=None,
        description="UETR: a UUID version 4 in lower case, as SWIFT gpi and ISO 20022 require",
    )
    fx_quote_id: uuid.UUID | None = Field(
        default=None,
        description=(
            "A cross-currency payment: the debtor agent's FX quote (POST /v1/fx/quotes), used once."
            " `amount` and `currency` are then the quote's source side; the creditor agent receives"
            " the target side"
        ),
    )

    @field_validator("uetr", mode="before")
    @classmethod
    def _uetr(cls, value: object) -> object:
        if value is not None and not (isinstance(value, str) and _UETR.match(value)):
            raise ValueError("UETR must be a lower-case UUID version 4")
        return value

    @field_validator("end_to_end_id")
    @classmethod
    def _real_end_to_end_id(cls, value: str) -> str:
        # With the instructing bank it is the payment's identity (as for pacs.008).
        if value.upper() == "NOTPROVIDED":
            raise ValueError("NOTPROVIDED is not accepted: give the payment its own EndToEndId")
        return value


class PacsTransactionAccepted(BaseModel):
    end_to_end_id: str
    payment_id: uuid.UUID
    status: str


class PaymentAccepted(BaseModel):
    payment_id: uuid.UUID
    workflow_id: str
    status: str


class RollOut(BaseModel):
    """One roll by a window's fallback: the window that could not settle the
    obligation, and the window it joined."""

    from_window_id: uuid.UUID
    to_window_id: uuid.UUID
    reason: str
    rolled_at: datetime


class ObligationOut(BaseModel):
    id: uuid.UUID
    status: str
    amount: str
    currency: str
    payer_bic: str
    payee_bic: str
    settlement_mode: str
    routing_reason: str | None
    clearing_window_id: uuid.UUID | None
    rolled_from_window_id: uuid.UUID | None  # the latest roll's window; every roll is in `rolls`
    fallback_reason: str | None
    rolls: list[RollOut] = []
    created_at: datetime
    settled_at: datetime | None
    bank_confirmation_reference: str | None
    camt054_entry_reference: str | None


class TokenOut(BaseModel):
    id: uuid.UUID
    amount: str
    currency: str


class ReturnSummaryOut(BaseModel):
    return_id: uuid.UUID
    amount: str
    reason_code: str
    returned_at: datetime


class FxLegOut(BaseModel):
    leg: str = Field(description="SOURCE: debtor agent → FX provider; TARGET: FX provider → creditor agent")
    currency: str
    amount: str
    payer_bic: str
    payee_bic: str
    obligation_id: uuid.UUID
    status: str = Field(
        description="PENDING; SETTLED (net: in its payee's escrow until the other leg settles, then paid);"
        " RELEASED or UNWOUND (given back to its payer: the other leg never settled)"
    )
    settlement_mode: str
    clearing_window_id: uuid.UUID | None
    settled_at: datetime | None


class FxOut(BaseModel):
    """A cross-currency payment: its quote and both legs, settled together or not at all."""

    quote_id: uuid.UUID
    rate: str = Field(description="target currency per one source unit, as quoted")
    provider_bic: str
    fixed: str = Field(description="the side the quote fixed: SOURCE (what leaves) or TARGET (what arrives)")
    legs: list[FxLegOut]


class PaymentOut(BaseModel):
    payment_id: uuid.UUID
    workflow_id: str
    status: str
    end_to_end_id: str
    amount: str
    currency: str
    debtor_agent_bic: str
    creditor_agent_bic: str
    created_at: datetime
    obligation: ObligationOut | None
    token: TokenOut | None
    rejection_reason: str | None
    rejection_code: str | None
    risk_score: str | None
    step: str | None = Field(
        default=None,
        description="The step a payment in flight is retrying (e.g. settle_obligation), as the"
        " Temporal UI shows it; null when no step is retrying",
    )
    attempt: int | None = Field(default=None, description="The attempt that step is on")
    last_error: str | None = Field(default=None, description="Why its last attempt failed")
    returns: list[ReturnSummaryOut] = Field(
        default_factory=list, description="What its creditor agent sent back (pacs.004), oldest first"
    )
    fx: FxOut | None = Field(default=None, description="A cross-currency payment's quote and legs; null otherwise")


class PaymentList(BaseModel):
    items: list[PaymentOut]
    next_cursor: str | None = Field(description="pass back as `cursor` for the next page; null on the last")


class PayoutAccountIn(AccountChoiceIn):
    """Where the settlement agent pays the fiat."""


class RedemptionIn(AmountIn):
    payout_account: PayoutAccountIn


class RedemptionAccepted(BaseModel):
    redemption_id: uuid.UUID
    status: str
    reference: str = Field(description="the payout's reference: the EndToEndId of the DBIT camt.054 that books it")


class RedemptionOut(BaseModel):
    redemption_id: uuid.UUID
    bic: str
    status: str = Field(description="RESERVED, PAYOUT_INSTRUCTED, COMPLETED or RELEASED")
    reference: str
    currency: str
    amount: str
    payout_account: dict[str, str]
    deadline: datetime = Field(description="no payout booked by then releases the tokens")
    release_reason: str | None
    created_at: datetime
    updated_at: datetime


class PayoutOut(BaseModel):
    reference: str
    bic: str
    currency: str
    amount: str
    kind: str = Field(
        description="redemption: a bank's tokens turned back into fiat; refund: fiat booked for a payment that can"
        " no longer settle, paid back to its debtor agent (payout_account: its BIC)"
    )
    status: str
    payout_account: dict[str, str]
    deadline: datetime


class PayoutList(BaseModel):
    items: list[PayoutOut]
    next_cursor: str | None = Field(description="pass back as `cursor` for the next page; null on the last")


class PayoutRefusal(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Name


class AccountBalance(BaseModel):
    currency: str
    fiat: str = Field(description="fiat the bank booked on DelTran's settlement account, minted into tokens")
    tokens: str
    reserved: str = Field(description="tokens set aside for payouts not yet booked (not spendable)")
    paid_out: str = Field(description="fiat paid out to the bank for its redeemed tokens")
    in_escrow: str = Field(
        description="cross-currency legs owed to the bank, held until each payment's other leg settles (not spendable)"
    )


class EventOut(BaseModel):
    """An event as GET /v1/events lists it and a webhook delivery's body carries it."""

    id: uuid.UUID = Field(description="the same in every delivery of this event: a second copy is a duplicate")
    type: str = Field(examples=["payment.credited"])
    created_at: datetime
    data: dict = Field(description="the resource: the payment, the funding instruction or the window")


class EventList(BaseModel):
    items: list[EventOut]
    next_cursor: str = Field(description="pass back as `cursor` for what comes next (the same when nothing new came)")


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000, examples=["https://hooks.sbi.example/deltran"])


class WebhookCreated(BaseModel):
    url: str
    secret: str = Field(description="whsec_…: signs every delivery (Standard Webhooks); shown this once")


class WebhookOut(BaseModel):
    url: str
    created_at: datetime


class AccountList(BaseModel):
    accounts: list[AccountBalance]


class PostingOut(BaseModel):
    id: uuid.UUID
    booked_at: datetime
    direction: Literal["CRDT", "DBIT"]
    amount: str
    kind: str = Field(
        description="fiat_booked: tokens minted against booked fiat; obligation: a settled obligation;"
        " reserved / released: tokens set aside for a payout (end_to_end_id: its reference) / given back;"
        " returned: a settled payment sent back by its creditor agent"
    )
    obligation_id: uuid.UUID | None
    payment_id: uuid.UUID | None
    end_to_end_id: str | None
    uetr: uuid.UUID | None
    counterparty_bic: str | None
    camt054_entry_reference: str | None
    bank_reference: str | None


class StatementOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    bic: str
    currency: str
    account: str
    start: datetime = Field(serialization_alias="from")
    end: datetime = Field(
        serialization_alias="to",
        description="exclusive; earlier than asked while a posting begun before it is not yet committed",
    )
    opening_balance: str = Field(description="the period's, at from")
    closing_balance: str = Field(description="the period's, at to")
    page: int = Field(description="from 1")
    page_opening_balance: str = Field(description="before this page's postings")
    page_closing_balance: str = Field(description="after them: page_opening_balance + postings")
    postings: list[PostingOut]
    next_cursor: str | None = Field(description="the next page's cursor; null on the last page")
    read_at: datetime = Field(description="the ledger's state the statement reflects")


class NotificationEntryOut(BaseModel):
    account: str
    entry_reference: str
    tx_index: int
    end_to_end_id: str | None
    amount: str
    currency: str
    status: str
    matched: bool
    outcome: str
    detail: str | None
    payment_id: uuid.UUID | None
    duplicate: bool


class NotificationReceipt(BaseModel):
    message_id: str
    entries: list[NotificationEntryOut]


class Health(BaseModel):
    status: str
    database: str
    temporal: str


class TrackedStateOut(BaseModel):
    at: datetime = Field(description="when the payment reached the state")
    state: str = Field(
        description="SCREENING (sender only), REJECTED (sender only), AWAITING_SETTLEMENT, BOOKED (its camt.054),"
        " SETTLED, COMPLETED, PARTIALLY_RETURNED or RETURNED (each return, its pacs.004), EXPIRED,"
        " CANCELLATION_REQUESTED (a recall: its camt.056 and case; to the creditor agent only when it had to"
        " answer it) or CANCELLED (the camt.029 when the recall came as a camt.056)"
    )
    message_type: str | None = Field(
        description="the ISO 20022 message behind it, e.g. pacs.008.001.08; null where there is none"
        " (a JSON submission, a settlement)"
    )
    message_id: str | None = Field(description="its MsgId; null for a pacs.002 (written when asked for) or no message")


class TrackOut(BaseModel):
    uetr: str = Field(description="as asked")
    payment_id: uuid.UUID
    status: str = Field(description="the payment's status now, as GET /v1/payments/{id}")
    events: list[TrackedStateOut] = Field(description="in the order the payment went through them")


# -- recalls (deltran/cancellations.py) ---------------------------------------------------

CancellationReasonCode = Literal["DUPL", "CUST", "FRAD", "TECH", "UPAY", "AGNT", "CURR", "AM09", "AC03"]
RecallRefusalCode = Literal["ARDT", "LEGL", "CUST", "AGNT", "NOAS", "AC04"]
AdditionalInfo = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=105), AfterValidator(_printable)
]


class CancellationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    payment_id: uuid.UUID
    reason: CancellationReasonCode = Field(
        description="ISO 20022 cancellation reason: DUPL duplicate, CUST requested by the customer, FRAD fraud, "
        "TECH technical problem, UPAY undue payment, AGNT incorrect agent, CURR incorrect currency, "
        "AM09 wrong amount, AC03 invalid creditor account"
    )
    additional_info: AdditionalInfo | None = None


class CancellationOut(BaseModel):
    payment_id: uuid.UUID
    status: Literal["CNCL", "PDCR", "RJCR"] = Field(
        description="CNCL cancelled (it had not settled); PDCR pending: it had settled, its creditor agent "
        "decides (an investigation); RJCR rejected, by the creditor agent or because the payment had already "
        "ended without settling"
    )
    reason: str = Field(description="the ISO code behind the status: the refusal's for RJCR, else the request's")
    reason_detail: str | None = Field(description="the refusal's or the cancellation's words, where there are any")
    cancellation_id: uuid.UUID
    case_id: str = Field(description="the recall's case: the camt.056's Assgnmt/Id, or DelTran's for JSON")
    payment_status: str


class InvestigationOut(BaseModel):
    cancellation_id: uuid.UUID
    case_id: str
    payment_id: uuid.UUID
    end_to_end_id: str
    uetr: uuid.UUID | None
    amount: str
    currency: str
    debtor_agent_bic: str
    creditor_agent_bic: str
    payment_status: str
    status: Literal["CNCL", "PDCR", "RJCR"]
    reason_code: str
    reason: str | None
    status_reason_code: str | None
    status_reason: str | None
    requested_at: datetime
    resolved_at: datetime | None
    return_id: uuid.UUID | None = Field(description="the return that answered it, when its creditor agent accepted it")


class InvestigationList(BaseModel):
    items: list[InvestigationOut]
    next_cursor: str | None = Field(description="pass back as `cursor` for the next page; null on the last")


class InvestigationRejection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason_code: RecallRefusalCode = Field(
        description="ISO 20022 cancellation rejection reason: ARDT already returned, LEGL legal decision, "
        "CUST the creditor refuses, AGNT the agent's decision, NOAS no answer from the creditor, AC04 closed account"
    )
    reason: AdditionalInfo | None = None


# -- returns (deltran/returns.py) -----------------------------------------------------------

ReturnReasonCode = Literal[
    "AC01", "AC03", "AC04", "AC06", "AG01", "AM09", "BE04", "CUST", "DUPL", "FOCR", "FRAD", "MS02", "MS03", "RR04"
]


class ReturnIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    payment_id: uuid.UUID
    amount: AmountText = Field(
        description="what to send back, in the payment's currency and its minor units; at most what is left"
    )
    reason_code: ReturnReasonCode = Field(
        description="ISO 20022 return reason: AC04 closed account, AC06 blocked, CUST requested by the customer,"
        " AC01/AC03 wrong account, AM09 wrong amount, DUPL duplicate, FRAD fraud, FOCR following a recall, …"
    )
    reason: AdditionalInfo | None = None


class ReturnOut(BaseModel):
    return_id: uuid.UUID
    payment_id: uuid.UUID
    end_to_end_id: str
    uetr: uuid.UUID | None
    amount: str
    currency: str
    reason_code: str
    reason: str | None
    payment_status: str = Field(description="PARTIALLY_RETURNED, or RETURNED once all of it is back")
    payment_amount: str
    debtor_agent_bic: str
    creditor_agent_bic: str
    returned_at: datetime
