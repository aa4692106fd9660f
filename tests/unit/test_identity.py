"""Payment identity: ids derived from (instructing BIC, EndToEndId), and the content
fingerprint that tells a duplicate from a conflicting resubmission."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from deltran.identity import content_fingerprint, payment_id_for, workflow_id_for


def test_payment_id_is_a_name_based_uuid_and_stable():
    first = payment_id_for("EBILAEAD", "E2E-1")
    assert isinstance(first, uuid.UUID)
    assert first.version == 5
    assert payment_id_for("EBILAEAD", "E2E-1") == first
    # Pinned: the namespace must never change, or resubmissions of payments stored by an
    # earlier release would no longer map onto their rows.
    assert first == uuid.UUID("5bec4530-5410-55dd-8416-e53ef5206b61")


def test_workflow_id_is_stable_and_readable():
    assert workflow_id_for("EBILAEAD", "E2E-1") == "payment-EBILAEAD-E2E-1"
    assert workflow_id_for("EBILAEAD", "E2E-1") == workflow_id_for("EBILAEAD", "E2E-1")


@pytest.mark.parametrize("bic", ["ebilaead", "EbIlAeAd", "EBILAEAD"])
def test_bic_case_is_normalised(bic):
    assert payment_id_for(bic, "E2E-1") == payment_id_for("EBILAEAD", "E2E-1")
    assert workflow_id_for(bic, "E2E-1") == "payment-EBILAEAD-E2E-1"


def test_same_end_to_end_id_from_different_banks_gives_different_ids():
    assert payment_id_for("EBILAEAD", "E2E-1") != payment_id_for("SBININBB", "E2E-1")
    assert workflow_id_for("EBILAEAD", "E2E-1") != workflow_id_for("SBININBB", "E2E-1")


def test_different_end_to_end_ids_give_different_ids():
    assert payment_id_for("EBILAEAD", "E2E-1") != payment_id_for("EBILAEAD", "E2E-2")
    assert workflow_id_for("EBILAEAD", "E2E-1") != workflow_id_for("EBILAEAD", "E2E-2")
    # The EndToEndId is taken as sent: its case is significant.
    assert payment_id_for("EBILAEAD", "e2e-1") != payment_id_for("EBILAEAD", "E2E-1")


def test_bic_and_end_to_end_id_cannot_be_shifted_into_each_other():
    # A plain concatenation would make ("EBILAEAD", "XE2E") and ("EBILAEADX", "E2E") collide.
    assert payment_id_for("EBILAEAD", "XE2E") != payment_id_for("EBILAEADX", "E2E")


# --------------------------------------------------------------------------- fingerprint


def _fields() -> dict:
    return {
        "instructing_bic": "EBILAEAD",
        "end_to_end_id": "E2E-1",
        "amount": Decimal("100000.00"),
        "currency": "AED",
        "debtor_name": "Al Noor Trading LLC",
        "debtor_iban": "AE070331234567890123456",
        "debtor_account": None,
        "creditor_name": "Ganesh Textiles Pvt Ltd",
        "creditor_iban": None,
        "creditor_account": "30001234567",
        "remittance_info": "Invoice 2026-118",
        "uetr": uuid.UUID("8a562c67-ca16-48ba-b074-65581be6f001"),
    }


def test_fingerprint_is_a_sha256_hex_digest_and_deterministic():
    digest = content_fingerprint(_fields())
    assert len(digest) == 64
    assert int(digest, 16) >= 0
    assert content_fingerprint(_fields()) == digest


def test_fingerprint_ignores_key_order():
    fields = _fields()
    reversed_fields = dict(reversed(list(fields.items())))
    assert list(reversed_fields) != list(fields)
    assert content_fingerprint(reversed_fields) == content_fingerprint(fields)


def test_fingerprint_ignores_key_order_of_nested_objects():
    a = {"debtor": {"name": "A", "iban": "X"}, "amount": "1.00"}
    b = {"amount": "1.00", "debtor": {"iban": "X", "name": "A"}}
    assert content_fingerprint(a) == content_fingerprint(b)


_CHANGED = {
    "instructing_bic": "SBININBB",
    "end_to_end_id": "E2E-2",
    "amount": Decimal("100000.01"),
    "currency": "USD",
    "debtor_name": "Al Noor Trading L.L.C",
    "debtor_iban": "AE070331234567890123457",
    "debtor_account": "123456",
    "creditor_name": "Ganesh Textiles",
    "creditor_iban": "AE070331234567890123456",
    "creditor_account": "30001234568",
    "remittance_info": None,
    "uetr": uuid.UUID("8a562c67-ca16-48ba-b074-65581be6f002"),
}


@pytest.mark.parametrize("field", sorted(_CHANGED))
def test_fingerprint_changes_when_any_field_changes(field):
    changed = {**_fields(), field: _CHANGED[field]}
    assert content_fingerprint(changed) != content_fingerprint(_fields())


def test_fingerprint_changes_when_a_field_is_added_or_removed():
    base = content_fingerprint(_fields())
    assert content_fingerprint({**_fields(), "extra": None}) != base
    without = _fields()
    del without["remittance_info"]
    assert content_fingerprint(without) != base
