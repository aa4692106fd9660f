"""The double-entry token ledger: the one module that writes postings.

Per bank and currency there is a `fiat` account (fiat the bank booked on DelTran's
settlement account; debit-normal) and a `token` account (the bank's tokens;
credit-normal). Booking fiat for bank B debits fiat[B] and credits token[B]: supply and
backing grow together. A settled obligation debits token[payer] and credits
token[payee]. Both accounts' CHECK constraints refuse any posting that would take a
balance below zero, so token supply never exceeds booked fiat.

Everything that moves money comes through here, as TigerBeetle funnels every transfer
through one function:
- the idempotency keys: one posting per booked camt.054 entry (`fiat_booked_key`) and
  one per obligation (`obligation_key`), spelt here for Python and for SQL alike;
- the postings: one transfer (`post_transfer`), a window's obligations in one statement
  (`post_window_transfers`), a mint batch's per-account sums (`apply_legs`; its rows
  are inserted with the batch's tokens in activities/tokens.py, with these keys);
- the backing rule: token supply never above booked fiat (`backing_problems`).
"""
from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from deltran.db.tables import Account, LedgerTransfer


FIAT_BOOKED = "fiat_booked"  # transfer kinds (ck_ledger_transfers_kind)
OBLIGATION = "obligation"


def fiat_booked_key(notification_id: object) -> str:
    """The key of the posting that mints a booked camt.054 entry: at most once each."""
    return f"fiat-booked:{notification_id}"


def obligation_key(obligation_id: object) -> str:
    """The key of the posting that moves an obligation's tokens: at most once each."""
    return f"obligation:{obligation_id}"


def fiat_booked_key_sql(column: str) -> str:
    """`fiat_booked_key` as a SQL expression over `column`."""
    return f"'fiat-booked:' || {column}"


def obligation_key_sql(column: str) -> str:
    """`obligation_key` as a SQL expression over `column`."""
    return f"'obligation:' || {column}"


async def ensure_accounts(
    session: AsyncSession, participant_ids: list[uuid.UUID], currency: str
) -> None:
    """Create the fiat and token accounts of these banks in this currency, if missing."""
    rows = [
        {"participant_id": pid, "currency": currency, "kind": kind}
        for pid in participant_ids
        for kind in ("fiat", "token")
    ]
    await session.execute(insert(Account).values(rows).on_conflict_do_nothing())


async def account_id(
    session: AsyncSession, participant_id: uuid.UUID, currency: str, kind: str
) -> uuid.UUID:
    result = await session.execute(
        select(Account.id).where(
            Account.participant_id == participant_id,
            Account.currency == currency,
            Account.kind == kind,
        )
    )
    return result.scalar_one()


