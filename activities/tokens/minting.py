"""Token engine: mints the token for a settled obligation, backed 1:1 by booked fiat.

Before it mints it validates (deltran/domain/tokens.py, docs/architecture.md): the
obligation is SETTLED; its bank reference is present; no token exists yet for it (the
unique index on tokens.obligation_id is the final guard, even when two mints race); the
fiat is verified on the account (a booked camt.054 credit of exactly this amount and
currency, matched to this payment). Then, in the same transaction, on the double-entry
ledger: the booked fiat is minted to the payer (fiat[payer] → token[payer]) and the
settled obligation moves it to the payee (token[payer] → token[payee]).

Two ways to run a mint, with the same validations, results and errors:
- `mint_one`: one mint, one transaction (row lock on the obligation, ORM queries);
- `mint_batch`: many mints in one transaction, set-based (group commit: docs/capacity.md,
  "Minting"). `mint_token`, the activity, goes through the worker process's
  `MintBatcher` (activities/tokens/batcher.py), which coalesces concurrent mints into
  batches and falls back to `mint_one`, request by request, when a batch fails whole.
"""

from __future__ import annotations

import contextlib
import functools
import uuid
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from typing import cast

from sqlalchemy import CursorResult, and_, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import NoResultFound
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.tokens.batcher import MintBatcher, Outcome
from deltran import events, ledger, reconciliation
from deltran.db.tables import Account, BankNotification, ClearingWindow, LedgerTransfer, Obligation, Payment, Token
from deltran.domain.tokens import FiatEvidence, mint_refusal, net_mint_refusal
from deltran.observability import metrics
from deltran.shared import MintInput, MintResult
from deltran.temporal.errors import breaker_open_error, mint_refused
from deltran.vocabulary import AccountKind, BreakerState, EntryOutcome, EventType, PaymentStatus, SettlementMode


@contextlib.asynccontextmanager
async def minting_transaction(sessions: async_sessionmaker) -> AsyncIterator[AsyncSession]:
    """A transaction that mints. Tier a of the account monitor: one whose postings would
    take the token supply above the booked fiat rolls back, the currency's breaker opens,
    and the step fails retryably (its payment waits with the others until it closes)."""
    try:
        async with sessions() as session, session.begin():
            yield session
    except ledger.LedgerRefused as broken:
        if broken.refusal is not ledger.Refusal.SUPPLY_EXCEEDS_FIAT:
            raise
        assert broken.currency is not None
        async with sessions() as session, session.begin():
            await reconciliation.open_breaker(session, broken.currency, str(broken))
        raise breaker_open_error(broken.currency) from None


