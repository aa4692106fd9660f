"""Group commit for minting (activities/tokens/batcher.py, tokens.mint_batch) against the real
PostgreSQL: concurrent mints coalesce into batches without ever minting twice or past
the backing — with duplicates and refusals inside a batch, and when a batch fails
halfway and its mints are retried one by one.

Each test mints in a currency of its own (tests/support/minting.py `private_currency`),
so the currency's supply and fiat are exact and a breaker it opens stops no other test.
"""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError
from temporalio.exceptions import ApplicationError

from activities.tokens import TokenActivities
from deltran import ledger, reconciliation
from deltran.db.tables import Account, CircuitBreaker, LedgerTransfer, Payment, Token
from deltran.shared import MintInput
from deltran.temporal.errors import CIRCUIT_BREAKER_OPEN, MINT_REFUSED
from deltran.vocabulary import PaymentStatus
from tests.support.minting import (
    AMOUNT,
    Scenario,
    balances,
    make_scenario,
    new_bank,
    private_currency,
    tokens_of,
    transfer_count,
)


async def _scenarios(sessions, currency: str, n: int, *, banks: int = 4) -> list[Scenario]:
    """N settled, booked obligations among a few banks (so a batch's postings meet on
    shared accounts), amounts 1.01, 1.02, ... so every sum is distinctive."""
    ids = [await new_bank(sessions, currency=currency) for _ in range(banks)]
    return [
        await make_scenario(
            sessions,
            currency=currency,
            amount=Decimal("1.00") + Decimal(i + 1) / 100,
            payer_id=ids[i % banks],
            payee_id=ids[(i + 1) % banks],
        )
        for i in range(n)
    ]


async def _currency_state(sessions, currency: str) -> dict:
    async with sessions() as session:
        supply, fiat, negative = (
            await session.execute(
                select(
                    func.coalesce(
                        func.sum(Account.credits_posted - Account.debits_posted).filter(Account.kind == "token"), 0
                    ),
                    func.coalesce(
                        func.sum(Account.debits_posted - Account.credits_posted).filter(Account.kind == "fiat"), 0
                    ),
                    func.count().filter(
                        ((Account.kind == "token") & (Account.credits_posted < Account.debits_posted))
                        | ((Account.kind == "fiat") & (Account.debits_posted < Account.credits_posted))
                    ),
                ).where(Account.currency == currency)
            )
        ).one()
        tokens, distinct, minted = (
            await session.execute(
                select(
                    func.count(),
                    func.count(func.distinct(Token.obligation_id)),
                    func.coalesce(func.sum(Token.amount), 0),
                ).where(Token.currency == currency)
            )
        ).one()
        booked = await session.scalar(
            select(func.coalesce(func.sum(LedgerTransfer.amount), 0)).where(
                LedgerTransfer.currency == currency, LedgerTransfer.kind == "fiat_booked"
            )
        )
    return {
        "supply": supply,
        "fiat": fiat,
        "negative_accounts": negative,
        "tokens": tokens,
        "distinct_obligations": distinct,
        "minted": minted,
        "booked": booked,
    }


def _minted_metric(currency: str) -> float:
    return REGISTRY.get_sample_value("deltran_tokens_minted_total", {"currency": currency}) or 0.0


async def _assert_backed(sessions, currency: str, tokens: int) -> None:
    state = await _currency_state(sessions, currency)
    assert state["tokens"] == state["distinct_obligations"] == tokens, state
    assert state["negative_accounts"] == 0, state
    # Gross: each mint books its fiat and hands the same amount on: supply == fiat == minted.
    assert state["supply"] == state["fiat"] == state["booked"] == state["minted"], state


# --------------------------------------------------------------------------- coalescing


