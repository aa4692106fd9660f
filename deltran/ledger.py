"""The double-entry token ledger: the one module that writes postings.

Per bank and currency there is a `fiat` account (fiat the bank booked on DelTran's
settlement account; debit-normal) and a `token` account (the bank's tokens;
credit-normal). Booking fiat for bank B debits fiat[B] and credits token[B]: supply and
backing grow together. A settled obligation debits token[payer] and credits
token[payee]. Both accounts' CHECK constraints refuse any posting that would take a
balance below zero, so token supply never exceeds booked fiat.

Everything that moves money comes through here, as TigerBeetle funnels every transfer
through one function:
- the idempotency keys: one posting per booked camt.054 entry (`fiat_booked_key`), one
  per obligation (`obligation_key`) and, for a cross-currency leg held in escrow, one
  release or unwind (`escrow_release_key`, `escrow_unwind_key`), spelt here for Python
  and for SQL alike;
- the postings: one transfer (`post_transfer`), a window's obligations in one statement
  (`post_window_transfers`), a mint batch's per-account sums (`apply_legs`; its rows
  are inserted with the batch's tokens in activities/tokens/minting.py, with these keys);
- the backing rule: token supply never above booked fiat (`backing_problems`,
  `check_backing`);
- the answer when a posting cannot be made: one `Refusal` per failure, raised as
  `LedgerRefused`, whichever path (and whichever CHECK constraint) found it.
"""

from __future__ import annotations

import contextlib
import enum
import uuid
from collections.abc import Iterator, Sequence
from decimal import Decimal

from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from deltran.db.tables import Account, LedgerTransfer, table_of
from deltran.vocabulary import CREDIT_NORMAL_KINDS, SUPPLY_KINDS, AccountKind, TransferKind, sql_in

FIAT_BOOKED = TransferKind.FIAT_BOOKED  # transfer kinds (ck_ledger_transfers_kind)
OBLIGATION = TransferKind.OBLIGATION


class Refusal(enum.Enum):
    """Why the ledger refuses a posting: one name per failure. Every one but
    SUPPLY_EXCEEDS_FIAT is a property of the posting itself, so no retry can change it."""

    AMOUNT_NOT_POSITIVE = "amount_not_positive"
    SAME_ACCOUNT = "same_account"
    ACCOUNT_NOT_FOUND = "account_not_found"
    CURRENCY_MISMATCH = "currency_mismatch"  # an account is not in the posting's currency
    BALANCE_BELOW_ZERO = "balance_below_zero"  # the debit account does not hold the amount
    KEY_REUSED = "key_reused"  # the key was posted before, as a different transfer
    # Token supply above booked fiat after the postings: the books are wrong, not the
    # posting; the caller opens the currency's breaker (activities/tokens/minting.py).
    SUPPLY_EXCEEDS_FIAT = "supply_exceeds_fiat"

    @property
    def permanent(self) -> bool:
        return self is not Refusal.SUPPLY_EXCEEDS_FIAT


class LedgerRefused(Exception):
    """A posting the ledger did not make; the caller's transaction rolls back whole."""

    def __init__(self, refusal: Refusal, detail: str, *, currency: str | None = None) -> None:
        super().__init__(f"{refusal.value}: {detail}")
        self.refusal = refusal
        self.currency = currency


# The constraints that guard postings (deltran/db/tables.py), and the refusal each means.
_CONSTRAINTS = {
    "ck_accounts_balance_not_negative": Refusal.BALANCE_BELOW_ZERO,
    "ck_ledger_transfers_amount_positive": Refusal.AMOUNT_NOT_POSITIVE,
    "ck_ledger_transfers_distinct_accounts": Refusal.SAME_ACCOUNT,
    "fk_ledger_transfers_debit_account_id_accounts": Refusal.ACCOUNT_NOT_FOUND,
    "fk_ledger_transfers_credit_account_id_accounts": Refusal.ACCOUNT_NOT_FOUND,
}


def refusal_of(exc: IntegrityError) -> Refusal | None:
    """The refusal a constraint violation raised by a posting statement means, if any. Pure."""
    constraint = getattr(getattr(exc.orig, "__cause__", None), "constraint_name", None)
    if constraint is None:  # the driver did not say: look for the name in the message
        constraint = next((name for name in _CONSTRAINTS if name in str(exc.orig)), None)
    return _CONSTRAINTS.get(constraint) if isinstance(constraint, str) else None


@contextlib.contextmanager
def _refusing(detail: str, currency: str | None = None) -> Iterator[None]:
    """Name a posting statement's constraint violation as its refusal."""
    try:
        yield
    except IntegrityError as exc:
        if (refusal := refusal_of(exc)) is None:
            raise
        raise LedgerRefused(refusal, detail, currency=currency) from exc


