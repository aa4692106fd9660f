"""Pure guards on what may come in and what may be retried."""

from __future__ import annotations

import pytest
from asyncpg.exceptions import CheckViolationError, UniqueViolationError
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError

from api.problems import Problem
from api.schemas import PaymentIn
from api.strict_json import refuse_duplicate_keys
from deltran.config import Settings
from deltran.ledger import LedgerRefused, Refusal, refusal_of
from tests.support.payments import payment_body
from worker.fail_fast import permanent_failure


def _integrity(orig: Exception) -> IntegrityError:
    return IntegrityError("INSERT ...", {}, orig)


def test_invariant_and_constraint_failures_are_permanent_but_a_unique_race_is_not():
    assert permanent_failure(AssertionError("a transfer moves a positive amount")) == "assertion"
    assert (
        permanent_failure(_integrity(CheckViolationError("ck_ledger_transfers_distinct_accounts"))) == "integrity:23514"
    )
    # A unique violation can be a lost race the next attempt reads as done: retried.
    assert permanent_failure(_integrity(UniqueViolationError("uq_tokens_obligation_id"))) is None
    assert permanent_failure(ConnectionResetError()) is None


def test_a_refused_posting_is_permanent_but_a_broken_backing_waits_for_the_breaker():
    assert permanent_failure(LedgerRefused(Refusal.BALANCE_BELOW_ZERO, "x")) == "ledger:balance_below_zero"
    assert permanent_failure(LedgerRefused(Refusal.KEY_REUSED, "x")) == "ledger:key_reused"
    assert permanent_failure(LedgerRefused(Refusal.SUPPLY_EXCEEDS_FIAT, "x", currency="AED")) is None


@pytest.mark.parametrize(
    "constraint, refusal",
    [
        ("ck_accounts_balance_not_negative", Refusal.BALANCE_BELOW_ZERO),
        ("ck_ledger_transfers_distinct_accounts", Refusal.SAME_ACCOUNT),
        ("ck_ledger_transfers_amount_positive", Refusal.AMOUNT_NOT_POSITIVE),
        ("ck_payments_distinct_agents", None),  # not a posting's constraint: not the ledger's to name
    ],
)
def test_a_posting_constraint_is_named_as_its_refusal(constraint, refusal):
    assert refusal_of(_integrity(CheckViolationError(f'violates check constraint "{constraint}"'))) is refusal


@pytest.mark.parametrize(
    "body",
    [
        b'{"amount": "1.00", "amount": "1000000.00"}',
        b'{"debtor": {"name": "A", "name": "B"}}',
        b'[{"x": 1}, {"y": 2, "y": 3}]',
    ],
)
def test_a_json_key_given_twice_is_refused_naming_it(body):
    with pytest.raises(Problem) as refused:
        refuse_duplicate_keys(body)
    assert refused.value.status == 422 and refused.value.kind == "duplicate-json-key"
    assert refused.value.errors[0]["field"] in ("amount", "name", "y")


@pytest.mark.parametrize("body", [b'{"a": {"a": 1}, "b": [{"a": 2}]}', b"not json", b"\xff"])
def test_distinct_keys_and_malformed_json_are_left_to_the_route(body):
    refuse_duplicate_keys(body)  # nothing raised: equal keys in different objects are fine


@pytest.mark.parametrize("e2e", ["bad\ufffe", "bad\uffff", "bad\u0085x", "NOTPROVIDED", "notprovided"])
def test_end_to_end_ids_that_cannot_identify_a_payment_or_be_written_as_xml_are_refused(e2e):
    with pytest.raises(ValidationError, match="end_to_end_id"):
        PaymentIn.model_validate(payment_body(e2e))


def test_an_ordinary_end_to_end_id_with_unicode_letters_passes():
    assert PaymentIn.model_validate(payment_body("ÜBERWEISUNG-é-1")).end_to_end_id == "ÜBERWEISUNG-é-1"


@pytest.mark.parametrize("currencies", [("AED", "XYZ"), (), ("AED", "AED"), ("aed",)])
def test_the_cleared_currencies_must_come_from_the_one_currency_table(currencies):
    with pytest.raises(ValidationError, match="supported_currencies"):
        Settings(supported_currencies=currencies)


def test_a_database_restarting_or_dropping_the_connection_is_an_outage_not_a_bug():
    from sqlalchemy.exc import DBAPIError

    from api.errors import database_outage

    class DriverError(Exception):
        def __init__(self, sqlstate: str) -> None:
            super().__init__(sqlstate)
            self.sqlstate = sqlstate

    def error(sqlstate: str, invalidated: bool = False) -> DBAPIError:
        return DBAPIError("SELECT 1", None, DriverError(sqlstate), connection_invalidated=invalidated)

    assert database_outage(error("57P03"))  # the database system is starting up
    assert database_outage(error("57P01"))  # terminating connection due to administrator command
    assert database_outage(error("XX000", invalidated=True))  # a connection it dropped
    assert not database_outage(error("22003"))  # numeric out of range: a bug, not an outage
