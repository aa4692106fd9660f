"""One netting definition: the SQL that nets real windows (activities/clearing.py
`net_window`) and the Python reference (deltran/domain/clearing/netting.py `net`) give
the same positions, totals, efficiency and funding instructions, window by window, on
random windows — cycles that net to zero, repeated pairs, one-sided and many-bank
windows, amounts from 0.01 to 10¹² with every number of decimals the currency allows.

A failure names its seed; DELTRAN_NETTING_SEED replays one window."""

from __future__ import annotations

import os
import random
import uuid
from decimal import Decimal

from sqlalchemy import select, update

from activities.clearing import close_window, ensure_open_window, net_window
from deltran.db.tables import FundingInstruction, NetPosition, Obligation
from deltran.domain.clearing import netting
from deltran.vocabulary import PaymentStatus
from tests.support.minting import make_scenario, new_bank, private_currency

WINDOWS = 24


def _amount(rng: random.Random) -> Decimal:
    scale = rng.choice((Decimal("0.01"), Decimal("1"), Decimal("1000"), Decimal("1000000")))
    if rng.random() < 0.05:
        return Decimal("1000000000000.00")
    return (Decimal(rng.randint(1, 999_999)) * scale / 100).quantize(Decimal("0.01"))


def _draw_window(rng: random.Random, banks: list[uuid.UUID]) -> list[tuple[uuid.UUID, uuid.UUID, Decimal]]:
    """(payer, payee, amount) triples: random pairs, plus a cycle that nets to zero and a
    repeated pair, sometimes."""
    drawn = []
    for _ in range(rng.randint(1, 30)):
        payer, payee = rng.sample(banks, 2)
        drawn.append((payer, payee, _amount(rng)))
    if rng.random() < 0.4:  # a cycle: every bank of it pays and receives the same
        cycle, amount = rng.sample(banks, rng.randint(2, len(banks))), _amount(rng)
        drawn += [(cycle[i], cycle[(i + 1) % len(cycle)], amount) for i in range(len(cycle))]
    if rng.random() < 0.3:
        drawn += [drawn[0]] * rng.randint(1, 3)
    return drawn


async def _net_in_sql(sessions, currency: str, drawn, banks) -> tuple:
    async with sessions() as session, session.begin():
        window_id = await ensure_open_window(session, currency)
    ids = []
    for payer, payee, amount in drawn:
        s = await make_scenario(
            sessions, settled=False, notification=False, payment_status=PaymentStatus.AWAITING_SETTLEMENT,
            currency=currency, amount=amount, payer_id=payer, payee_id=payee,
        )  # fmt: skip
        ids.append(s.obligation_id)
    async with sessions() as session, session.begin():
        await session.execute(
            update(Obligation).where(Obligation.id.in_(ids)).values(settlement_mode="NET", clearing_window_id=window_id)
        )
        closed = await close_window(session, currency, f"netting-equivalence-{uuid.uuid4()}")
        assert closed == window_id
    async with sessions() as session, session.begin():
        summary = await net_window(session, window_id, 60)
    async with sessions() as session:
        positions = dict(
            (await session.execute(select(NetPosition.participant_id, NetPosition.net_amount).where(
                NetPosition.window_id == window_id))).all()
        )  # fmt: skip
        funding = dict(
            (await session.execute(select(FundingInstruction.participant_id, FundingInstruction.amount).where(
                FundingInstruction.window_id == window_id))).all()
        )  # fmt: skip
    return summary, positions, funding


async def test_sql_netting_and_the_reference_agree_on_random_windows(sessions):
    seeds = [int(os.environ["DELTRAN_NETTING_SEED"])] if "DELTRAN_NETTING_SEED" in os.environ else range(WINDOWS)
    for seed in seeds:
        rng = random.Random(seed)
        currency = private_currency()
        banks = [await new_bank(sessions, currency=currency) for _ in range(rng.randint(2, 8))]
        drawn = _draw_window(rng, banks)

        summary, positions, funding = await _net_in_sql(sessions, currency, drawn, banks)
        reference = netting.net(
            netting.GrossObligation(id=str(i), payer=str(payer), payee=str(payee), amount=amount)
            for i, (payer, payee, amount) in enumerate(drawn)
        )

        why = f"seed {seed} ({len(drawn)} obligations among {len(banks)} banks)"
        assert {str(p): a for p, a in positions.items()} == reference.positions, why
        assert (summary.gross, summary.net, summary.liquidity_saved) == (
            reference.gross, reference.net, reference.liquidity_saved
        ), why  # fmt: skip
        assert summary.efficiency == reference.efficiency, why
        assert summary.obligations_count == len(drawn), why
        expected = netting.transfers_to_settle(reference.positions)
        assert {str(p): a for p, a in funding.items()} == dict(expected), why
        assert sorted(i.amount for i in summary.instructions) == sorted(a for _, a in expected), why