class TokenActivities:
    def __init__(
        self,
        session_factory: async_sessionmaker,
        *,
        max_batch: int = 1000,
        linger_s: float = 0.002,
        max_queue: int = 10_000,
    ) -> None:
        self._sessions = session_factory
        # One per worker process: the activity's concurrent mints share its batches.
        self.batcher: MintBatcher[MintInput, MintResult] = MintBatcher(
            flush=self.mint_batch,
            one=self.mint_one,
            key=lambda data: data.obligation_id,
            on_created=_count_minted,
            max_batch=max_batch,
            linger_s=linger_s,
            max_queue=max_queue,
        )

    @activity.defn(name="mint_token")
    async def mint_token(self, data: MintInput) -> MintResult:
        return await self.batcher.submit(data)

    async def mint_one(self, data: MintInput) -> tuple[MintResult, bool]:
        """One mint in its own transaction: (the token, whether this call minted it).
        The batcher's fallback, and the benchmark's baseline. Metrics are the caller's."""
        async with minting_transaction(self._sessions) as session:
            return await self._mint(session, data)

    async def mint_batch(self, inputs: Sequence[MintInput]) -> dict[uuid.UUID, Outcome[MintResult]]:
        """Many mints in one transaction; per obligation, what a `mint_one` would have
        returned or raised. Raises (after rolling back whole) if the transaction fails:
        a refused posting or a broken backing (`ledger.LedgerRefused`), a database error."""
        async with self._sessions() as session, session.begin():
            return await mint_batch(session, inputs)

    async def _mint(self, session: AsyncSession, data: MintInput) -> tuple[MintResult, bool]:
        # The row lock serialises concurrent mints of one obligation; the unique
        # index on tokens.obligation_id stays the last word.
        obligation = await session.scalar(
            select(Obligation).where(Obligation.id == data.obligation_id).with_for_update()
        )
        if obligation is None:
            raise mint_refused(f"obligation {data.obligation_id} does not exist")
        existing = await _token_of(session, obligation.id)
        if existing is not None:
            return existing, False
        if await reconciliation.breaker_is_open(session, obligation.currency):
            raise breaker_open_error(obligation.currency)
        if obligation.settlement_mode == SettlementMode.NET:
            result = await self._mint_net(session, obligation)
        else:
            result = await self._mint_gross(session, obligation)
        await ledger.check_backing(session, [obligation.currency])
        completed = await session.execute(
            update(Payment)
            .where(Payment.id == obligation.payment_id, Payment.status == PaymentStatus.SETTLED)
            .values(status=PaymentStatus.COMPLETED, updated_at=func.now())
        )
        if cast(CursorResult, completed).rowcount:
            await events.payment_events(
                session, [obligation.payment_id], EventType.PAYMENT_COMPLETED, EventType.PAYMENT_CREDITED
            )
        return result, True

    async def _mint_gross(self, session: AsyncSession, obligation: Obligation) -> MintResult:
        notification = await _fiat_entry(session, obligation)
        fiat = (
            None
            if notification is None
            else FiatEvidence(
                entry_status=notification.entry_status,
                credit_debit=notification.credit_debit,
                reversal=notification.reversal,
                amount=notification.amount,
                currency=notification.currency,
                outcome=notification.outcome,
            )
        )
        if (refusal := mint_refusal(obligation, fiat)) is not None:
            raise mint_refused(refusal)
        assert notification is not None
        return await self._post(session, obligation, notification)

    async def _mint_net(self, session: AsyncSession, obligation: Obligation) -> MintResult:
        """Net: the window's settlement already moved the tokens (one transaction for
        the whole window, backed by its booked fundings); the token records that
        transfer for this obligation."""
        window_status = await session.scalar(
            select(ClearingWindow.status).where(ClearingWindow.id == obligation.clearing_window_id)
        )
        transfer_id = await session.scalar(
            select(LedgerTransfer.id).where(LedgerTransfer.idempotency_key == ledger.obligation_key(obligation.id))
        )
        if (refusal := net_mint_refusal(obligation, window_status, transfer_id is not None)) is not None:
            raise mint_refused(refusal)
        assert transfer_id is not None
        return await insert_token(session, obligation, transfer_id)

    async def _post(self, session: AsyncSession, obligation: Obligation, notification: BankNotification) -> MintResult:
        payer_fiat, payer_token, payee_token = await _lock_accounts(session, obligation)
        transfer_id = await ledger.book_and_move(
            session,
            notification_id=notification.id,
            obligation_id=obligation.id,
            payer_fiat=payer_fiat,
            payer_token=payer_token,
            payee_token=payee_token,
            amount=obligation.amount,
            currency=obligation.currency,
        )
        return await insert_token(session, obligation, transfer_id)


async def _lock_accounts(session: AsyncSession, obligation: Obligation) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    """The payer's fiat and token accounts and the payee's token account, locked in id
    order up front: two mints (or a mint and a batch, which locks its accounts in id
    order too, or a window settlement, which locks its currency's accounts in id order)
    sharing accounts then never deadlock over them."""
    rows = (
        await session.execute(
            select(Account.id, Account.participant_id, Account.kind)
            .where(
                Account.currency == obligation.currency,
                or_(
                    Account.participant_id == obligation.payer_id,
                    and_(Account.participant_id == obligation.payee_id, Account.kind == AccountKind.TOKEN),
                ),
            )
            .order_by(Account.id)
            # FOR NO KEY UPDATE (what its UPDATE needs): unlike FOR UPDATE it does not
            # conflict with the FOR KEY SHARE locks that other transactions' foreign-key
            # checks take on these accounts in their own order — with FOR UPDATE, a
            # single mint and a concurrent batch could deadlock.
            .with_for_update(key_share=True)
        )
    ).all()
    found = {(r.participant_id, r.kind): r.id for r in rows}
    wanted = (
        (obligation.payer_id, AccountKind.FIAT),
        (obligation.payer_id, AccountKind.TOKEN),
        (obligation.payee_id, AccountKind.TOKEN),
    )
    if missing := [w for w in wanted if w not in found]:
        raise NoResultFound(f"no {missing[0][1]} account in {obligation.currency} for participant {missing[0][0]}")
    payer_fiat, payer_token, payee_token = (found[w] for w in wanted)
    return payer_fiat, payer_token, payee_token


