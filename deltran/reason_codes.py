"""ISO 20022 external status reason codes (ExternalStatusReason1Code) that DelTran uses
when it rejects or expires a payment. pacs.002 reports carry these."""

from enum import StrEnum


class ReasonCode(StrEnum):
    REGULATORY_REASON = "RR04"  # sanctions screening hit
    DEBTOR_ACCOUNT_INVALID = "AC02"
    CREDITOR_ACCOUNT_INVALID = "AC03"
    DEBTOR_BANK_INVALID = "RC03"
    CREDITOR_BANK_INVALID = "RC04"
    TRANSACTION_FORBIDDEN = "AG01"  # participant suspended
    AMOUNT_NOT_ALLOWED = "AM02"  # above the per-payment limit
    LIMIT_EXCEEDED = "AM14"  # the payer's net debit cap in the window would be breached
    CURRENCY_NOT_ALLOWED = "AM03"
    DUPLICATE = "DUPL"
    CLEARING_TIMEOUT = "AB01"  # not funded before the deadline (AbortedClearingTimeout)
    # A cross-currency payment's FX provider cannot take it (no longer active or quoting, or
    # past its own net debit cap): InvalidIntermediaryAgent. Its booked fiat is refunded.
    FX_PROVIDER_UNAVAILABLE = "RC11"
