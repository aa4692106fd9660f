"""What a bank holds on DelTran and how it moved: its balances per currency and the
statement of its token account over a period, read from the ledger (deltran/ledger.py
writes it; nothing here does).

A posting's time is its transaction's start (`now()`), and a transaction commits later:
a statement read up to "now" could miss a posting still being written, and the next
statement — starting where this one ended — would miss it too, being timed before it. So
a period ends no later than the start of the oldest transaction still open
(`complete_until`): every posting before that is committed, and the ledger is
append-only, so a period once answered never changes, and its pages can be read one
request at a time.

Each page is read in one REPEATABLE READ snapshot: the closing balance is the account's
balance in the snapshot less every posting from the period's end on, the opening is the
closing less the period's postings — opening + postings = closing by construction, and
both are what the ledger held at those instants. Postings are in their account's order
(`PostingKey`).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from deltran.domain.statements import Balance, Posting, PostingKey, Statement
from deltran.ledger import escrow_release_key_sql, obligation_key_sql
from deltran.vocabulary import AccountKind, TransferKind

MAX_PAGE = 5_000
# A transaction's start is set a moment before pg_stat_activity shows it: keep clear of
# that moment by far more than it can last.
HORIZON_MARGIN = timedelta(seconds=1)
READ_TIMEOUT_MS = 5_000  # a statement reaching back over years of postings gives up, not the database
_QUERY_CANCELED = "57014"


class TooFarBack(Exception):
    """The period's balances could not be worked out in READ_TIMEOUT_MS."""


_BALANCES = text(
    """
    SELECT a.currency,
           coalesce(sum(a.debits_posted - a.credits_posted) FILTER (WHERE a.kind = 'fiat'), 0) AS fiat,
           coalesce(sum(a.credits_posted - a.debits_posted) FILTER (WHERE a.kind = 'token'), 0) AS tokens,
           coalesce(sum(a.credits_posted - a.debits_posted) FILTER (WHERE a.kind = 'reserved'), 0) AS reserved,
           coalesce(sum(a.credits_posted - a.debits_posted) FILTER (WHERE a.kind = 'escrow'), 0) AS escrow,
           coalesce(sum(a.credits_posted - a.debits_posted) FILTER (WHERE a.kind = 'paid_out'), 0) AS paid_out
    FROM accounts a JOIN participants p ON p.id = a.participant_id
    WHERE p.bic = :bic
    GROUP BY a.currency
    ORDER BY a.currency
    """
)

# The start of the oldest transaction of any other client (an idle pool connection has
# none), read before the snapshot: whatever committed since is in it, whatever had not
# started has a later time.
_HORIZON = text(
    """
    SELECT least(now(), min(xact_start)) AS horizon
    FROM pg_stat_activity
    WHERE backend_type = 'client backend' AND datname = current_database()
      AND pid <> pg_backend_pid() AND xact_start IS NOT NULL
    """
)

_ACCOUNT = text(
    """
    SELECT a.id, a.credits_posted - a.debits_posted AS balance, now() AS read_at
    FROM accounts a JOIN participants p ON p.id = a.participant_id
    WHERE p.bic = :bic AND a.currency = :currency AND a.kind = :token
    """
)

# The account's postings from the period's start on, signed from its side: those from
# the end on (to roll its balance back), those of the period, and those of the period
# before the page (when there is a previous page).
_SUMS = text(
    """
    SELECT coalesce(sum(signed) FILTER (WHERE created_at >= :end), 0) AS after_end,
           coalesce(sum(signed) FILTER (WHERE created_at < :end), 0) AS in_period,
           coalesce(sum(signed) FILTER (
               WHERE created_at < :end
                 AND (created_at, debit, id) <= (CAST(:at AS timestamptz), CAST(:debit AS boolean), CAST(:id AS uuid))
           ), 0) AS before_page
    FROM (SELECT created_at, id, credit_account_id <> :account AS debit,
                 CASE WHEN credit_account_id = :account THEN amount ELSE -amount END AS signed
          FROM ledger_transfers
          WHERE (debit_account_id = :account OR credit_account_id = :account) AND created_at >= :start) AS t
    """
)

_PAGE = text(
    """
    SELECT t.id, t.created_at, t.credit_account_id = :account AS credit, t.amount, t.kind,
           t.obligation_id, pay.id AS payment_id, coalesce(pay.end_to_end_id, r.reference) AS end_to_end_id,
           pay.uetr, other.bic AS counterparty_bic, t.notification_id, n.entry_reference, n.bank_reference
    FROM ledger_transfers t
    LEFT JOIN redemptions r ON r.id = t.redemption_id
    LEFT JOIN obligations o ON o.id = t.obligation_id
    LEFT JOIN payments pay ON pay.id = o.payment_id
    LEFT JOIN participants other
           -- An obligation's transfer (and its escrow's release) flows payer → payee; a
           -- return's, and an unwound escrow's, payee → payer.
           ON other.id = CASE WHEN (t.credit_account_id = :account) = (t.kind NOT IN ('returned', 'escrow_unwound'))
                              THEN o.payer_id ELSE o.payee_id END
    LEFT JOIN bank_notifications n ON n.id = t.notification_id
    WHERE (t.debit_account_id = :account OR t.credit_account_id = :account)
      AND t.created_at >= :start AND t.created_at < :end
      AND (CAST(:at AS timestamptz) IS NULL
           OR (t.created_at, t.credit_account_id <> :account, t.id)
              > (CAST(:at AS timestamptz), CAST(:debit AS boolean), CAST(:id AS uuid)))
    ORDER BY t.created_at, t.credit_account_id <> :account, t.id
    LIMIT :limit
    """
)


