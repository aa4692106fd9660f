"""DelTran's vocabulary: every status and kind a row, a message or a workflow carries,
one enum each. The database's CHECK constraints are generated from these
(`sql_in`), so the two cannot drift; the values are the stored ones and never change.
Safe inside the workflow sandbox: no I/O."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Final


def sql_in(column: str, values: Iterable[StrEnum]) -> str:
    """A CHECK constraint's condition: `column` holds one of the enum's values."""
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class PaymentStatus(StrEnum):
    SCREENING = "SCREENING"
    REJECTED = "REJECTED"
    AWAITING_SETTLEMENT = "AWAITING_SETTLEMENT"
    SETTLED = "SETTLED"
    COMPLETED = "COMPLETED"  # token minted
    EXPIRED = "EXPIRED"
    CANCELLED = "CANCELLED"  # recalled by its debtor agent before it settled (camt.056)
    # Settled and completed, then sent back by its creditor agent (pacs.004), in part or whole.
    PARTIALLY_RETURNED = "PARTIALLY_RETURNED"
    RETURNED = "RETURNED"


FINAL_PAYMENT_STATUSES = frozenset(
    {
        PaymentStatus.REJECTED,
        PaymentStatus.COMPLETED,
        PaymentStatus.EXPIRED,
        PaymentStatus.CANCELLED,
        PaymentStatus.PARTIALLY_RETURNED,
        PaymentStatus.RETURNED,
    }
)
# Settled, its tokens moved to the creditor agent: what a return may send back.
RETURNABLE_PAYMENT_STATUSES = frozenset({PaymentStatus.COMPLETED, PaymentStatus.PARTIALLY_RETURNED})


class ObligationStatus(StrEnum):
    PENDING = "PENDING"
    SETTLED = "SETTLED"
    RELEASED = "RELEASED"  # payment expired unfunded, or cancelled before it settled
    # A cross-currency leg settled into escrow whose other leg never settled: its tokens
    # went back to its payer (deltran/fx_settlement.py), so no one holds one leg only.
    UNWOUND = "UNWOUND"


class ObligationLeg(StrEnum):
    """Which leg of its payment an obligation is. A payment in one currency has one
    obligation, its SOURCE leg; a cross-currency payment has two, settled together."""

    SOURCE = "SOURCE"  # debtor agent → creditor agent; or, cross-currency, → the FX provider
    TARGET = "TARGET"  # cross-currency: the FX provider → the creditor agent, in the target currency


class SettlementMode(StrEnum):
    """How an obligation settles, as the liquidity router chose."""

    GROSS = "GROSS"  # alone, on its own booked camt.054
    NET = "NET"  # in its currency's clearing window


class WindowStatus(StrEnum):
    OPEN = "OPEN"
    CLOSING = "CLOSING"
    AWAITING_FUNDING = "AWAITING_FUNDING"
    SETTLED = "SETTLED"
    PARTIALLY_SETTLED = "PARTIALLY_SETTLED"  # the fallback settled what the fundings covered


SETTLED_WINDOW_STATUSES = frozenset({WindowStatus.SETTLED, WindowStatus.PARTIALLY_SETTLED})

# A clearing workflow that found no open window to close ends in this instead of a
# window status (it is no row's status, so no CHECK constraint holds it).
NO_WINDOW: Final = "NO_WINDOW"


class FundingStatus(StrEnum):
    """A net debtor's funding instruction."""

    PENDING = "PENDING"
    FUNDED = "FUNDED"
    EXPIRED = "EXPIRED"  # not funded by the window's deadline


class EntryOutcome(StrEnum):
    """What a stored camt.054 entry did (deltran/domain/settlement.py)."""

    MATCHED = "MATCHED"
    UNMATCHED = "UNMATCHED"
    AMBIGUOUS = "AMBIGUOUS"
    NOT_BOOKED = "NOT_BOOKED"
    NOT_A_CREDIT = "NOT_A_CREDIT"
    AMOUNT_MISMATCH = "AMOUNT_MISMATCH"
    PAYMENT_NOT_AWAITING = "PAYMENT_NOT_AWAITING"
    PAYOUT_NOT_AWAITING = "PAYOUT_NOT_AWAITING"  # a booked payout (DBIT) whose redemption was released or done


