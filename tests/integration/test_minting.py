"""The token engine against the real PostgreSQL: validation before minting, the
double-entry postings, idempotency, and the database constraints that are the last
line of defence (unique token per obligation, no negative balance, no settled
obligation without its references).

Every test builds its own rows (fresh participants included; the builders are in
tests/support/minting.py), so balances are exact and nothing collides with other tests
sharing the database.
"""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import pytest
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from temporalio.exceptions import ApplicationError

from activities.tokens import TokenActivities
from deltran import ledger
from deltran.db.tables import LedgerTransfer, Obligation, Token
from deltran.shared import MintInput
from deltran.temporal.errors import MINT_REFUSED
from deltran.vocabulary import ObligationStatus, PaymentStatus
from tests.support.minting import (
    AMOUNT,
    CURRENCY,
    ZERO,
    assert_refused,
    balances,
    make_scenario,
    payment_status,
    tokens_of,
    transfer_count,
)

# --------------------------------------------------------------------------- refusals


async def test_mint_refused_while_obligation_is_pending(sessions):
    s = await make_scenario(sessions, settled=False, payment_status=PaymentStatus.AWAITING_SETTLEMENT)
    await assert_refused(sessions, s, "PENDING, not SETTLED")
    assert await payment_status(sessions, s) == PaymentStatus.AWAITING_SETTLEMENT


async def test_mint_refused_for_released_obligation(sessions):
    s = await make_scenario(sessions, settled=False, payment_status=PaymentStatus.EXPIRED)
    async with sessions() as session, session.begin():
        await session.execute(
            update(Obligation)
            .where(Obligation.id == s.obligation_id)
            .values(status=ObligationStatus.RELEASED, released_at=func.now())
        )
    await assert_refused(sessions, s, "RELEASED, not SETTLED")


async def test_mint_refused_when_no_booked_camt054_backs_it(sessions):
    s = await make_scenario(sessions, notification=False)
    await assert_refused(sessions, s, "no booked camt.054 entry backs this obligation")
    assert await payment_status(sessions, s) == PaymentStatus.SETTLED


async def test_mint_refused_when_the_entry_was_not_matched(sessions):
    # An entry with the right reference that intake did not match to the payment is no
    # evidence at all.
    s = await make_scenario(sessions, outcome="NOT_BOOKED", entry_status="PDNG")
    await assert_refused(sessions, s, "no booked camt.054 entry backs this obligation")


async def test_mint_refused_when_the_matched_entry_is_not_booked(sessions):
    s = await make_scenario(sessions, entry_status="PDNG")
    await assert_refused(sessions, s, "not a booked credit")


async def test_mint_refused_when_booked_amount_differs(sessions):
    s = await make_scenario(sessions, booked_amount=AMOUNT - Decimal("0.01"))
    await assert_refused(sessions, s, "does not equal")
    assert await payment_status(sessions, s) == PaymentStatus.SETTLED


async def test_mint_refused_when_booked_currency_differs(sessions):
    s = await make_scenario(sessions, booked_currency="USD")
    await assert_refused(sessions, s, "does not equal")


async def test_mint_refused_for_unknown_obligation(sessions):
    with pytest.raises(ApplicationError) as caught:
        await TokenActivities(sessions).mint_token(MintInput(payment_id=uuid.uuid4(), obligation_id=uuid.uuid4()))
    assert caught.value.type == MINT_REFUSED
    assert caught.value.non_retryable is True
    assert "does not exist" in str(caught.value)


# --------------------------------------------------------------------------- minting