async def _token_of(session: AsyncSession, obligation_id) -> MintResult | None:
    token = await session.scalar(select(Token).where(Token.obligation_id == obligation_id))
    if token is None:
        return None
    return MintResult(token_id=token.id, amount=token.amount, currency=token.currency)


async def _fiat_entry(session: AsyncSession, obligation: Obligation) -> BankNotification | None:
    if obligation.camt054_entry_reference is None:
        return None
    return await session.scalar(
        select(BankNotification).where(
            BankNotification.payment_id == obligation.payment_id,
            BankNotification.entry_reference == obligation.camt054_entry_reference,
            BankNotification.outcome == EntryOutcome.MATCHED,
        )
    )


async def insert_token(session: AsyncSession, obligation: Obligation, transfer_id) -> MintResult:
    """The token of a settled obligation whose tokens `transfer_id` moved to its payee."""
    token_id = await session.scalar(
        insert(Token)
        .values(
            obligation_id=obligation.id,
            payment_id=obligation.payment_id,
            owner_id=obligation.payee_id,
            amount=obligation.amount,
            currency=obligation.currency,
            transfer_id=transfer_id,
        )
        .returning(Token.id)
    )
    assert token_id is not None
    return MintResult(token_id=token_id, amount=obligation.amount, currency=obligation.currency)


@functools.cache
def _minted_counters(currency: str):
    # Resolving a label set costs more than the increment: resolve once per currency.
    return (
        metrics.tokens_minted.labels(currency),
        metrics.tokens_minted_amount.labels(currency),
        metrics.payments_final.labels(PaymentStatus.COMPLETED.value),
    )


def _count_minted(result: MintResult) -> None:
    """Once per new token, whichever path minted it."""
    tokens, amount, completed = _minted_counters(result.currency)
    tokens.inc()
    amount.inc(float(result.amount))
    completed.inc()


# -- many mints in one transaction ---------------------------------------------------------
#
# Per batch: lock the obligations (id order), read the evidence, decide in Python (the
# same pure checks as `mint_one`), write transfers + tokens + payments in one statement,
# lock and update the accounts (id order), check the backing. Seven round trips whatever
# the batch size; PostgreSQL draws the new ids (gen_random_uuid), and only the columns
# the decisions need come back.

# Row locks in id order: two batches (or a batch and a single mint) of different workers
# never deadlock over their obligations. Only the count comes back: the evidence query,
# a new snapshot taken after the locks, reads the rows (and what a racing mint committed).
_LOCK_OBLIGATIONS = text(
    """
    WITH locked AS (
        SELECT id FROM obligations WHERE id = ANY(CAST(:ids AS uuid[])) ORDER BY id FOR UPDATE
    )
    SELECT count(*) FROM locked
    """
)

# Per obligation: the fields the checks read, its token if any (its amount and currency
# are the obligation's: fk_tokens_obligation_terms), the evidence each validation needs,
# for a net obligation the window's transfer that moved it, its currency's breaker and
# the three ledger accounts (joined: a few hundred accounts hash-join in one pass). A
# gross obligation's two postings are made in the same transaction as its token, so
# they exist only with the token; the write's unique keys stay the guard.
_EVIDENCE = text(
    f"""
    SELECT o.id, o.payment_id, o.payee_id, o.amount, o.currency, o.status, o.settlement_mode,
           o.bank_confirmation_reference, o.camt054_entry_reference,
           t.id AS token_id,
           n.id AS notification_id, n.entry_status, n.credit_debit, n.reversal,
           n.amount AS booked_amount, n.currency AS booked_currency, n.outcome,
           w.status AS window_status,
           (SELECT id FROM ledger_transfers
            WHERE o.settlement_mode = 'NET' AND idempotency_key = {ledger.obligation_key_sql("o.id")}) AS moved_id,
           b.state AS breaker,
           payer_fiat.id AS payer_fiat, payer_token.id AS payer_token, payee_token.id AS payee_token
    FROM obligations o
    LEFT JOIN tokens t ON t.obligation_id = o.id
    LEFT JOIN LATERAL (
        SELECT id, entry_status, credit_debit, reversal, amount, currency, outcome FROM bank_notifications
        WHERE o.settlement_mode <> 'NET' AND payment_id = o.payment_id
          AND entry_reference = o.camt054_entry_reference AND outcome = 'MATCHED'
        LIMIT 1
    ) AS n ON true
    LEFT JOIN clearing_windows w ON o.settlement_mode = 'NET' AND w.id = o.clearing_window_id
    LEFT JOIN circuit_breakers b ON b.currency = o.currency
    LEFT JOIN accounts payer_fiat
           ON payer_fiat.participant_id = o.payer_id AND payer_fiat.currency = o.currency AND payer_fiat.kind = 'fiat'
    LEFT JOIN accounts payer_token
           ON payer_token.participant_id = o.payer_id AND payer_token.currency = o.currency
          AND payer_token.kind = 'token'
    LEFT JOIN accounts payee_token
           ON payee_token.participant_id = o.payee_id AND payee_token.currency = o.currency
          AND payee_token.kind = 'token'
    WHERE o.id = ANY(CAST(:ids AS uuid[]))
    """
)