async def test_concurrent_mints_coalesce_into_batches_and_mint_each_once(sessions):
    currency = private_currency()
    scenarios = await _scenarios(sessions, currency, 100)
    engine = TokenActivities(sessions)

    results = await asyncio.gather(*(engine.mint_token(s.mint_input) for s in scenarios))

    assert engine.batcher.batches < len(scenarios) // 2, "the mints were not coalesced"
    assert engine.batcher.batch_failures == 0
    assert len({r.token_id for r in results}) == len(scenarios)
    for s, r in zip(scenarios, results, strict=True):
        (token,) = await tokens_of(sessions, s)
        assert (token.id, token.amount, token.currency, token.owner_id) == (r.token_id, s.amount, currency, s.payee_id)
        assert r.amount == s.amount and r.currency == currency
    # Balances exact: each bank received what it is payee of; payers' tokens moved on.
    expected: dict[uuid.UUID, Decimal] = {}
    for s in scenarios:
        expected[s.payee_id] = expected.get(s.payee_id, Decimal(0)) + s.amount
    async with sessions() as session:
        for bank, amount in expected.items():
            token_account = await ledger.account_id(session, bank, currency, "token")
            assert await ledger.balance(session, token_account) == amount
        statuses = set(
            await session.scalars(select(Payment.status).where(Payment.id.in_([s.payment_id for s in scenarios])))
        )
        transfers = await session.scalar(
            select(func.count()).select_from(LedgerTransfer).where(LedgerTransfer.currency == currency)
        )
    assert statuses == {PaymentStatus.COMPLETED}
    assert transfers == 2 * len(scenarios)
    assert _minted_metric(currency) == len(scenarios)
    await _assert_backed(sessions, currency, len(scenarios))

    # Again, all at once: every mint returns its token, nothing moves.
    again = await asyncio.gather(*(engine.mint_token(s.mint_input) for s in scenarios))
    assert again == results
    assert _minted_metric(currency) == len(scenarios)
    await _assert_backed(sessions, currency, len(scenarios))


async def test_duplicates_of_one_obligation_in_a_batch_mint_once(sessions):
    currency = private_currency()
    one, *others = await _scenarios(sessions, currency, 5)
    engine = TokenActivities(sessions)

    results = await asyncio.gather(
        *(engine.mint_token(one.mint_input) for _ in range(20)),
        *(engine.mint_token(s.mint_input) for s in others),
        # Another process's batcher racing for the same obligation.
        *(TokenActivities(sessions).mint_token(one.mint_input) for _ in range(3)),
    )

    assert len({r.token_id for r in results[:20]} | {r.token_id for r in results[-3:]}) == 1
    assert len(await tokens_of(sessions, one)) == 1
    assert await transfer_count(sessions, one) >= 2
    assert _minted_metric(currency) == 5
    await _assert_backed(sessions, currency, 5)


async def test_a_refused_mint_in_a_batch_refuses_alone(sessions):
    currency = private_currency()
    good = await _scenarios(sessions, currency, 6)
    pending = await make_scenario(
        sessions, currency=currency, settled=False, payment_status=PaymentStatus.AWAITING_SETTLEMENT
    )
    short = await make_scenario(sessions, currency=currency, booked_amount=AMOUNT - Decimal("0.01"))
    unbooked = await make_scenario(sessions, currency=currency, notification=False)
    unknown = MintInput(payment_id=uuid.uuid4(), obligation_id=uuid.uuid4())
    engine = TokenActivities(sessions)

    results = await asyncio.gather(
        *(engine.mint_token(s.mint_input) for s in good),
        engine.mint_token(pending.mint_input),
        engine.mint_token(short.mint_input),
        engine.mint_token(unbooked.mint_input),
        engine.mint_token(unknown),
        return_exceptions=True,
    )

    minted, refused = results[: len(good)], results[len(good) :]
    assert engine.batcher.batches == 1 and engine.batcher.batch_failures == 0
    assert all(not isinstance(r, BaseException) for r in minted), minted
    for error, fragment in zip(
        refused,
        ("PENDING, not SETTLED", "does not equal", "no booked camt.054 entry backs this obligation", "does not exist"),
        strict=True,
    ):
        assert isinstance(error, ApplicationError) and error.type == MINT_REFUSED and error.non_retryable, error
        assert fragment in str(error)
    for s in (pending, short, unbooked):
        assert await tokens_of(sessions, s) == []
        assert await transfer_count(sessions, s) == 0
    await _assert_backed(sessions, currency, len(good))


# --------------------------------------------------------------------------- failures


