"""mint_refusal: every validation the token engine makes before it mints
(deltran/domain/tokens.py), on in-memory obligations."""

from __future__ import annotations

import uuid
from dataclasses import replace
from decimal import Decimal

import pytest

from deltran.db.tables import Obligation
from deltran.domain.tokens import FiatEvidence, mint_refusal
from deltran.vocabulary import ObligationStatus


def _obligation(**overrides) -> Obligation:
    values = dict(
        id=uuid.uuid4(),
        payment_id=uuid.uuid4(),
        payer_id=uuid.uuid4(),
        payee_id=uuid.uuid4(),
        status=ObligationStatus.SETTLED,
        amount=Decimal("100000.00"),
        currency="AED",
        bank_confirmation_reference="BR-NTRY-1",
        camt054_entry_reference="NTRY-1",
    )
    values.update(overrides)
    return Obligation(**values)


def _fiat(**overrides) -> FiatEvidence:
    values = dict(
        entry_status="BOOK",
        credit_debit="CRDT",
        reversal=False,
        amount=Decimal("100000.00"),
        currency="AED",
        outcome="MATCHED",
    )
    values.update(overrides)
    return FiatEvidence(**values)


def test_settled_obligation_backed_by_its_booked_credit_may_be_minted():
    assert mint_refusal(_obligation(), _fiat()) is None


def test_amounts_compare_by_value_not_by_scale():
    # NUMERIC(38,5) reads back as 100000.00000: the same money as 100000.00.
    assert mint_refusal(_obligation(amount=Decimal("100000.00000")), _fiat()) is None


@pytest.mark.parametrize("status", [ObligationStatus.PENDING, ObligationStatus.RELEASED])
def test_refused_unless_settled(status):
    reason = mint_refusal(_obligation(status=status), _fiat())
    assert reason is not None
    assert status.value in reason and "not SETTLED" in reason


def test_status_is_checked_before_anything_else():
    reason = mint_refusal(_obligation(status=ObligationStatus.PENDING, bank_confirmation_reference=None), None)
    assert reason is not None and "not SETTLED" in reason


@pytest.mark.parametrize(
    "missing",
    [
        {"bank_confirmation_reference": None},
        {"bank_confirmation_reference": ""},
        {"camt054_entry_reference": None},
        {"camt054_entry_reference": ""},
        {"bank_confirmation_reference": None, "camt054_entry_reference": None},
    ],
)
def test_refused_without_bank_reference(missing):
    reason = mint_refusal(_obligation(**missing), _fiat())
    assert reason is not None and "reference is missing" in reason


def test_refused_without_fiat_evidence():
    reason = mint_refusal(_obligation(), None)
    assert reason is not None and "no booked camt.054" in reason


@pytest.mark.parametrize(
    "change",
    [
        {"entry_status": "PDNG"},
        {"entry_status": "INFO"},
        {"credit_debit": "DBIT"},
        {"reversal": True},
    ],
    ids=["pending", "info", "debit", "reversal"],
)
def test_refused_unless_the_entry_is_a_booked_credit(change):
    reason = mint_refusal(_obligation(), _fiat(**change))
    assert reason is not None and "not a booked credit" in reason


@pytest.mark.parametrize("outcome", ["UNMATCHED", "AMBIGUOUS", "AMOUNT_MISMATCH", "PAYMENT_NOT_AWAITING"])
def test_refused_unless_the_entry_was_matched(outcome):
    reason = mint_refusal(_obligation(), _fiat(outcome=outcome))
    assert reason is not None and outcome in reason


@pytest.mark.parametrize(
    "change",
    [
        {"amount": Decimal("99999.99")},
        {"amount": Decimal("100000.01")},
        {"amount": Decimal("200000.00")},
        {"currency": "USD"},
        {"currency": "INR"},
    ],
)
def test_refused_when_booked_fiat_differs_from_the_obligation(change):
    fiat = _fiat(**change)
    reason = mint_refusal(_obligation(), fiat)
    assert reason is not None and "does not equal" in reason
    assert str(fiat.amount) in reason and fiat.currency in reason


def test_every_single_defect_is_enough_to_refuse():
    good_obligation, good_fiat = _obligation(), _fiat()
    assert mint_refusal(good_obligation, good_fiat) is None
    for fiat in (
        replace(good_fiat, entry_status="PDNG"),
        replace(good_fiat, credit_debit="DBIT"),
        replace(good_fiat, reversal=True),
        replace(good_fiat, outcome="UNMATCHED"),
        replace(good_fiat, amount=good_fiat.amount + Decimal("0.01")),
        replace(good_fiat, currency="EUR"),
    ):
        assert mint_refusal(good_obligation, fiat) is not None, fiat