# The batch's postings, tokens and payments in one statement, returning each new token's
# id. Per mint: the booked fiat to post (gross: `notification`; net: NULL), the
# obligation transfer (gross; for net `moved` is the window's, posted at its settlement),
# the token, the payment COMPLETED. The postings are plain INSERTs: a conflict on an
# idempotency key (or a second token: the unique index on tokens.obligation_id) fails
# the batch, which is then retried one by one — each mint on its own, idempotently.
_WRITE = text(
    f"""
    WITH mint AS (
        SELECT * FROM unnest(
            CAST(:obligation AS uuid[]), CAST(:payment AS uuid[]), CAST(:payee AS uuid[]),
            CAST(:amount AS numeric[]), CAST(:currency AS varchar[]), CAST(:notification AS uuid[]),
            CAST(:payer_fiat AS uuid[]), CAST(:payer_token AS uuid[]), CAST(:payee_token AS uuid[]),
            CAST(:moved AS uuid[]))
            AS m(obligation_id, payment_id, payee_id, amount, currency, notification_id,
                 payer_fiat, payer_token, payee_token, moved_id)
    ), posted AS (
        INSERT INTO ledger_transfers
            (id, idempotency_key, debit_account_id, credit_account_id, amount, currency, kind,
             obligation_id, notification_id)
        SELECT gen_random_uuid(), {ledger.fiat_booked_key_sql("notification_id")}, payer_fiat, payer_token, amount,
               currency, '{ledger.FIAT_BOOKED}', NULL::uuid, notification_id
        FROM mint WHERE notification_id IS NOT NULL
        UNION ALL
        SELECT gen_random_uuid(), {ledger.obligation_key_sql("obligation_id")}, payer_token, payee_token, amount,
               currency, '{ledger.OBLIGATION}', obligation_id, NULL::uuid
        FROM mint WHERE moved_id IS NULL
        RETURNING id, obligation_id
    ), minted AS (
        INSERT INTO tokens (id, obligation_id, payment_id, owner_id, amount, currency, transfer_id)
        SELECT gen_random_uuid(), m.obligation_id, m.payment_id, m.payee_id, m.amount, m.currency,
               coalesce(m.moved_id, p.id)
        FROM mint m LEFT JOIN posted p ON p.obligation_id = m.obligation_id
        RETURNING obligation_id, id
    ), completed AS (
        -- (Data-modifying CTEs run to completion whether or not the query reads them.)
        UPDATE payments SET status = 'COMPLETED', updated_at = now()
        WHERE id IN (SELECT payment_id FROM mint) AND status = 'SETTLED'
        RETURNING *
    ), told AS (
        {events.payment_events_sql("completed", (EventType.PAYMENT_COMPLETED, EventType.PAYMENT_CREDITED))}
    )
    SELECT obligation_id, id FROM minted
    """
)