async def test_a_batch_failing_on_the_balance_check_retries_one_by_one(sessions):
    """The bad mint's payer already had its fiat booked and has spent those tokens: its
    obligation transfer would take the payer's token account below zero. The batch's
    aggregated UPDATE hits the CHECK, the batch rolls back whole, and the retry mints every
    other request exactly once while the bad one fails alone, refused as an overdraw."""
    currency = private_currency()
    good = await _scenarios(sessions, currency, 30)
    bad = await make_scenario(sessions, currency=currency)
    elsewhere = await new_bank(sessions, currency=currency)
    async with sessions() as session, session.begin():
        payer_fiat = await ledger.account_id(session, bad.payer_id, currency, "fiat")
        payer_token = await ledger.account_id(session, bad.payer_id, currency, "token")
        await ledger.post_transfer(
            session,
            idempotency_key=f"fiat-booked:{bad.notification_id}",
            debit_account_id=payer_fiat,
            credit_account_id=payer_token,
            amount=bad.amount,
            currency=currency,
            kind="fiat_booked",
            notification_id=bad.notification_id,
        )
        await ledger.post_transfer(
            session,
            idempotency_key=f"test-spent:{uuid.uuid4()}",
            debit_account_id=payer_token,
            credit_account_id=await ledger.account_id(session, elsewhere, currency, "token"),
            amount=bad.amount,
            currency=currency,
            kind="obligation",
        )
    engine = TokenActivities(sessions)

    inputs = [s.mint_input for s in good[:15]] + [bad.mint_input] + [s.mint_input for s in good[15:]]
    results = await asyncio.gather(*(engine.mint_token(i) for i in inputs), return_exceptions=True)

    assert engine.batcher.batch_failures >= 1
    failure = results[15]
    assert isinstance(failure, ledger.LedgerRefused) and failure.refusal is ledger.Refusal.BALANCE_BELOW_ZERO
    assert await tokens_of(sessions, bad) == []
    minted = results[:15] + results[16:]
    assert all(not isinstance(r, BaseException) for r in minted), minted
    for s, r in zip(good, minted, strict=True):
        assert [t.id for t in await tokens_of(sessions, s)] == [r.token_id]
    assert _minted_metric(currency) == len(good)
    state = await _currency_state(sessions, currency)
    assert state["tokens"] == state["distinct_obligations"] == len(good)
    assert state["negative_accounts"] == 0
    assert state["supply"] == state["fiat"] == state["booked"] == state["minted"] + bad.amount


async def test_a_token_inserted_behind_the_batchers_back_hits_the_unique_index(sessions, monkeypatch):
    """Right before the bulk INSERT, a token for one of the batch's obligations appears in
    the transaction (injected into the account-lock statement): the unique index refuses
    the second token, the whole batch rolls back — the injected row with it — and the
    one-by-one retry mints every request exactly once."""
    currency = private_currency()
    donor, *batch = await _scenarios(sessions, currency, 12)
    engine = TokenActivities(sessions)
    await engine.mint_token(donor.mint_input)
    (donor_token,) = await tokens_of(sessions, donor)
    victim = batch[7]
    # Only into a batch of this test's currency: the suite's worker mints in this process too.
    injecting = text(
        f"""
        WITH injected AS (
            INSERT INTO tokens (id, obligation_id, payment_id, owner_id, amount, currency, transfer_id)
            SELECT gen_random_uuid(), '{victim.obligation_id}', '{victim.payment_id}', '{victim.payee_id}',
                   {victim.amount}, '{currency}', '{donor_token.transfer_id}'
            WHERE EXISTS (SELECT 1 FROM accounts WHERE id = ANY(CAST(:ids AS uuid[])) AND currency = '{currency}')
            RETURNING id
        )
        SELECT id FROM accounts WHERE id = ANY(CAST(:ids AS uuid[])) AND (SELECT count(*) FROM injected) <= 1
        ORDER BY id FOR NO KEY UPDATE
        """
    )
    monkeypatch.setattr(ledger, "LOCK_ACCOUNTS", injecting)

    results = await asyncio.gather(*(engine.mint_token(s.mint_input) for s in batch))

    assert engine.batcher.batch_failures == 1
    assert len({r.token_id for r in results}) == len(batch)
    for s, r in zip(batch, results, strict=True):
        assert [t.id for t in await tokens_of(sessions, s)] == [r.token_id]
    assert _minted_metric(currency) == 1 + len(batch)
    await _assert_backed(sessions, currency, 1 + len(batch))