class AccountKind(StrEnum):
    FIAT = "fiat"  # fiat the bank booked on DelTran's settlement account (debit-normal)
    TOKEN = "token"  # the bank's tokens (credit-normal)
    RESERVED = "reserved"  # its tokens set aside for a payout: not spendable, still supply (credit-normal)
    PAID_OUT = "paid_out"  # fiat paid out to it from DelTran's settlement account (credit-normal)
    # Tokens a cross-currency leg's window moved to it, held until the payment's other leg
    # settles too (payment versus payment): not spendable, still supply (credit-normal).
    ESCROW = "escrow"


# Token supply is what these hold; backing is fiat less paid_out (deltran/ledger.py).
SUPPLY_KINDS = (AccountKind.TOKEN, AccountKind.RESERVED, AccountKind.ESCROW)
CREDIT_NORMAL_KINDS = (AccountKind.TOKEN, AccountKind.RESERVED, AccountKind.PAID_OUT, AccountKind.ESCROW)


class TransferKind(StrEnum):
    FIAT_BOOKED = "fiat_booked"  # fiat[bank] → token[bank]: a booked entry minted
    OBLIGATION = "obligation"  # token[payer] → token[payee]: a settled obligation
    RESERVED = "reserved"  # token[bank] → reserved[bank]: tokens set aside for a payout
    RELEASED = "released"  # reserved[bank] → token[bank]: a payout refused or timed out
    REDEEMED = "redeemed"  # reserved[bank] → paid_out[bank]: the payout booked, its tokens burned
    RETURNED = "returned"  # token[creditor agent] → token[debtor agent]: a settled payment sent back
    ESCROW_RELEASED = "escrow_released"  # escrow[payee] → token[payee]: both legs of an FX payment settled
    ESCROW_UNWOUND = "escrow_unwound"  # escrow[payee] → token[payer]: the other leg never settled


class RedemptionStatus(StrEnum):
    RESERVED = "RESERVED"  # tokens set aside, the payout not yet instructed
    PAYOUT_INSTRUCTED = "PAYOUT_INSTRUCTED"  # listed for the settlement agent (GET /v1/payouts)
    COMPLETED = "COMPLETED"  # its DBIT camt.054 booked: tokens burned, fiat paid out
    RELEASED = "RELEASED"  # refused by the agent or past its deadline: tokens back


FINAL_REDEMPTION_STATUSES = frozenset({RedemptionStatus.COMPLETED, RedemptionStatus.RELEASED})


class EventType(StrEnum):
    """What a bank is told (GET /v1/events, its webhook): the Standard Webhooks type names."""

    PAYMENT_ACCEPTED = "payment.accepted"  # recorded, screening begins (to the debtor agent)
    PAYMENT_REJECTED = "payment.rejected"  # to the debtor agent only: a creditor is not tipped off
    PAYMENT_AWAITING_SETTLEMENT = "payment.awaiting_settlement"
    PAYMENT_SETTLED = "payment.settled"
    PAYMENT_COMPLETED = "payment.completed"  # tokens moved (to the debtor agent)
    PAYMENT_CREDITED = "payment.credited"  # the same moment, to the creditor agent
    PAYMENT_EXPIRED = "payment.expired"
    PAYMENT_CANCELLED = "payment.cancelled"  # recalled before settlement (to the banks that knew of it)
    # A recall of a payment that had settled: to the creditor agent, whose answer it needs,
    # and its resolution (rejected by the creditor agent) to the debtor agent.
    CANCELLATION_REQUESTED = "cancellation.requested"
    CANCELLATION_REJECTED = "cancellation.rejected"
    PAYMENT_RETURNED = "payment.returned"  # a return (pacs.004), to both agents
    FUNDING_INSTRUCTED = "funding.instructed"  # to a window's net debtor
    WINDOW_SETTLED = "window.settled"  # to every bank with a position in the window
    REDEMPTION_RESERVED = "redemption.reserved"  # to the redeeming bank, as each of these
    REDEMPTION_PAYOUT_INSTRUCTED = "redemption.payout_instructed"
    REDEMPTION_COMPLETED = "redemption.completed"
    REDEMPTION_RELEASED = "redemption.released"
    # Fiat booked that could settle nothing, paid back to the bank it is owed to: when the
    # settlement agent is told to pay it (GET /v1/payouts), and when its DBIT books it.
    REFUND_INSTRUCTED = "refund.instructed"
    REFUND_COMPLETED = "refund.completed"


