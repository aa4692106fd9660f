"""Compliance checks that need neither the database nor the sanctions list."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from deltran.config import Settings
from deltran.db.tables import Payment
from deltran.domain.compliance.checks import Rejection, check_account, check_bic, static_checks
from deltran.reason_codes import ReasonCode

AE_IBAN = "AE070331234567890123456"
AE_IBAN_BAD_CHECKSUM = "AE070331234567890123457"
INDIAN_ACCOUNT = "30001234567"


# --------------------------------------------------------------------------- accounts


def test_valid_ae_iban_passes():
    assert check_account(AE_IBAN, None, party="debtor") is None


def test_iban_with_broken_checksum_is_invalid():
    problem = check_account(AE_IBAN_BAD_CHECKSUM, None, party="debtor")
    assert problem is not None
    assert problem.startswith("debtor IBAN")
    assert AE_IBAN_BAD_CHECKSUM in problem
    assert "checksum" in problem.lower()


@pytest.mark.parametrize("iban", ["garbage", "AE07", "ZZ070331234567890123456", "AE07033123456789012345", ""])
def test_garbage_iban_is_invalid(iban):
    problem = check_account(iban, None, party="creditor")
    assert problem is not None and problem.startswith("creditor IBAN")


def test_domestic_account_without_iban_passes_for_india():
    assert check_account(None, INDIAN_ACCOUNT, party="creditor") is None


@pytest.mark.parametrize(
    "account",
    ["garbage!!", "3000 1234 567", "123", "A" * 35, "", "30001234567;DROP", "३०००१२३४"],
)
def test_garbage_domestic_account_is_invalid(account):
    problem = check_account(None, account, party="creditor")
    assert problem is not None
    assert problem.startswith("creditor account")


def test_no_account_at_all_is_invalid():
    problem = check_account(None, None, party="debtor")
    assert problem is not None and "debtor account None" in problem


def test_iban_takes_precedence_over_a_domestic_account():
    # The IBAN is checked when given, even next to a valid-looking account number.
    assert check_account(AE_IBAN_BAD_CHECKSUM, INDIAN_ACCOUNT, party="debtor") is not None


# --------------------------------------------------------------------------- BICs


@pytest.mark.parametrize("bic", ["EBILAEAD", "SBININBB", "EBILAEADXXX", "CHASUS33"])
def test_valid_bics_pass(bic):
    assert check_bic(bic) is None


@pytest.mark.parametrize("bic", ["EBIL", "EBILAEAD1", "EBILZZAD", "12345678", "", "EBIL-AEAD"])
def test_invalid_bics_are_reported(bic):
    problem = check_bic(bic)
    assert problem is not None
    assert problem.startswith(f"BIC {bic!r} is invalid")


# --------------------------------------------------------------------------- static checks


@pytest.fixture
def settings(tmp_path) -> Settings:
    # Shadows the suite's session `settings`: these tests need no servers.
    return Settings(
        home=tmp_path,
        max_payment_amount=Decimal("1000000"),
        supported_currencies=("AED", "INR", "USD", "EUR", "JPY", "KWD"),
    )


def _payment(**overrides) -> Payment:
    values = dict(
        id=uuid.uuid4(),
        instructing_bic="EBILAEAD",
        end_to_end_id="E2E-1",
        fingerprint="0" * 64,
        amount=Decimal("100000.00"),
        currency="AED",
        debtor_name="Al Noor Trading LLC",
        debtor_iban=AE_IBAN,
        debtor_account=None,
        debtor_agent_bic="EBILAEAD",
        creditor_name="Ganesh Textiles Pvt Ltd",
        creditor_iban=None,
        creditor_account=INDIAN_ACCOUNT,
        creditor_agent_bic="SBININBB",
        status="SCREENING",
        workflow_id="payment-EBILAEAD-E2E-1",
    )
    values.update(overrides)
    return Payment(**values)


def test_a_clean_payment_passes(settings):
    assert static_checks(_payment(), settings) is None


def test_a_clean_payment_passes_default_settings(tmp_path):
    assert static_checks(_payment(), Settings(home=tmp_path)) is None


@pytest.mark.parametrize(
    "overrides, code, fragment",
    [
        ({"debtor_agent_bic": "EBILZZAD"}, ReasonCode.DEBTOR_BANK_INVALID, "EBILZZAD"),
        ({"creditor_agent_bic": "SBIN"}, ReasonCode.CREDITOR_BANK_INVALID, "SBIN"),
        ({"debtor_iban": AE_IBAN_BAD_CHECKSUM}, ReasonCode.DEBTOR_ACCOUNT_INVALID, "debtor IBAN"),
        (
            {"debtor_iban": None, "debtor_account": "no good!"},
            ReasonCode.DEBTOR_ACCOUNT_INVALID,
            "debtor account",
        ),
        ({"creditor_account": "12"}, ReasonCode.CREDITOR_ACCOUNT_INVALID, "creditor account"),
        (
            {"creditor_account": None, "creditor_iban": "AE00garbage"},
            ReasonCode.CREDITOR_ACCOUNT_INVALID,
            "creditor IBAN",
        ),
        ({"currency": "GBP", "amount": Decimal("10.00")}, ReasonCode.CURRENCY_NOT_ALLOWED, "GBP"),
        ({"amount": Decimal("10.001")}, ReasonCode.AMOUNT_NOT_ALLOWED, "more decimals"),
        ({"currency": "JPY", "amount": Decimal("10.5")}, ReasonCode.AMOUNT_NOT_ALLOWED, "more decimals"),
        ({"amount": Decimal("0")}, ReasonCode.AMOUNT_NOT_ALLOWED, "greater than zero"),
        ({"amount": Decimal("-1.00")}, ReasonCode.AMOUNT_NOT_ALLOWED, "greater than zero"),
        ({"amount": Decimal("1000000.01")}, ReasonCode.AMOUNT_NOT_ALLOWED, "exceeds the limit"),
    ],
)
def test_each_static_check_rejects_with_its_reason_code(settings, overrides, code, fragment):
    rejection = static_checks(_payment(**overrides), settings)
    assert isinstance(rejection, Rejection)
    assert rejection.code == code
    assert fragment in rejection.reason


def test_amount_at_the_limit_is_allowed(settings):
    assert static_checks(_payment(amount=Decimal("1000000.00")), settings) is None


def test_limit_follows_settings(tmp_path):
    payment = _payment(amount=Decimal("500.00"))
    assert static_checks(payment, Settings(home=tmp_path, max_payment_amount=Decimal("500"))) is None
    rejection = static_checks(payment, Settings(home=tmp_path, max_payment_amount=Decimal("499.99")))
    assert rejection is not None and rejection.code == ReasonCode.AMOUNT_NOT_ALLOWED


def test_supported_currencies_follow_settings(tmp_path):
    payment = _payment()
    rejection = static_checks(payment, Settings(home=tmp_path, supported_currencies=("INR",)))
    assert rejection is not None and rejection.code == ReasonCode.CURRENCY_NOT_ALLOWED


def test_checks_run_in_order_banks_first(settings):
    # Several defects at once: the bank identifiers are reported first, then accounts.
    everything_wrong = _payment(debtor_agent_bic="BAD", debtor_iban=AE_IBAN_BAD_CHECKSUM, currency="GBP")
    rejection = static_checks(everything_wrong, settings)
    assert rejection is not None and rejection.code == ReasonCode.DEBTOR_BANK_INVALID
    accounts_and_currency = _payment(debtor_iban=AE_IBAN_BAD_CHECKSUM, currency="GBP")
    rejection = static_checks(accounts_and_currency, settings)
    assert rejection is not None and rejection.code == ReasonCode.DEBTOR_ACCOUNT_INVALID