async def test_a_batch_failing_after_its_writes_leaves_nothing_half_applied(sessions, monkeypatch):
    """The connection breaks after the bulk writes, before the commit: nothing of the
    batch is applied, and the retry mints each request once."""
    currency = private_currency()
    scenarios = await _scenarios(sessions, currency, 20)
    real = ledger.backing_problems
    calls = 0

    async def breaks_once(session, currencies):
        nonlocal calls
        if currency not in currencies:  # the suite's worker, minting for another test
            return await real(session, currencies)
        calls += 1
        if calls == 1:
            # The batch's writes are in: tokens, transfers, balances, payments.
            assert await session.scalar(select(func.count()).select_from(Token).where(Token.currency == currency)) == 20
            raise ConnectionResetError("connection lost (injected)")
        return await real(session, currencies)

    monkeypatch.setattr(ledger, "backing_problems", breaks_once)
    engine = TokenActivities(sessions)

    results = await asyncio.gather(*(engine.mint_token(s.mint_input) for s in scenarios))

    # One batch failed, then each mint checked the backing on its own: one by one.
    assert engine.batcher.batch_failures == 1 and calls == 1 + len(scenarios)
    for s, r in zip(scenarios, results, strict=True):
        assert [t.id for t in await tokens_of(sessions, s)] == [r.token_id]
        assert await transfer_count(sessions, s) >= 2
    assert _minted_metric(currency) == len(scenarios)
    await _assert_backed(sessions, currency, len(scenarios))


async def test_a_broken_backing_fails_the_batch_opens_the_breaker_and_mints_nothing(sessions):
    currency = private_currency()
    scenarios = await _scenarios(sessions, currency, 8)
    tampered = scenarios[0].payee_id
    tamper = Decimal("1000.00")

    async def tamper_by(delta: Decimal) -> None:
        async with sessions() as session, session.begin():
            await session.execute(
                update(Account)
                .where(Account.participant_id == tampered, Account.currency == currency, Account.kind == "token")
                .values(credits_posted=Account.credits_posted + delta)
            )

    await tamper_by(tamper)
    engine = TokenActivities(sessions)
    try:
        results = await asyncio.gather(*(engine.mint_token(s.mint_input) for s in scenarios), return_exceptions=True)
        assert engine.batcher.batch_failures == 1
        for error in results:
            assert isinstance(error, ApplicationError), error
            assert error.type == CIRCUIT_BREAKER_OPEN and not error.non_retryable
        async with sessions() as session:
            assert (await session.get(CircuitBreaker, currency)).state == "OPEN"
        for s in scenarios:
            assert await tokens_of(sessions, s) == []
        # While the breaker is open a batch refuses at once, without failing.
        failures = engine.batcher.batch_failures
        again = await asyncio.gather(*(engine.mint_token(s.mint_input) for s in scenarios), return_exceptions=True)
        assert all(isinstance(e, ApplicationError) and e.type == CIRCUIT_BREAKER_OPEN for e in again)
        assert engine.batcher.batch_failures == failures
    finally:
        await tamper_by(-tamper)
    async with sessions() as session, session.begin():
        await reconciliation.close_breaker(session, currency, "test")
    results = await asyncio.gather(*(engine.mint_token(s.mint_input) for s in scenarios))
    assert len({r.token_id for r in results}) == len(scenarios)
    await _assert_backed(sessions, currency, len(scenarios))


# --------------------------------------------------------------------------- bounds, shutdown


async def test_batches_and_queue_are_bounded(sessions):
    currency = private_currency()
    scenarios = await _scenarios(sessions, currency, 40)
    engine = TokenActivities(sessions, max_batch=5, max_queue=10)

    results = await asyncio.gather(*(engine.mint_token(s.mint_input) for s in scenarios))

    assert engine.batcher.largest_batch <= 5 and engine.batcher.batches >= 8
    assert len({r.token_id for r in results}) == len(scenarios)
    await _assert_backed(sessions, currency, len(scenarios))


async def test_cancelled_callers_are_dropped_and_nothing_is_stranded(sessions):
    currency = private_currency()
    scenarios = await _scenarios(sessions, currency, 20)
    engine = TokenActivities(sessions, linger_s=0.05)

    tasks = [asyncio.create_task(engine.mint_token(s.mint_input)) for s in scenarios]
    await asyncio.sleep(0.01)  # all queued; the batch lingers
    for task in tasks[::2]:
        task.cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)

    for s, task, outcome in zip(scenarios, tasks, done, strict=True):
        if task.cancelled():
            assert await tokens_of(sessions, s) == []  # dropped before its batch ran
        else:
            assert [t.id for t in await tokens_of(sessions, s)] == [outcome.token_id]
    await engine.batcher.close()
    assert all(f.done() for f in engine.batcher._flushers)
    # After close, a mint still works (in its own transaction).
    result = await engine.mint_token(scenarios[0].mint_input)
    assert [t.id for t in await tokens_of(sessions, scenarios[0])] == [result.token_id]
    await _assert_backed(sessions, currency, 11)