class _Postings:
    """Column arrays for _WRITE (one entry per mint), and what its postings move per
    account."""

    COLUMNS = (
        "obligation",
        "payment",
        "payee",
        "amount",
        "currency",
        "notification",
        "payer_fiat",
        "payer_token",
        "payee_token",
        "moved",
    )

    def __init__(self) -> None:
        self.columns: dict[str, list] = {k: [] for k in self.COLUMNS}
        self.debits: dict[uuid.UUID, Decimal] = {}
        self.credits: dict[uuid.UUID, Decimal] = {}
        self.currencies: set[str] = set()

    def mint(self, ev, *, book: bool) -> None:
        """A token for this obligation (its row of the evidence); `book`: post its booked
        fiat; its obligation transfer unless `ev.moved_id` shows it posted."""
        amount = ev.amount
        for column, value in zip(
            self.columns.values(),
            (
                ev.id,
                ev.payment_id,
                ev.payee_id,
                amount,
                ev.currency,
                ev.notification_id if book else None,
                ev.payer_fiat,
                ev.payer_token,
                ev.payee_token,
                ev.moved_id,
            ),
            strict=True,
        ):
            column.append(value)
        if book:
            self._move(ev.payer_fiat, ev.payer_token, amount)
        if ev.moved_id is None:
            self._move(ev.payer_token, ev.payee_token, amount)
        self.currencies.add(ev.currency)

    def _move(self, debit: uuid.UUID, credit: uuid.UUID, amount: Decimal) -> None:
        self.debits[debit] = self.debits.get(debit, 0) + amount
        self.credits[credit] = self.credits.get(credit, 0) + amount

    def legs(self) -> tuple[list[uuid.UUID], list[Decimal], list[Decimal]]:
        """Per account (in id order: the lock order), the sums debited and credited."""
        ids = sorted(self.debits.keys() | self.credits.keys())
        zero = Decimal(0)
        return ids, [self.debits.get(a, zero) for a in ids], [self.credits.get(a, zero) for a in ids]


def _refusal(ev) -> str | None:
    """`mint_one`'s refusal for this obligation, from its row of the batch's evidence
    (which carries the obligation's own fields too)."""
    if ev.settlement_mode == SettlementMode.NET:
        return net_mint_refusal(ev, ev.window_status, ev.moved_id is not None)
    fiat = (
        None
        if ev.notification_id is None
        else FiatEvidence(
            ev.entry_status, ev.credit_debit, ev.reversal, ev.booked_amount, ev.booked_currency, ev.outcome
        )
    )
    return mint_refusal(ev, fiat)


async def mint_batch(session: AsyncSession, inputs: Sequence[MintInput]) -> dict[uuid.UUID, Outcome[MintResult]]:
    """`mint_one`'s checks and effects for every obligation of the batch, in the caller's
    transaction, set-based: O(1) statements per batch (plus one per currency for the
    backing check). Duplicates of one obligation get one outcome."""
    ids = sorted({data.obligation_id for data in inputs})
    await session.execute(_LOCK_OBLIGATIONS, {"ids": ids})
    evidence = {row.id: row for row in await session.execute(_EVIDENCE, {"ids": ids})}
    outcomes: dict[uuid.UUID, Outcome[MintResult]] = {}
    out = _Postings()
    for oid in ids:
        ev = evidence.get(oid)
        if ev is None:
            outcomes[oid] = Outcome(error=functools.partial(mint_refused, f"obligation {oid} does not exist"))
            continue
        if ev.token_id is not None:
            outcomes[oid] = Outcome(result=MintResult(token_id=ev.token_id, amount=ev.amount, currency=ev.currency))
            continue
        if ev.breaker == BreakerState.OPEN:
            outcomes[oid] = Outcome(error=functools.partial(breaker_open_error, ev.currency))
            continue
        if (refusal := _refusal(ev)) is not None:
            outcomes[oid] = Outcome(error=functools.partial(mint_refused, refusal))
            continue
        out.mint(ev, book=ev.settlement_mode != SettlementMode.NET)
    if out.columns["obligation"]:
        minted: dict[uuid.UUID, uuid.UUID] = dict((await session.execute(_WRITE, out.columns)).all())
        for oid in out.columns["obligation"]:
            ev = evidence[oid]
            outcomes[oid] = Outcome(
                result=MintResult(token_id=minted[oid], amount=ev.amount, currency=ev.currency), created=True
            )
        accounts, debits, credits = out.legs()
        if accounts:
            await ledger.apply_legs(session, accounts, debits, credits)
        await ledger.check_backing(session, sorted(out.currencies))
    return outcomes