async def test_mint_moves_the_amount_on_the_ledger_and_completes_the_payment(sessions):
    s = await make_scenario(sessions)
    result = await TokenActivities(sessions).mint_token(s.mint_input)

    assert result.amount == AMOUNT
    assert result.currency == CURRENCY
    assert await balances(sessions, s) == {
        "payer_fiat": AMOUNT,  # the payer's booked fiat (debit-normal)
        "payer_token": 0,  # minted to the payer, then moved on: net zero
        "payee_fiat": 0,
        "payee_token": AMOUNT,  # the payee's credit: the token
    }
    (token,) = await tokens_of(sessions, s)
    assert token.id == result.token_id
    assert token.owner_id == s.payee_id
    assert token.payment_id == s.payment_id
    assert token.amount == AMOUNT and token.currency == CURRENCY
    assert await payment_status(sessions, s) == PaymentStatus.COMPLETED

    async with sessions() as session:
        transfers = {
            t.kind: t
            for t in await session.scalars(
                select(LedgerTransfer).where(
                    or_(
                        LedgerTransfer.obligation_id == s.obligation_id,
                        LedgerTransfer.notification_id == s.notification_id,
                    )
                )
            )
        }
        assert set(transfers) == {"fiat_booked", "obligation"}
        payer_fiat = await ledger.account_id(session, s.payer_id, CURRENCY, "fiat")
        payer_token = await ledger.account_id(session, s.payer_id, CURRENCY, "token")
        payee_token = await ledger.account_id(session, s.payee_id, CURRENCY, "token")
    booked, moved = transfers["fiat_booked"], transfers["obligation"]
    assert (booked.debit_account_id, booked.credit_account_id) == (payer_fiat, payer_token)
    assert booked.notification_id == s.notification_id and booked.amount == AMOUNT
    assert (moved.debit_account_id, moved.credit_account_id) == (payer_token, payee_token)
    assert moved.obligation_id == s.obligation_id and moved.amount == AMOUNT
    assert token.transfer_id == moved.id


async def test_mint_leaves_other_payment_statuses_alone(sessions):
    # Only a SETTLED payment becomes COMPLETED; the conditional update touches nothing else.
    s = await make_scenario(sessions, payment_status=PaymentStatus.AWAITING_SETTLEMENT)
    await TokenActivities(sessions).mint_token(s.mint_input)
    assert await payment_status(sessions, s) == PaymentStatus.AWAITING_SETTLEMENT


async def test_second_mint_returns_the_same_token_and_posts_nothing(sessions):
    s = await make_scenario(sessions)
    engine = TokenActivities(sessions)
    first = await engine.mint_token(s.mint_input)
    transfers_after_first = await transfer_count(sessions, s)
    balances_after_first = await balances(sessions, s)
    assert transfers_after_first == 2

    second = await engine.mint_token(s.mint_input)

    assert second == first
    assert await transfer_count(sessions, s) == transfers_after_first
    assert await balances(sessions, s) == balances_after_first
    assert len(await tokens_of(sessions, s)) == 1
    assert await payment_status(sessions, s) == PaymentStatus.COMPLETED


async def test_racing_mints_of_one_obligation_produce_one_token(sessions):
    s = await make_scenario(sessions)
    results = await asyncio.gather(*(TokenActivities(sessions).mint_token(s.mint_input) for _ in range(4)))
    assert len({r.token_id for r in results}) == 1
    assert len(await tokens_of(sessions, s)) == 1
    assert await transfer_count(sessions, s) == 2
    assert (await balances(sessions, s))["payee_token"] == AMOUNT
    assert (await balances(sessions, s))["payer_fiat"] == AMOUNT


# --------------------------------------------------------------------------- DB guards


async def test_unique_index_refuses_a_second_token_for_an_obligation(sessions):
    s = await make_scenario(sessions)
    minted = await TokenActivities(sessions).mint_token(s.mint_input)
    (token,) = await tokens_of(sessions, s)

    with pytest.raises(IntegrityError, match="uq_tokens_obligation_id"):
        async with sessions() as session, session.begin():
            session.add(
                Token(
                    id=uuid.uuid4(),
                    obligation_id=s.obligation_id,
                    payment_id=s.payment_id,
                    owner_id=s.payee_id,
                    amount=AMOUNT,
                    currency=CURRENCY,
                    transfer_id=token.transfer_id,
                )
            )
    assert [t.id for t in await tokens_of(sessions, s)] == [minted.token_id]


