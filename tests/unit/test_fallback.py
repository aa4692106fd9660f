"""The fallback of an under-funded window (deltran.domain.clearing.fallback): always feasible
in exact Decimal arithmetic, optimal when the solver proves it, never worse than greedy."""

from __future__ import annotations

import logging
from decimal import Decimal
from itertools import combinations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deltran.domain.clearing import fallback
from deltran.domain.clearing.fallback import choose_settleable
from deltran.domain.clearing.netting import GrossObligation, net

PROPERTIES = settings(max_examples=100, deadline=None, derandomize=True, database=None)
ZERO = Decimal(0)


class _Records(logging.Handler):
    """The fallback's warnings and errors: the solver path catches every exception (a
    fallback must answer), so the tests check it never had to."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


RECORDS = _Records()
logging.getLogger("deltran.domain.clearing.fallback").addHandler(RECORDS)


def balances(obligations, funded, ids) -> dict[str, Decimal]:
    """funded[b] + received - paid over the obligations in `ids`, for every bank."""
    balance = {b: ZERO for o in obligations for b in (o.payer, o.payee)} | dict(funded)
    for o in obligations:
        if o.id in ids:
            balance[o.payer] -= o.amount
            balance[o.payee] += o.amount
    return balance


def feasible(obligations, funded, ids) -> bool:
    return all(v >= 0 for v in balances(obligations, funded, set(ids)).values())


@st.composite
def obligations_st(draw, max_obligations: int = 40, max_banks: int = 12) -> list[GrossObligation]:
    n = draw(st.integers(2, max_banks))
    size = draw(st.integers(0, max_obligations))
    cents = st.integers(1, 1_000_000)
    rows = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(1, n - 1), cents), min_size=size, max_size=size))
    return [
        GrossObligation(f"o{k}", f"B{payer}", f"B{(payer + step) % n}", Decimal(c).scaleb(-2))
        for k, (payer, step, c) in enumerate(rows)
    ]


@st.composite
def underfunded_windows(draw, max_obligations: int = 40, max_banks: int = 12):
    """A window and the fundings received: each net debtor funded all, part or none of
    its net debit (now and then a creditor sends something too)."""
    obligations = draw(obligations_st(max_obligations, max_banks))
    funded: dict[str, Decimal] = {}
    for bank, position in sorted(net(obligations).positions.items()):
        share = draw(st.sampled_from(["full", "none", "part", "extra"]))
        debit = max(-position, ZERO)
        if share == "full":
            funded[bank] = debit
        elif share == "part":
            funded[bank] = (debit * draw(st.integers(0, 100)) / 100).quantize(Decimal("0.01"))
        elif share == "extra":
            funded[bank] = debit + Decimal(draw(st.integers(1, 100_000))).scaleb(-2)
    return obligations, funded


def check_result(obligations, funded, result) -> None:
    problems, RECORDS.records[:] = [r.getMessage() for r in RECORDS.records], []
    assert not problems
    ids = [o.id for o in obligations]
    assert set(result.settle) | set(result.roll) == set(ids)
    assert not set(result.settle) & set(result.roll)
    assert len(result.settle) + len(result.roll) == len(ids)
    # input order is kept
    assert list(result.settle) == [i for i in ids if i in set(result.settle)]
    assert feasible(obligations, funded, result.settle)
    assert result.settled_value == sum((o.amount for o in obligations if o.id in set(result.settle)), ZERO)
    expected = balances(obligations, funded, set(result.settle))
    assert result.leftover == {b: expected[b] for b in funded}
    assert all(v >= 0 for v in result.leftover.values())
    assert result.method in {"all", "exact", "greedy"}
    if result.method == "all":
        assert not result.roll


def brute_force(obligations, funded) -> Decimal:
    best = ZERO
    for r in range(len(obligations) + 1):
        for subset in combinations(obligations, r):
            if feasible(obligations, funded, {o.id for o in subset}):
                best = max(best, sum((o.amount for o in subset), ZERO))
    return best


# --------------------------------------------------------------------------- properties


@PROPERTIES
@given(underfunded_windows())
def test_result_is_always_feasible_and_a_partition(window):
    obligations, funded = window
    for method in ("auto", "greedy"):
        check_result(obligations, funded, choose_settleable(obligations, funded, method=method))


@PROPERTIES
@given(obligations_st())
def test_everything_settles_when_every_debtor_funded_its_net_debit(obligations):
    positions = net(obligations).positions
    funded = {b: -p for b, p in positions.items() if p < 0}
    result = choose_settleable(obligations, funded)
    check_result(obligations, funded, result)
    assert result.method == "all"
    assert result.settle == tuple(o.id for o in obligations)
    assert result.settled_value == sum((o.amount for o in obligations), ZERO)
    # every debtor's funding is used up exactly
    assert all(v == 0 for v in result.leftover.values())


@PROPERTIES
@given(obligations_st(max_obligations=30), st.data())
def test_a_defaulter_pays_only_out_of_what_it_receives(obligations, data):
    positions = net(obligations).positions
    debtors = sorted(b for b, p in positions.items() if p < 0)
    if not debtors:
        return
    defaulter = data.draw(st.sampled_from(debtors))
    funded = {b: -positions[b] for b in debtors if b != defaulter}
    result = choose_settleable(obligations, funded)
    check_result(obligations, funded, result)
    assert result.method in {"exact", "greedy"}
    settled = set(result.settle)
    paid = sum((o.amount for o in obligations if o.id in settled and o.payer == defaulter), ZERO)
    received = sum((o.amount for o in obligations if o.id in settled and o.payee == defaulter), ZERO)
    assert paid <= received
    assert defaulter not in result.leftover


@PROPERTIES
@given(underfunded_windows(max_obligations=60))
def test_exact_is_never_worse_than_greedy(window):
    obligations, funded = window
    exact = choose_settleable(obligations, funded)
    greedy = choose_settleable(obligations, funded, method="greedy")
    check_result(obligations, funded, greedy)
    assert exact.settled_value >= greedy.settled_value
    if exact.method == "all":
        assert greedy.method == "all"


@PROPERTIES
@given(underfunded_windows(max_obligations=10, max_banks=5))
def test_exact_equals_brute_force_on_small_windows(window):
    obligations, funded = window
    result = choose_settleable(obligations, funded, mip_rel_gap=0.0)
    check_result(obligations, funded, result)
    assert result.method in {"all", "exact"}
    assert result.settled_value == brute_force(obligations, funded)


def plain_milp_value(obligations, funded) -> Decimal | None:
    """The optimum by a plain MILP over all obligations (no fixing), amounts in cents."""
    import numpy as np
    from scipy.optimize import Bounds, LinearConstraint, milp

    banks = sorted({b for o in obligations for b in (o.payer, o.payee)})
    row = {b: r for r, b in enumerate(banks)}
    a_matrix = np.zeros((len(banks), len(obligations)))
    for j, o in enumerate(obligations):
        a_matrix[row[o.payer], j] -= float(o.amount * 100)
        a_matrix[row[o.payee], j] += float(o.amount * 100)
    lower = np.array([-float(funded.get(b, ZERO) * 100) for b in banks])
    result = milp(
        c=-np.array([float(o.amount * 100) for o in obligations]),
        integrality=np.ones(len(obligations)),
        bounds=Bounds(0, 1),
        constraints=[LinearConstraint(a_matrix, lower, np.inf)],
        options={"mip_rel_gap": 0.0, "time_limit": 10.0},
    )
    if result.status != 0:
        return None
    return Decimal(round(-result.fun)) / 100


@settings(PROPERTIES, max_examples=50)
@given(st.data())
def test_fixing_never_cuts_off_the_optimum(data):
    # Small amounts (so that a gap of 0 is quick to prove) on windows too large to
    # brute-force: the reduced-cost fixing must find the plain MILP's optimum.
    n = data.draw(st.integers(2, 8))
    rows = data.draw(
        st.lists(st.tuples(st.integers(0, n - 1), st.integers(1, n - 1), st.integers(1, 500)), min_size=20, max_size=80)
    )
    obligations = [
        GrossObligation(f"o{k}", f"B{p}", f"B{(p + s) % n}", Decimal(c).scaleb(-2)) for k, (p, s, c) in enumerate(rows)
    ]
    positions = net(obligations).positions
    funded = {
        b: (-v * data.draw(st.integers(0, 100)) / 100).quantize(Decimal("0.01"))
        for b, v in sorted(positions.items())
        if v < 0
    }
    result = choose_settleable(obligations, funded, mip_rel_gap=0.0)
    check_result(obligations, funded, result)
    expected = plain_milp_value(obligations, funded)
    if result.method != "all" and expected is not None:
        assert result.method == "exact"
        assert result.settled_value == expected


# --------------------------------------------------------------------------- examples


def test_greedy_is_suboptimal_where_exact_is_not():
    # A funded 7 and owes 7 + 4 + 4. Greedy: no single payment covers the deficit of 8,
    # so it drops the largest (7), then a 4 for the remaining deficit of 1, and neither
    # fits back: 4 settles. Exact settles the 7.
    obligations = [
        GrossObligation("a", "A", "B", Decimal("7.00")),
        GrossObligation("b", "A", "C", Decimal("4.00")),
        GrossObligation("c", "A", "D", Decimal("4.00")),
    ]
    funded = {"A": Decimal("7.00")}
    greedy = choose_settleable(obligations, funded, method="greedy")
    exact = choose_settleable(obligations, funded)
    assert (greedy.method, greedy.settled_value) == ("greedy", Decimal("4.00"))
    assert (exact.method, exact.settled_value, exact.settle, exact.roll) == (
        "exact",
        Decimal("7.00"),
        ("a",),
        ("b", "c"),
    )
    assert exact.leftover == {"A": ZERO}
    assert brute_force(obligations, funded) == Decimal("7.00")


def test_default_cascades_through_the_chain_it_funds():
    # D defaults on its payment to A; A then cannot pay B from that money, but B's
    # payment to C is covered by B's own funding.
    obligations = [
        GrossObligation("d->a", "D", "A", Decimal("100.00")),
        GrossObligation("a->b", "A", "B", Decimal("100.00")),
        GrossObligation("b->c", "B", "C", Decimal("30.00")),
    ]
    funded = {"B": Decimal("30.00")}  # D owed 100 and sent nothing; A and B net zero / receive
    result = choose_settleable(obligations, funded)
    check_result(obligations, funded, result)
    assert result.settle == ("b->c",)
    assert result.roll == ("d->a", "a->b")
    assert result.leftover == {"B": ZERO}


def test_unused_funding_is_released():
    obligations = [GrossObligation("1", "A", "B", Decimal("50.00")), GrossObligation("2", "C", "B", Decimal("80.00"))]
    funded = {"A": Decimal("60.00")}  # A over-funded; C did not fund
    result = choose_settleable(obligations, funded)
    assert result.settle == ("1",)
    assert result.leftover == {"A": Decimal("10.00")}


def test_empty_window_settles_nothing():
    result = choose_settleable([], {})
    assert (result.settle, result.roll, result.settled_value, result.method, result.leftover) == ((), (), 0, "all", {})


def test_huge_amounts_are_scaled_for_the_solver_and_checked_exactly():
    # 10**17 with 3 decimals is 10**20 minor units: beyond float precision and HiGHS's
    # coefficient range, so the solver sees scaled values; the answer is still exact.
    big = Decimal("100000000000000000.001")
    obligations = [
        GrossObligation("1", "A", "B", big),
        GrossObligation("2", "A", "C", big - Decimal("0.001")),
        GrossObligation("3", "B", "C", Decimal("0.002")),
    ]
    funded = {"A": big}
    result = choose_settleable(obligations, funded)
    check_result(obligations, funded, result)
    assert result.settle == ("1", "3")
    assert result.settled_value == big + Decimal("0.002")


def test_amounts_with_different_decimals_are_exact():
    obligations = [
        GrossObligation("1", "A", "B", Decimal("0.001")),
        GrossObligation("2", "A", "C", Decimal("1000000000000")),
        GrossObligation("3", "A", "D", Decimal("0.5")),
    ]
    funded = {"A": Decimal("0.501")}
    result = choose_settleable(obligations, funded)
    assert result.method == "exact"
    assert result.settle == ("1", "3")
    assert result.leftover == {"A": ZERO}


# --------------------------------------------------------------------------- the solver fails


def test_a_solver_answer_that_fails_the_exact_check_is_never_returned(monkeypatch):
    obligations = [GrossObligation("1", "A", "B", Decimal("10.00")), GrossObligation("2", "A", "C", Decimal("5.00"))]
    funded = {"A": Decimal("5.00")}
    # a "solver" that claims the infeasible full set is optimal: repaired, not trusted
    monkeypatch.setattr(fallback, "_exact", lambda obligations, *args: (list(range(len(obligations))), True))
    result = choose_settleable(obligations, funded)
    assert result.method == "greedy"
    assert result.settle == ("2",)
    assert result.leftover == {"A": ZERO}
    assert [r.levelno for r in RECORDS.records] == [logging.WARNING]
    RECORDS.records.clear()


def test_solver_unavailable_falls_back_to_greedy(monkeypatch):
    obligations = [GrossObligation("1", "A", "B", Decimal("10.00")), GrossObligation("2", "A", "C", Decimal("5.00"))]
    monkeypatch.setattr(fallback, "_exact", lambda obligations, funded, incumbent, *args: (incumbent, False))
    result = choose_settleable(obligations, {"A": Decimal("12.00")})
    assert (result.method, result.settle, result.leftover) == ("greedy", ("1",), {"A": Decimal("2.00")})


def test_windows_beyond_the_exact_bound_use_greedy(monkeypatch):
    monkeypatch.setattr(fallback, "MAX_EXACT_OBLIGATIONS", 1)
    obligations = [GrossObligation("1", "A", "B", Decimal("10.00")), GrossObligation("2", "A", "C", Decimal("5.00"))]
    result = choose_settleable(obligations, {"A": Decimal("5.00")})
    assert (result.method, result.settle) == ("greedy", ("2",))


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "obligations, funded",
    [
        (
            [GrossObligation("1", "A", "B", Decimal("1")), GrossObligation("1", "B", "A", Decimal("1"))],
            {},
        ),  # duplicate id
        ([GrossObligation("1", "A", "B", 1.0)], {}),  # type: ignore[arg-type]  # float
        ([GrossObligation("1", "A", "A", Decimal("1"))], {}),
        ([GrossObligation("1", "A", "B", Decimal("1"))], {"A": Decimal("-1")}),
        ([GrossObligation("1", "A", "B", Decimal("1"))], {"A": 1}),
        ([GrossObligation("1", "A", "B", Decimal("1"))], {"A": Decimal("NaN")}),
    ],
)
def test_rejects_bad_input(obligations, funded):
    with pytest.raises(ValueError):
        choose_settleable(obligations, funded)