@pytest.mark.parametrize("cancelled", ["while lingering", "before its first step"])
async def test_a_cancelled_flusher_fails_its_waiting_mints(sessions, cancelled):
    currency = private_currency()
    scenarios = await _scenarios(sessions, currency, 5)
    engine = TokenActivities(sessions, linger_s=0.5)

    tasks = [asyncio.create_task(engine.mint_token(s.mint_input)) for s in scenarios]
    # sleep(0): the mint tasks queue their requests and create the flusher, which has not
    # run yet when this test resumes; 10 ms: it is lingering for more requests.
    await asyncio.sleep(0.01 if cancelled == "while lingering" else 0)
    assert engine.batcher._flushers
    for flusher in engine.batcher._flushers:
        flusher.cancel()
    done = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)

    assert all(isinstance(e, RuntimeError) and "stopped" in str(e) for e in done), done
    for s in scenarios:
        assert await tokens_of(sessions, s) == []
    assert engine.batcher._room._value == engine.batcher.max_queue  # their room is given back
    # The next mint starts a new flusher.
    await engine.mint_token(scenarios[0].mint_input)
    await _assert_backed(sessions, currency, 1)


@pytest.mark.parametrize("path", ["batch", "one"])
async def test_both_paths_return_the_same_for_an_existing_token(sessions, path):
    s = await make_scenario(sessions, currency=private_currency())
    engine = TokenActivities(sessions)
    first = await engine.mint_token(s.mint_input)
    if path == "batch":
        again = await engine.mint_token(s.mint_input)
    else:
        again, created = await engine.mint_one(s.mint_input)
        assert created is False
    assert again == first
    assert await balances(sessions, s) == {
        "payer_fiat": AMOUNT,
        "payer_token": 0,
        "payee_fiat": 0,
        "payee_token": AMOUNT,
    }


@pytest.mark.parametrize(
    "column, wrong",
    [("owner_id", "payer"), ("amount", Decimal("0.01")), ("currency", "QQQ"), ("payment_id", "other payment")],
)
async def test_a_token_must_carry_its_obligations_terms(sessions, column, wrong):
    """One composite foreign key (fk_tokens_obligation_terms) ties every token to its
    obligation's payment, payee, amount and currency: a token that differs in any of
    them is refused by the database, whatever code wrote it."""
    currency = private_currency()
    s, other = await _scenarios(sessions, currency, 2)
    engine = TokenActivities(sessions)
    await engine.mint_token(other.mint_input)
    (donor,) = await tokens_of(sessions, other)
    values = {
        "obligation_id": s.obligation_id,
        "payment_id": s.payment_id,
        "owner_id": s.payee_id,
        "amount": s.amount,
        "currency": currency,
        "transfer_id": donor.transfer_id,
    }
    values[column] = {"payer": s.payer_id, "other payment": other.payment_id}.get(wrong, wrong)

    with pytest.raises(IntegrityError, match="fk_tokens_obligation_terms"):
        async with sessions() as session, session.begin():
            session.add(Token(id=uuid.uuid4(), **values))

    values[column] = {"owner_id": s.payee_id, "amount": s.amount, "currency": currency, "payment_id": s.payment_id}[
        column
    ]
    async with sessions() as session, session.begin():
        session.add(Token(id=uuid.uuid4(), **values))  # the same row with the obligation's terms is taken


async def test_single_mints_and_batches_sharing_accounts_never_deadlock(sessions):
    """Single mints (the fallback path) lock their accounts FOR NO KEY UPDATE, which does
    not conflict with the FOR KEY SHARE locks a concurrent batch's foreign-key checks take
    on the same accounts in posting order. With FOR UPDATE the two deadlocked; here every
    mint of both paths succeeds the first time."""
    currency = private_currency()
    scenarios = await _scenarios(sessions, currency, 240)
    batched = TokenActivities(sessions)
    single = TokenActivities(sessions)

    async def one(s):
        result, created = await single.mint_one(s.mint_input)
        assert created
        return result

    results = await asyncio.gather(
        *(batched.mint_token(s.mint_input) if i % 2 else one(s) for i, s in enumerate(scenarios)),
        return_exceptions=True,
    )

    failures = [r for r in results if isinstance(r, BaseException)]
    assert failures == [], failures[:3]
    assert batched.batcher.batch_failures == 0
    await _assert_backed(sessions, currency, len(scenarios))
