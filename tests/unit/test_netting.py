"""Multilateral netting (deltran.domain.clearing.netting): exact, conserving, bounded."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deltran.domain.clearing.netting import GrossObligation, net, transfers_to_settle

PROPERTIES = settings(max_examples=100, deadline=None, derandomize=True, database=None)


@st.composite
def windows(draw, max_obligations: int = 200) -> list[GrossObligation]:
    """2..12 banks, 0..max_obligations obligations between distinct banks, amounts with 2 decimals."""
    n = draw(st.integers(2, 12))
    cents = st.one_of(st.integers(1, 10_000_000), st.integers(1, 10**20))
    size = draw(st.integers(0, max_obligations))  # uniform: st.lists alone favours short lists
    rows = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(1, n - 1), cents), min_size=size, max_size=size))
    return [
        GrossObligation(f"o{k}", f"BANK{payer:02d}", f"BANK{(payer + step) % n:02d}", Decimal(c).scaleb(-2))
        for k, (payer, step, c) in enumerate(rows)
    ]


@PROPERTIES
@given(windows())
def test_netting_conserves_and_bounds(obligations):
    result = net(obligations)
    # applying every obligation (payer -> payee) to a zero-start ledger gives the positions
    ledger: dict[str, Decimal] = {}
    for o in obligations:
        ledger[o.payer] = ledger.get(o.payer, Decimal(0)) - o.amount
        ledger[o.payee] = ledger.get(o.payee, Decimal(0)) + o.amount
    assert result.positions == ledger
    assert sum(result.positions.values(), Decimal(0)) == 0
    assert result.gross == sum((o.amount for o in obligations), Decimal(0))
    assert 0 <= result.net <= result.gross
    assert result.net == sum((-p for p in result.positions.values() if p < 0), Decimal(0))
    # the sum of net credits equals the sum of net debits
    assert result.net == sum((p for p in result.positions.values() if p > 0), Decimal(0))
    assert Decimal(0) <= result.efficiency <= Decimal(1)
    assert result.efficiency.as_tuple().exponent == -6
    assert result.liquidity_saved == result.gross - result.net
    if result.gross:
        assert abs(result.efficiency - (1 - result.net / result.gross)) <= Decimal("0.0000005")
    else:
        assert result.efficiency == 0


@PROPERTIES
@given(windows())
def test_funding_the_instructions_keeps_every_balance_non_negative(obligations):
    result = net(obligations)
    instructions = transfers_to_settle(result.positions)
    assert sum((a for _, a in instructions), Decimal(0)) == result.net
    assert all(a > 0 for _, a in instructions)
    funded = dict(instructions)
    for bank, position in result.positions.items():
        assert funded.get(bank, Decimal(0)) + position >= 0


def test_perfect_cycle_nets_to_zero():
    amount = Decimal("250000.00")
    result = net(
        [
            GrossObligation("1", "A", "B", amount),
            GrossObligation("2", "B", "C", amount),
            GrossObligation("3", "C", "A", amount),
        ]
    )
    assert result.positions == {"A": 0, "B": 0, "C": 0}
    assert result.gross == Decimal("750000.00")
    assert result.net == 0
    assert result.efficiency == Decimal("1.000000")
    assert result.liquidity_saved == result.gross
    assert transfers_to_settle(result.positions) == []


def test_bilateral_example():
    result = net([GrossObligation("1", "A", "B", Decimal("100.00")), GrossObligation("2", "B", "A", Decimal("60.00"))])
    assert result.positions == {"A": Decimal("-40.00"), "B": Decimal("40.00")}
    assert (result.gross, result.net, result.liquidity_saved) == (
        Decimal("160.00"),
        Decimal("40.00"),
        Decimal("120.00"),
    )
    assert result.efficiency == Decimal("0.750000")
    assert transfers_to_settle(result.positions) == [("A", Decimal("40.00"))]


def test_efficiency_rounds_half_even():
    # net/gross = 1/3: efficiency 0.666667 (0.6666666...)
    third = net([GrossObligation("1", "A", "B", Decimal(2)), GrossObligation("2", "B", "A", Decimal(1))])
    assert third.efficiency == Decimal("0.666667")
    # 1 - 1/16000000 = 0.9999999375 -> 1.000000 (nearest), never above 1
    tiny = net(
        [GrossObligation("1", "A", "B", Decimal("8000000.5")), GrossObligation("2", "B", "A", Decimal("7999999.5"))]
    )
    assert tiny.efficiency == Decimal("1.000000")


def test_empty_window():
    result = net([])
    assert (result.positions, result.gross, result.net, result.liquidity_saved) == ({}, 0, 0, 0)
    assert result.efficiency == Decimal("0.000000")


@pytest.mark.parametrize(
    "obligation",
    [
        GrossObligation("1", "A", "B", 10.0),  # type: ignore[arg-type]
        GrossObligation("1", "A", "B", Decimal(0)),
        GrossObligation("1", "A", "B", Decimal("-1")),
        GrossObligation("1", "A", "B", Decimal("NaN")),
        GrossObligation("1", "A", "B", Decimal("Infinity")),
        GrossObligation("1", "A", "A", Decimal("1")),
    ],
)
def test_rejects_obligations_that_are_not_money_between_two_banks(obligation):
    with pytest.raises(ValueError):
        net([obligation])