class CancellationStatus(StrEnum):
    """A recall's answer, camt.029's confirmation codes (ExternalInvestigationExecution-
    ConfirmationCode): what the debtor agent is told."""

    CNCL = "CNCL"  # cancelled as requested: the payment had not settled
    PDCR = "PDCR"  # pending: it had settled, the creditor agent decides (an investigation)
    RJCR = "RJCR"  # rejected: by the creditor agent, or the payment can no longer be recalled


class RefundStatus(StrEnum):
    """Fiat booked for nothing it can still settle, paid back to its bank by the
    settlement agent (GET /v1/payouts, kind refund): the same words as a payout's."""

    PAYOUT_INSTRUCTED = "PAYOUT_INSTRUCTED"  # listed for the settlement agent
    COMPLETED = "COMPLETED"  # its DBIT camt.054 booked
    # Returned outside DelTran: the entries stranded before refunds existed (ops returned
    # them by hand, as the runbook then said), never to be paid a second time.
    BY_HAND = "BY_HAND"
    # Held by ops or compliance (POST /v1/admin/refunds/{reference}/hold): off the
    # settlement agent's list until released, and listed by the end-of-day run meanwhile.
    HELD = "HELD"


class ReturnReason(StrEnum):
    """Why a payment comes back (ISO 20022 ExternalReturnReason1Code, those a creditor
    agent uses for a credit transfer)."""

    AC01 = "AC01"  # incorrect account number
    AC03 = "AC03"  # invalid creditor account number
    AC04 = "AC04"  # closed account
    AC06 = "AC06"  # blocked account
    AG01 = "AG01"  # transaction forbidden on this account
    AM09 = "AM09"  # wrong amount
    BE04 = "BE04"  # missing creditor address
    CUST = "CUST"  # requested by the customer
    DUPL = "DUPL"  # duplicate payment
    FOCR = "FOCR"  # following a cancellation request (a recall accepted)
    FRAD = "FRAD"  # fraudulent origin
    MS02 = "MS02"  # not specified, by the customer
    MS03 = "MS03"  # not specified, by the agent
    RR04 = "RR04"  # regulatory reason


class DeliveryStatus(StrEnum):
    """An event's delivery to its bank's webhook."""

    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"  # retried for the whole delivery period; still listed at GET /v1/events
    NO_WEBHOOK = "NO_WEBHOOK"  # the bank had none registered when its turn came


class ParticipantStatus(StrEnum):
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"


class OperatorRole(StrEnum):
    SETTLEMENT_AGENT = "settlement_agent"
    ADMIN = "admin"


class BreakerState(StrEnum):
    OPEN = "OPEN"  # minting of the currency stopped
    CLOSED = "CLOSED"


class ReconciliationTier(StrEnum):
    INTRADAY = "intraday"
    END_OF_DAY = "end_of_day"


class FxQuoteStatus(StrEnum):
    OPEN = "OPEN"  # usable until it expires (expiry is its expires_at, not a status)
    USED = "USED"  # taken by a payment: a quote is used at most once


class FxFixedSide(StrEnum):
    SOURCE = "SOURCE"  # the payer fixed what leaves
    TARGET = "TARGET"  # the payee's side fixed what arrives
