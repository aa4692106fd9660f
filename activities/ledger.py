"""The double-entry token ledger (MISSION.md, "Tokens and 1:1 backing").

Per bank and currency there is a `fiat` account (fiat the bank booked on DelTran's
settlement account; debit-normal) and a `token` account (the bank's tokens;
credit-normal). Booking fiat for bank B debits fiat[B] and credits token[B]: supply and
backing grow together. A settled obligation debits token[payer] and credits
token[payee]. Both accounts' CHECK constraints refuse any posting that would take a
balance below zero, so token supply never exceeds booked fiat.
"""
from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from deltran.db.tables import Account, LedgerTransfer


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