async def test_no_transfer_may_take_a_token_account_below_zero(sessions):
    s = await make_scenario(sessions)
    await TokenActivities(sessions).mint_token(s.mint_input)
    before = await balances(sessions, s)
    transfers_before = await transfer_count(sessions, s)
    key = f"test-overdraw:{uuid.uuid4()}"

    with pytest.raises(ledger.LedgerRefused, match="balance_below_zero"):
        async with sessions() as session, session.begin():
            payee_token = await ledger.account_id(session, s.payee_id, CURRENCY, "token")
            payer_token = await ledger.account_id(session, s.payer_id, CURRENCY, "token")
            await ledger.post_transfer(
                session,
                idempotency_key=key,
                debit_account_id=payee_token,
                credit_account_id=payer_token,
                amount=AMOUNT + Decimal("0.01"),  # one fils more than the payee holds
                currency=CURRENCY,
                kind="obligation",
            )

    assert await balances(sessions, s) == before
    assert await transfer_count(sessions, s) == transfers_before
    async with sessions() as session:
        assert await session.scalar(select(LedgerTransfer.id).where(LedgerTransfer.idempotency_key == key)) is None


async def test_an_empty_token_account_cannot_pay(sessions):
    # The payer's tokens exist only once its fiat is booked: without it, nothing moves.
    s = await make_scenario(sessions, notification=False)
    with pytest.raises(ledger.LedgerRefused, match="balance_below_zero"):
        async with sessions() as session, session.begin():
            await ledger.post_transfer(
                session,
                idempotency_key=f"test-unbacked:{uuid.uuid4()}",
                debit_account_id=await ledger.account_id(session, s.payer_id, CURRENCY, "token"),
                credit_account_id=await ledger.account_id(session, s.payee_id, CURRENCY, "token"),
                amount=Decimal("0.01"),
                currency=CURRENCY,
                kind="obligation",
            )
    assert await balances(sessions, s) == ZERO


async def _post(sessions, s, *, key, debit, credit, amount, currency=CURRENCY):
    async with sessions() as session, session.begin():
        accounts = {
            who: await ledger.account_id(session, pid, CURRENCY, kind)
            for who, pid, kind in (("payer_token", s.payer_id, "token"), ("payee_token", s.payee_id, "token"))
        }
        return await ledger.post_transfer(
            session,
            idempotency_key=key,
            debit_account_id=accounts[debit],
            credit_account_id=accounts[credit],
            amount=amount,
            currency=currency,
            kind="obligation",
        )


@pytest.mark.parametrize(
    "posting, refusal",
    [
        (
            {"debit": "payee_token", "credit": "payer_token", "amount": Decimal("0.00")},
            ledger.Refusal.AMOUNT_NOT_POSITIVE,
        ),
        (
            {"debit": "payee_token", "credit": "payer_token", "amount": Decimal("-1.00")},
            ledger.Refusal.AMOUNT_NOT_POSITIVE,
        ),
        ({"debit": "payee_token", "credit": "payee_token", "amount": Decimal("1.00")}, ledger.Refusal.SAME_ACCOUNT),
        (
            {"debit": "payee_token", "credit": "payer_token", "amount": Decimal("1.00"), "currency": "USD"},
            ledger.Refusal.CURRENCY_MISMATCH,
        ),
    ],
)
async def test_the_ledger_names_each_posting_it_refuses_and_posts_nothing(sessions, posting, refusal):
    s = await make_scenario(sessions)
    await TokenActivities(sessions).mint_token(s.mint_input)
    before, transfers_before = await balances(sessions, s), await transfer_count(sessions, s)
    key = f"test-refused:{uuid.uuid4()}"

    with pytest.raises(ledger.LedgerRefused) as refused:
        await _post(sessions, s, key=key, **posting)

    assert refused.value.refusal is refusal and refusal.permanent
    assert await balances(sessions, s) == before
    assert await transfer_count(sessions, s) == transfers_before


