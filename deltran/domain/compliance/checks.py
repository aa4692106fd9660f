"""The compliance engine's static checks: agents' BICs, accounts (IBAN against the
registry via schwifty, or a domestic account number where the country has no IBAN),
currency and amount. Pure: no database, no sanctions list (screening.py), no Temporal;
the pacs.008 reader uses the same checks on the way in."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from schwifty import BIC, IBAN
from schwifty.exceptions import SchwiftyException

from deltran.config import Settings
from deltran.money import AmountError, parse_amount
from deltran.reason_codes import ReasonCode


class Payment(Protocol):
    """What the static checks read of a payment."""

    @property
    def debtor_agent_bic(self) -> str: ...
    @property
    def creditor_agent_bic(self) -> str: ...
    @property
    def debtor_iban(self) -> str | None: ...
    @property
    def debtor_account(self) -> str | None: ...
    @property
    def creditor_iban(self) -> str | None: ...
    @property
    def creditor_account(self) -> str | None: ...
    @property
    def currency(self) -> str: ...
    @property
    def amount(self) -> Decimal: ...


# Domestic account numbers (e.g. Indian accounts, which have no IBAN): ISO 20022
# Othr/Id is Max34Text; we accept letters and digits only.
_DOMESTIC_ACCOUNT = re.compile(r"^[A-Za-z0-9]{4,34}$")


@dataclass(frozen=True)
class Rejection:
    code: ReasonCode
    reason: str


def check_account(iban: str | None, account: str | None, *, party: str) -> str | None:
    """Why this party's account is invalid, or None."""
    if iban is not None:
        try:
            IBAN(iban)
        except SchwiftyException as exc:
            return f"{party} IBAN {iban!r} is invalid: {exc}"
        return None
    if account is None or not _DOMESTIC_ACCOUNT.match(account):
        return f"{party} account {account!r} is not a valid account number"
    return None


def check_bic(bic: str) -> str | None:
    try:
        BIC(bic)
    except SchwiftyException as exc:
        return f"BIC {bic!r} is invalid: {exc}"
    return None


def static_checks(payment: Payment, settings: Settings) -> Rejection | None:
    """The checks that need neither the database nor the sanctions list."""
    for bic, code in (
        (payment.debtor_agent_bic, ReasonCode.DEBTOR_BANK_INVALID),
        (payment.creditor_agent_bic, ReasonCode.CREDITOR_BANK_INVALID),
    ):
        if (problem := check_bic(bic)) is not None:
            return Rejection(code, problem)
    if problem := check_account(payment.debtor_iban, payment.debtor_account, party="debtor"):
        return Rejection(ReasonCode.DEBTOR_ACCOUNT_INVALID, problem)
    if problem := check_account(payment.creditor_iban, payment.creditor_account, party="creditor"):
        return Rejection(ReasonCode.CREDITOR_ACCOUNT_INVALID, problem)
    if payment.currency not in settings.supported_currencies:
        return Rejection(ReasonCode.CURRENCY_NOT_ALLOWED, f"currency {payment.currency} is not cleared")
    try:
        parse_amount(payment.amount, payment.currency)
    except AmountError as exc:
        return Rejection(ReasonCode.AMOUNT_NOT_ALLOWED, str(exc))
    if payment.amount > settings.max_payment_amount:
        return Rejection(
            ReasonCode.AMOUNT_NOT_ALLOWED,
            f"amount {payment.amount} exceeds the limit of {settings.max_payment_amount}",
        )
    return None