# A payment's posting on one of its banks' token accounts: its obligation's transfer,
# found by the transfer's idempotency key (unique), seen from that bank's side — or, for
# a cross-currency leg settled net, its escrow's release to the payee.
_PAYMENT_POSTING = text(
    f"""
    SELECT t.id, t.created_at, t.credit_account_id = a.id AS credit, t.amount, t.kind, t.obligation_id,
           pay.id AS payment_id, pay.end_to_end_id, pay.uetr, other.bic AS counterparty_bic,
           t.notification_id, NULL AS entry_reference, NULL AS bank_reference
    FROM obligations o
    JOIN payments pay ON pay.id = o.payment_id
    JOIN ledger_transfers t ON t.idempotency_key IN ({obligation_key_sql("o.id")}, {escrow_release_key_sql("o.id")})
    JOIN accounts a ON a.id IN (t.debit_account_id, t.credit_account_id) AND a.kind = :token
    JOIN participants me ON me.id = a.participant_id AND me.bic = :bic
    JOIN participants other ON other.id = CASE WHEN t.credit_account_id = a.id THEN o.payer_id ELSE o.payee_id END
    WHERE o.payment_id = :payment
    """
)


async def payment_posting(session: AsyncSession, payment_id: uuid.UUID, bic: str) -> Posting | None:
    """The posting that moved the payment's tokens, on `bic`'s token account: a credit for
    its creditor agent, a debit for its debtor agent; None until its obligation settles."""
    row = (
        await session.execute(_PAYMENT_POSTING, {"payment": payment_id, "bic": bic, "token": AccountKind.TOKEN})
    ).one_or_none()
    return None if row is None else _posting(row)


async def balances(session: AsyncSession, bic: str) -> list[Balance]:
    """Per currency the bank holds an account in: booked fiat, tokens, reserved, in escrow, paid out."""
    rows = await session.execute(_BALANCES, {"bic": bic})
    return [Balance(r.currency, r.fiat, r.tokens, r.reserved, r.paid_out, r.escrow) for r in rows]


async def complete_until(sessions: async_sessionmaker) -> datetime:
    """The time before which every posting is committed (see the module's docstring)."""
    async with sessions() as session:
        horizon = await session.scalar(_HORIZON)
        await session.rollback()
    return horizon - HORIZON_MARGIN


async def statement(
    sessions: async_sessionmaker,
    bic: str,
    currency: str,
    start: datetime,
    end: datetime,
    *,
    after: PostingKey | None = None,
    page: int = 1,
    limit: int = MAX_PAGE,
) -> Statement:
    """A page of the bank's token account in `currency` over [start, end): at most
    `limit` postings after `after`. `end` must be no later than `complete_until()`. A
    bank without an account in the currency has an empty statement at zero."""
    async with sessions() as session:
        # One snapshot for the balance and the postings (the transaction begins here).
        await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        try:
            await session.execute(text(f"SET LOCAL statement_timeout = {READ_TIMEOUT_MS}"))
            account = (
                await session.execute(_ACCOUNT, {"bic": bic, "currency": currency, "token": AccountKind.TOKEN})
            ).one_or_none()
            if account is None:
                read_at = await session.scalar(text("SELECT now()"))
                zero = Decimal(0)
                return Statement(bic, currency, start, end, zero, zero, page, zero, zero, [], None, read_at)
            key = {
                "at": after.booked_at if after else None,
                "debit": after.debit if after else None,
                "id": after.id if after else None,
            }
            period = {"account": account.id, "start": start, "end": end}
            sums = (await session.execute(_SUMS, {**period, **key})).one()
            rows = (await session.execute(_PAGE, {**period, **key, "limit": limit + 1})).all()
        except DBAPIError as error:
            if getattr(error.orig, "sqlstate", None) == _QUERY_CANCELED:
                raise TooFarBack from None
            raise
        finally:
            await session.rollback()  # read only
    postings = [_posting(r) for r in rows[:limit]]
    closing = account.balance - sums.after_end
    opening = closing - sums.in_period
    page_opening = opening + sums.before_page
    page_closing = page_opening + sum((p.amount if p.credit else -p.amount for p in postings), Decimal(0))
    last = postings[-1] if len(rows) > limit else None
    following = None if last is None else PostingKey(last.booked_at, not last.credit, last.id)
    return Statement(
        bic,
        currency,
        start,
        end,
        opening,
        closing,
        page,
        page_opening,
        page_closing,
        postings,
        following,
        account.read_at,
    )


def _posting(r) -> Posting:
    return Posting(
        id=r.id,
        booked_at=r.created_at,
        credit=r.credit,
        amount=r.amount,
        kind=TransferKind(r.kind),
        obligation_id=r.obligation_id,
        payment_id=r.payment_id,
        end_to_end_id=r.end_to_end_id,
        uetr=r.uetr,
        counterparty_bic=r.counterparty_bic,
        entry_reference=r.entry_reference,
        bank_reference=r.bank_reference,
        notification_id=r.notification_id,
    )