async def post_transfer(
    session: AsyncSession,
    *,
    idempotency_key: str,
    debit_account_id: uuid.UUID,
    credit_account_id: uuid.UUID,
    amount: Decimal,
    currency: str,
    kind: str,
    obligation_id: uuid.UUID | None = None,
    notification_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """Post one transfer at most once. Returns the transfer id (the earlier one when the
    key was already posted). Raises IntegrityError if a balance would go below zero;
    the caller's transaction then rolls back whole."""
    assert amount > 0, "a transfer moves a positive amount"
    assert debit_account_id != credit_account_id
    inserted = await session.execute(
        insert(LedgerTransfer)
        .values(
            idempotency_key=idempotency_key,
            debit_account_id=debit_account_id,
            credit_account_id=credit_account_id,
            amount=amount,
            currency=currency,
            kind=kind,
            obligation_id=obligation_id,
            notification_id=notification_id,
        )
        .on_conflict_do_nothing(index_elements=[LedgerTransfer.idempotency_key])
        .returning(LedgerTransfer.id)
    )
    transfer_id = inserted.scalar_one_or_none()
    if transfer_id is None:
        existing = await session.execute(
            select(LedgerTransfer.id).where(LedgerTransfer.idempotency_key == idempotency_key)
        )
        return existing.scalar_one()
    # Update in a fixed (id) order so concurrent transfers never deadlock.
    for acct_id, column in sorted(
        [(debit_account_id, "debits_posted"), (credit_account_id, "credits_posted")]
    ):
        await session.execute(
            update(Account)
            .where(Account.id == acct_id)
            .values({column: getattr(Account, column) + amount})
        )
    return transfer_id


async def balance(session: AsyncSession, account: uuid.UUID) -> Decimal:
    row = (
        await session.execute(
            select(Account.kind, Account.debits_posted, Account.credits_posted).where(
                Account.id == account
            )
        )
    ).one()
    if row.kind == "token":
        return row.credits_posted - row.debits_posted
    return row.debits_posted - row.credits_posted


# -- many postings at once -----------------------------------------------------------------

# A window's obligations, each token[payer] → token[payee] once (its key), and every
# account's balance updated once from the sum. The caller has locked the currency's
# accounts (`lock_currency_accounts`).
_WINDOW_TRANSFERS = text(
    f"""
    WITH moved AS (
        INSERT INTO ledger_transfers
            (id, idempotency_key, debit_account_id, credit_account_id, amount, currency, kind, obligation_id)
        SELECT gen_random_uuid(), {obligation_key_sql("o.id")}, pa.id, pe.id, o.amount, o.currency, '{OBLIGATION}', o.id
        FROM obligations o
        JOIN accounts pa ON pa.participant_id = o.payer_id AND pa.currency = o.currency AND pa.kind = 'token'
        JOIN accounts pe ON pe.participant_id = o.payee_id AND pe.currency = o.currency AND pe.kind = 'token'
        WHERE o.clearing_window_id = :w AND o.status = 'PENDING'
        ON CONFLICT (idempotency_key) DO NOTHING
        RETURNING debit_account_id, credit_account_id, amount
    ), per_account AS (
        SELECT account_id, sum(debit) AS debit, sum(credit) AS credit FROM (
            SELECT debit_account_id AS account_id, amount AS debit, 0 AS credit FROM moved
            UNION ALL
            SELECT credit_account_id, 0, amount FROM moved
        ) legs GROUP BY account_id
    )
    UPDATE accounts a
    SET debits_posted = a.debits_posted + p.debit, credits_posted = a.credits_posted + p.credit
    FROM per_account p WHERE a.id = p.account_id
    """
)

_LOCK_CURRENCY_ACCOUNTS = text("SELECT id FROM accounts WHERE currency = :currency ORDER BY id FOR NO KEY UPDATE")

# FOR NO KEY UPDATE (what the UPDATE takes anyway): it does not block the foreign-key
# checks (FOR KEY SHARE) of other transactions' postings.
LOCK_ACCOUNTS = text("SELECT id FROM accounts WHERE id = ANY(CAST(:ids AS uuid[])) ORDER BY id FOR NO KEY UPDATE")

# What a batch posted, per account, in ONE update; the CHECK constraints refuse any
# balance below zero.
_APPLY_LEGS = text(
    """
    UPDATE accounts a
    SET debits_posted = a.debits_posted + p.debit, credits_posted = a.credits_posted + p.credit
    FROM unnest(CAST(:ids AS uuid[]), CAST(:debits AS numeric[]), CAST(:credits AS numeric[])) AS p(id, debit, credit)
    WHERE a.id = p.id
    """
)


async def lock_currency_accounts(session: AsyncSession, currency: str) -> None:
    """Every account of the currency, locked in id order (as every other posting path
    locks its accounts), so a window settlement and concurrent mints never deadlock."""
    await session.execute(_LOCK_CURRENCY_ACCOUNTS, {"currency": currency})


async def post_window_transfers(session: AsyncSession, window_id: uuid.UUID) -> None:
    """Move the tokens of every pending obligation of the window (idempotent)."""
    await session.execute(_WINDOW_TRANSFERS, {"w": window_id})


async def apply_legs(session: AsyncSession, ids: list[uuid.UUID], debits: list[Decimal], credits: list[Decimal]) -> None:
    """Add a batch's per-account sums (its postings already inserted) to the balances.
    The rows are locked first, in id order, and only now — after the inserts — so
    concurrent batches hold the shared accounts briefly. `LOCK_ACCOUNTS` is looked up
    at call time (tests inject a statement there)."""
    await session.execute(LOCK_ACCOUNTS, {"ids": ids})
    await session.execute(_APPLY_LEGS, {"ids": ids, "debits": debits, "credits": credits})


# -- the backing rule ------------------------------------------------------------------------

_SUPPLY_AND_FIAT = text(
    """
    SELECT currency,
           coalesce(sum(credits_posted - debits_posted) FILTER (WHERE kind = 'token'), 0) AS supply,
           coalesce(sum(debits_posted - credits_posted) FILTER (WHERE kind = 'fiat'), 0) AS fiat
    FROM accounts WHERE currency = ANY(CAST(:currencies AS varchar[])) GROUP BY currency
    """
)


async def backing_problems(session: AsyncSession, currencies: list[str]) -> dict[str, str]:
    """Per currency whose token supply exceeds its booked fiat, the problem. Every mint
    path checks this inside its transaction (tier a of the account monitor)."""
    rows = (await session.execute(_SUPPLY_AND_FIAT, {"currencies": currencies})).all()
    return {r.currency: f"{r.currency} token supply {r.supply} exceeds booked fiat {r.fiat}"
            for r in rows if r.supply > r.fiat}