def fiat_booked_key(notification_id: object) -> str:
    """The key of the posting that mints a booked camt.054 entry: at most once each."""
    return f"fiat-booked:{notification_id}"


def obligation_key(obligation_id: object) -> str:
    """The key of the posting that moves an obligation's tokens: at most once each."""
    return f"obligation:{obligation_id}"


def escrow_release_key(obligation_id: object) -> str:
    """The key of the posting that pays a cross-currency leg's escrow to its payee."""
    return f"escrow-release:{obligation_id}"


def escrow_unwind_key(obligation_id: object) -> str:
    """The key of the posting that gives a cross-currency leg's escrow back to its payer."""
    return f"escrow-unwind:{obligation_id}"


def escrow_release_key_sql(column: str) -> str:
    """`escrow_release_key` as a SQL expression over `column`."""
    return f"'escrow-release:' || {column}"


def fiat_booked_key_sql(column: str) -> str:
    """`fiat_booked_key` as a SQL expression over `column`."""
    return f"'fiat-booked:' || {column}"


def obligation_key_sql(column: str) -> str:
    """`obligation_key` as a SQL expression over `column`."""
    return f"'obligation:' || {column}"


PAYMENT_KINDS = (AccountKind.FIAT, AccountKind.TOKEN)


async def ensure_accounts(
    session: AsyncSession, participant_ids: list[uuid.UUID], currency: str, kinds: Sequence[AccountKind] = PAYMENT_KINDS
) -> None:
    """Create these accounts of these banks in this currency, if missing: by default the
    two a payment moves (every obligation asks); a redemption asks for all four."""
    rows = [{"participant_id": pid, "currency": currency, "kind": kind} for pid in participant_ids for kind in kinds]
    await session.execute(_ENSURE_ACCOUNT, rows)  # one statement, its rows sent together


# Built once, the rows bound at execution: compiled once, not keyed anew per obligation.
_ENSURE_ACCOUNT = insert(table_of(Account)).on_conflict_do_nothing()


async def account_id(session: AsyncSession, participant_id: uuid.UUID, currency: str, kind: str) -> uuid.UUID:
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
    redemption_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """Post one transfer at most once. Returns the transfer id (the earlier one when the
    key was already posted as this same transfer). Raises LedgerRefused, naming why, for
    a posting it cannot make; the caller's transaction then rolls back whole."""
    what = f"{kind} {idempotency_key}: {amount} {currency}"
    if not amount > 0:
        raise LedgerRefused(Refusal.AMOUNT_NOT_POSITIVE, what, currency=currency)
    if debit_account_id == credit_account_id:
        raise LedgerRefused(Refusal.SAME_ACCOUNT, what, currency=currency)
    with _refusing(what, currency):
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
                redemption_id=redemption_id,
            )
            .on_conflict_do_nothing(index_elements=[LedgerTransfer.idempotency_key])
            .returning(LedgerTransfer.id)
        )
        transfer_id = inserted.scalar_one_or_none()
        if transfer_id is None:
            return await _posted_before(
                session, idempotency_key, (debit_account_id, credit_account_id, amount, currency, kind), what
            )
        # Update in a fixed (id) order so concurrent transfers never deadlock.
        for acct_id, column in sorted([(debit_account_id, "debits_posted"), (credit_account_id, "credits_posted")]):
            account_currency = await session.scalar(
                update(Account)
                .where(Account.id == acct_id)
                .values({column: getattr(Account, column) + amount})
                .returning(Account.currency)
            )
            if account_currency != currency:
                raise LedgerRefused(
                    Refusal.CURRENCY_MISMATCH, f"{what}: account {acct_id} is in {account_currency}", currency=currency
                )
    return transfer_id


async def book_and_move(
    session: AsyncSession,
    *,
    notification_id: uuid.UUID,
    obligation_id: uuid.UUID,
    payer_fiat: uuid.UUID,
    payer_token: uuid.UUID,
    payee_token: uuid.UUID,
    amount: Decimal,
    currency: str,
) -> uuid.UUID:
    """A gross settlement's two postings: the payer's booked fiat onto its token account
    (once per camt.054 entry), then the obligation's move to the payee (once per
    obligation). Returns the move's transfer id, which backs the obligation's token."""
    await post_transfer(
        session,
        idempotency_key=fiat_booked_key(notification_id),
        debit_account_id=payer_fiat,
        credit_account_id=payer_token,
        amount=amount,
        currency=currency,
        kind=FIAT_BOOKED,
        notification_id=notification_id,
    )
    return await post_transfer(
        session,
        idempotency_key=obligation_key(obligation_id),
        debit_account_id=payer_token,
        credit_account_id=payee_token,
        amount=amount,
        currency=currency,
        kind=OBLIGATION,
        obligation_id=obligation_id,
    )


