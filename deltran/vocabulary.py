"""DelTran's vocabulary: every status and kind a row, a message or a workflow carries,
one enum each. The database's CHECK constraints are generated from these
(`sql_in`), so the two cannot drift; the values are the stored ones and never change.
Safe inside the workflow sandbox: no I/O."""

from __future__ import annotations

from enum import StrEnum
from typing import Final


def sql_in(column: str, values: type[StrEnum]) -> str:
    """A CHECK constraint's condition: `column` holds one of the enum's values."""
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class PaymentStatus(StrEnum):
    SCREENING = "SCREENING"
    REJECTED = "REJECTED"
    AWAITING_SETTLEMENT = "AWAITING_SETTLEMENT"
    SETTLED = "SETTLED"
    COMPLETED = "COMPLETED"  # token minted
    EXPIRED = "EXPIRED"


FINAL_PAYMENT_STATUSES = frozenset({PaymentStatus.REJECTED, PaymentStatus.COMPLETED, PaymentStatus.EXPIRED})


class ObligationStatus(StrEnum):
    PENDING = "PENDING"
    SETTLED = "SETTLED"
    RELEASED = "RELEASED"  # payment expired unfunded


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


class AccountKind(StrEnum):
    FIAT = "fiat"  # fiat the bank booked on DelTran's settlement account (debit-normal)
    TOKEN = "token"  # the bank's tokens (credit-normal)


class TransferKind(StrEnum):
    FIAT_BOOKED = "fiat_booked"  # fiat[bank] → token[bank]: a booked entry minted
    OBLIGATION = "obligation"  # token[payer] → token[payee]: a settled obligation


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
