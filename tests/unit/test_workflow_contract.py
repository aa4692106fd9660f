"""The workflows implement their interfaces in deltran/temporal/contract.py exactly: the
same workflow name, run signature, signals and queries. The API and the activities call
workflows through the interfaces only, so a drift here would be a signal nobody handles."""

from __future__ import annotations

from typing import get_type_hints

import pytest
from temporalio.workflow import _Definition

from deltran.temporal.contract import ClearingWindowContract, PaymentWorkflowContract, ReconciliationContract
from workflows.clearing import ClearingWindowWorkflow
from workflows.payment import PaymentWorkflow
from workflows.reconciliation import ReconciliationWorkflow

PAIRS = [
    (PaymentWorkflowContract, PaymentWorkflow),
    (ClearingWindowContract, ClearingWindowWorkflow),
    (ReconciliationContract, ReconciliationWorkflow),
]


@pytest.mark.parametrize("contract, implementation", PAIRS, ids=[c.__name__ for c, _ in PAIRS])
def test_each_workflow_implements_its_interface_exactly(contract, implementation):
    declared, implemented = _Definition.must_from_class(contract), _Definition.must_from_class(implementation)
    assert issubclass(implementation, contract)
    assert declared.name == implemented.name
    assert set(declared.signals) == set(implemented.signals)
    assert set(declared.queries) == set(implemented.queries)
    # Resolved types, not annotation strings: a type drift behind the same name fails.
    assert (declared.arg_types, declared.ret_type) == (implemented.arg_types, implemented.ret_type)
    for name, signal in declared.signals.items():
        assert get_type_hints(signal.fn) == get_type_hints(implemented.signals[name].fn), name
    for name, query in declared.queries.items():
        assert get_type_hints(query.fn) == get_type_hints(implemented.queries[name].fn), name


def test_the_names_recorded_histories_use_are_kept():
    assert [_Definition.must_from_class(c).name for c, _ in PAIRS] == [
        "PaymentWorkflow",
        "ClearingWindowWorkflow",
        "ReconciliationWorkflow",
    ]
    assert set(_Definition.must_from_class(PaymentWorkflow).signals) == {"fiat_booked", "window_settled"}
    assert set(_Definition.must_from_class(ClearingWindowWorkflow).signals) == {"funding_booked"}