async def test_a_key_posted_again_as_the_same_transfer_is_that_transfer_and_as_another_is_refused(sessions):
    s = await make_scenario(sessions)
    await TokenActivities(sessions).mint_token(s.mint_input)
    key = f"test-key:{uuid.uuid4()}"
    first = await _post(sessions, s, key=key, debit="payee_token", credit="payer_token", amount=Decimal("10.00"))
    after_first = await balances(sessions, s)

    again = await _post(sessions, s, key=key, debit="payee_token", credit="payer_token", amount=Decimal("10.00"))
    for changed in (
        {"debit": "payee_token", "credit": "payer_token", "amount": Decimal("10.01")},
        {"debit": "payer_token", "credit": "payee_token", "amount": Decimal("10.00")},
    ):
        with pytest.raises(ledger.LedgerRefused) as refused:
            await _post(sessions, s, key=key, **changed)
        assert refused.value.refusal is ledger.Refusal.KEY_REUSED

    assert again == first
    assert await balances(sessions, s) == after_first


async def test_a_posting_to_an_account_that_does_not_exist_is_refused(sessions):
    s = await make_scenario(sessions)
    await TokenActivities(sessions).mint_token(s.mint_input)
    with pytest.raises(ledger.LedgerRefused) as refused:
        async with sessions() as session, session.begin():
            await ledger.post_transfer(
                session,
                idempotency_key=f"test-nowhere:{uuid.uuid4()}",
                debit_account_id=await ledger.account_id(session, s.payee_id, CURRENCY, "token"),
                credit_account_id=uuid.uuid4(),
                amount=Decimal("1.00"),
                currency=CURRENCY,
                kind="obligation",
            )
    assert refused.value.refusal is ledger.Refusal.ACCOUNT_NOT_FOUND


async def test_db_refuses_settled_obligation_without_references(sessions):
    s = await make_scenario(sessions, settled=False, notification=False)
    for values in (
        {"status": ObligationStatus.SETTLED},
        {"status": ObligationStatus.SETTLED, "settled_at": func.now(), "bank_confirmation_reference": "BR-1"},
        {"status": ObligationStatus.SETTLED, "settled_at": func.now(), "camt054_entry_reference": "NTRY-1"},
        {
            "status": ObligationStatus.SETTLED,
            "bank_confirmation_reference": "BR-1",
            "camt054_entry_reference": "NTRY-1",
        },
    ):
        with pytest.raises(IntegrityError, match="ck_obligations_settled_has_references"):
            async with sessions() as session, session.begin():
                await session.execute(update(Obligation).where(Obligation.id == s.obligation_id).values(**values))
    async with sessions() as session:
        assert (
            await session.scalar(select(Obligation.status).where(Obligation.id == s.obligation_id))
            == ObligationStatus.PENDING
        )


async def test_db_refuses_inserting_a_settled_obligation_without_references(sessions):
    s = await make_scenario(sessions, settled=False, notification=False)
    other = await make_scenario(sessions, settled=False, notification=False)
    async with sessions() as session, session.begin():
        # Free the other scenario's payment for a fresh obligation row.
        await session.execute(Obligation.__table__.delete().where(Obligation.id == other.obligation_id))
    with pytest.raises(IntegrityError, match="ck_obligations_settled_has_references"):
        async with sessions() as session, session.begin():
            session.add(
                Obligation(
                    id=uuid.uuid4(),
                    payment_id=other.payment_id,
                    payer_id=s.payer_id,
                    payee_id=s.payee_id,
                    amount=AMOUNT,
                    currency=CURRENCY,
                    status=ObligationStatus.SETTLED,
                )
            )