async def _posted_before(session: AsyncSession, key: str, transfer: tuple[object, ...], what: str) -> uuid.UUID:
    """The transfer posted earlier under this key, if it is this same transfer."""
    row = (
        await session.execute(
            select(
                LedgerTransfer.id,
                LedgerTransfer.debit_account_id,
                LedgerTransfer.credit_account_id,
                LedgerTransfer.amount,
                LedgerTransfer.currency,
                LedgerTransfer.kind,
            ).where(LedgerTransfer.idempotency_key == key)
        )
    ).one()
    if tuple(row[1:]) != transfer:
        raise LedgerRefused(
            Refusal.KEY_REUSED,
            f"{what}: the key was posted as {row.amount} {row.currency}"
            f" {row.debit_account_id} → {row.credit_account_id}",
            currency=row.currency,
        )
    return row.id


async def balance(session: AsyncSession, account: uuid.UUID) -> Decimal:
    row = (
        await session.execute(
            select(Account.kind, Account.debits_posted, Account.credits_posted).where(Account.id == account)
        )
    ).one()
    if row.kind in CREDIT_NORMAL_KINDS:
        return row.credits_posted - row.debits_posted
    return row.debits_posted - row.credits_posted


# -- many postings at once -----------------------------------------------------------------

# A window's obligations, each token[payer] → token[payee] once (its key), and every
# account's balance updated once from the sum; a cross-currency leg's into escrow[payee]
# instead, until its other leg settles (deltran/fx_settlement.py). The caller has locked
# the currency's accounts (`lock_currency_accounts`).
_WINDOW_TRANSFERS = text(
    f"""
    WITH moved AS (
        INSERT INTO ledger_transfers
            (id, idempotency_key, debit_account_id, credit_account_id, amount, currency, kind, obligation_id)
        SELECT gen_random_uuid(), {obligation_key_sql("o.id")}, pa.id, pe.id, o.amount, o.currency, '{OBLIGATION}', o.id
        FROM obligations o
        JOIN accounts pa ON pa.participant_id = o.payer_id AND pa.currency = o.currency AND pa.kind = 'token'
        JOIN accounts pe ON pe.participant_id = o.payee_id AND pe.currency = o.currency
         AND pe.kind = CASE WHEN o.escrowed THEN 'escrow' ELSE 'token' END
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
    with _refusing(f"window {window_id}"):
        await session.execute(_WINDOW_TRANSFERS, {"w": window_id})


async def apply_legs(
    session: AsyncSession, ids: list[uuid.UUID], debits: list[Decimal], credits: list[Decimal]
) -> None:
    """Add a batch's per-account sums (its postings already inserted) to the balances.
    The rows are locked first, in id order, and only now — after the inserts — so
    concurrent batches hold the shared accounts briefly. `LOCK_ACCOUNTS` is looked up
    at call time (tests inject a statement there)."""
    await session.execute(LOCK_ACCOUNTS, {"ids": ids})
    with _refusing(f"a batch over {len(ids)} accounts"):
        await session.execute(_APPLY_LEGS, {"ids": ids, "debits": debits, "credits": credits})


# -- the backing rule ------------------------------------------------------------------------

# Supply: the tokens banks hold, spendable or reserved for a payout. Backing: the fiat
# booked on DelTran's settlement account less what was paid out of it.
SUPPLY_SQL = f"coalesce(sum(credits_posted - debits_posted) FILTER (WHERE {sql_in('kind', SUPPLY_KINDS)}), 0)"
BACKING_SQL = (
    "coalesce(sum(debits_posted - credits_posted) FILTER (WHERE kind = 'fiat'), 0)"
    " - coalesce(sum(credits_posted - debits_posted) FILTER (WHERE kind = 'paid_out'), 0)"
)
_SUPPLY_AND_FIAT = text(
    f"""
    SELECT currency, {SUPPLY_SQL} AS supply, {BACKING_SQL} AS fiat
    FROM accounts WHERE currency = ANY(CAST(:currencies AS varchar[])) GROUP BY currency
    """
)


async def backing_problems(session: AsyncSession, currencies: list[str]) -> dict[str, str]:
    """Per currency whose token supply exceeds its booked fiat, the problem. Every mint
    path checks this inside its transaction (tier a of the account monitor)."""
    rows = (await session.execute(_SUPPLY_AND_FIAT, {"currencies": currencies})).all()
    return {
        r.currency: f"{r.currency} token supply {r.supply} exceeds booked fiat {r.fiat}"
        for r in rows
        if r.supply > r.fiat
    }


async def check_backing(session: AsyncSession, currencies: list[str]) -> None:
    """Raise LedgerRefused(SUPPLY_EXCEEDS_FIAT) for the first currency (by code) whose
    supply exceeds its booked fiat. `backing_problems` is looked up at call time."""
    if problems := await backing_problems(session, currencies):
        currency = min(problems)
        raise LedgerRefused(Refusal.SUPPLY_EXCEEDS_FIAT, problems[currency], currency=currency)
