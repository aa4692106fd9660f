"""Events: what each bank is told about its payments and windows, the one source for its
webhook (workflows/webhooks.py delivers them) and for `GET /v1/events` (polled instead).

Writing: each `*_events` function INSERTs in the caller's transaction — the transaction
of the change the event reports — so an event commits or rolls back with its change
(the transactional outbox): nothing changes untold, nothing is told that did not happen.

Numbering: `number_pending()` (every 200 ms in the worker, one numberer at a time under
an advisory lock) gives committed events their `seq` in the order they were written, and
marks each to deliver (PENDING) if its bank has a webhook then, else NO_WEBHOOK (setting
a webhook takes the same lock, so an event is on one side of it). A
transaction that commits late is numbered in a later round, so a bank that has read up to
seq N never later finds an event below N, and a payment's events — each written after
the previous one committed — are numbered in their order: the feed and the deliveries
are in order per payment.

Who is told what: the debtor agent everything about its payment; the creditor agent
from `payment.awaiting_settlement` on (an incoming payment to fund or expect), never a
screening outcome — a rejection tells the sender only, as AML rules against tipping off
require — and `payment.credited` where the debtor agent gets `payment.completed`. A
cross-currency payment's FX provider is told from `payment.awaiting_settlement` on too,
each event carrying the conversion (`fx`): the leg it books (gross) or funds (net), then
whether both legs were paid (`payment.settled`) or none (expired, cancelled).
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from deltran.money import MINOR_UNITS
from deltran.vocabulary import DeliveryStatus, EventType

NUMBERER_LOCK_KEY = 0x4465_6C74_4576  # "DeltEv": pg_try_advisory_xact_lock key of the numberer

_DEBTOR, _CREDITOR, _FX_PROVIDER = "debtor_agent_bic", "creditor_agent_bic", "fx_provider_bic"
# A cross-currency payment's FX provider is told as its creditor agent is (its legs exist:
# the one to book or fund, then paid, expired or cancelled); a payment in one currency
# has none.
PAYMENT_RECIPIENTS: dict[EventType, tuple[str, ...]] = {
    EventType.PAYMENT_ACCEPTED: (_DEBTOR,),
    EventType.PAYMENT_REJECTED: (_DEBTOR,),
    EventType.PAYMENT_AWAITING_SETTLEMENT: (_DEBTOR, _CREDITOR, _FX_PROVIDER),
    EventType.PAYMENT_SETTLED: (_DEBTOR, _CREDITOR, _FX_PROVIDER),
    EventType.PAYMENT_COMPLETED: (_DEBTOR,),
    EventType.PAYMENT_CREDITED: (_CREDITOR,),
    EventType.PAYMENT_EXPIRED: (_DEBTOR, _CREDITOR, _FX_PROVIDER),
    # The creditor agent only if it was told of the payment (cancelled after screening).
    EventType.PAYMENT_CANCELLED: (_DEBTOR, _CREDITOR, _FX_PROVIDER),
}
# The provider's BIC, for the provider's rows only (NULL, so no row, for a payment in one currency).
_PROVIDER_OF = """(SELECT fxp.bic FROM fx_quotes q JOIN participants fxp ON fxp.id = q.provider_id
                    WHERE q.payment_id = pay.id)"""


def _amount(row: str, amount: str = "amount", currency: str = "currency") -> str:
    """`row`'s amount as the API writes it: exactly its currency's minor units."""
    units = " ".join(f"WHEN '{ccy}' THEN {n}" for ccy, n in sorted(MINOR_UNITS.items()))
    return f"round({row}.{amount}, CASE {row}.{currency} {units} ELSE 2 END)::text"


_AMOUNT = _amount("pay")
# A cross-currency payment's conversion (null otherwise): the creditor agent is credited
# the target side. One lookup by fx_quotes' unique payment_id.
_FX_DATA = f"""(SELECT jsonb_build_object(
        'quote_id', q.id, 'rate', trim_scale(q.rate)::text, 'provider_bic', fxp.bic,
        'target_amount', {_amount("q", "target_amount", "target_currency")}, 'target_currency', q.target_currency)
    FROM fx_quotes q JOIN participants fxp ON fxp.id = q.provider_id
    WHERE q.payment_id = pay.id)"""
# The payment as its events carry it: what a bank needs to act without another call.
_PAYMENT_DATA = f"""jsonb_build_object(
    'payment_id', pay.id, 'end_to_end_id', pay.end_to_end_id, 'uetr', pay.uetr, 'status', pay.status,
    'amount', {_AMOUNT}, 'currency', pay.currency, 'debtor_agent_bic', pay.debtor_agent_bic,
    'creditor_agent_bic', pay.creditor_agent_bic, 'rejection_code', pay.rejection_code,
    'rejection_reason', pay.rejection_reason, 'fx', {_FX_DATA})"""


def refund_data(refunds: str) -> str:
    """A refund as its events carry it, from a row of `refunds` (a table or a CTE)."""
    return f"""jsonb_build_object(
        'refund_reference', {refunds}.reference, 'status', {refunds}.status, 'amount', {_amount(refunds)},
        'currency', {refunds}.currency, 'reason', {refunds}.reason, 'entry_id', {refunds}.entry_id)"""


_REFUND_COMPLETED = text(
    f"""
    INSERT INTO events (participant_id, type, data)
    SELECT r.participant_id, '{EventType.REFUND_COMPLETED.value}',
           {refund_data("r")} || jsonb_build_object('payout_entry_id', r.notification_id)
    FROM refunds r WHERE r.id = :refund
    """
)


async def refund_completed(session: AsyncSession, refund_id: uuid.UUID) -> None:
    """Tell the bank its refund was paid (after the refund row says so, in its transaction)."""
    await session.execute(_REFUND_COMPLETED, {"refund": refund_id})


def payment_events_sql(payments: str, types: Sequence[EventType], *, debtor_only: bool = False) -> str:
    """An INSERT of the events of `types` (in this order) for every row of `payments` —
    a table expression with the payments' columns, as they stand after the change: a
    subquery, or a data-modifying CTE's RETURNING (so a batch tells of exactly the rows
    it changed)."""
    pairs = [(t, role) for t in types for role in PAYMENT_RECIPIENTS[t] if role == _DEBTOR or not debtor_only]
    told = ", ".join(f"('{t.value}', '{role}', {n})" for n, (t, role) in enumerate(pairs))
    return f"""
        INSERT INTO events (participant_id, type, payment_id, data)
        SELECT bank.id, e.type, pay.id, {_PAYMENT_DATA}
        FROM {payments} AS pay
        CROSS JOIN (VALUES {told}) AS e(type, role, ord)
        JOIN participants bank
          ON bank.bic = CASE e.role WHEN '{_DEBTOR}' THEN pay.debtor_agent_bic
                                    WHEN '{_CREDITOR}' THEN pay.creditor_agent_bic
                                    ELSE {_PROVIDER_OF} END
        ORDER BY pay.id, e.ord
    """


@functools.cache
def _payment_events(types: tuple[EventType, ...], debtor_only: bool):
    return text(
        payment_events_sql(
            "(SELECT * FROM payments WHERE id = ANY(CAST(:payments AS uuid[])))", types, debtor_only=debtor_only
        )
    )


async def payment_events(
    session: AsyncSession, payment_ids: Sequence[uuid.UUID], *types: EventType, debtor_only: bool = False
) -> None:
    """Tell each payment's banks of `types`, as PAYMENT_RECIPIENTS says (its debtor agent
    only, with `debtor_only`: a payment its creditor agent never heard of), with the
    payment as it stands in this transaction: call it after the change, and only when the
    change happened (a retried step that changes nothing tells nothing)."""
    if payment_ids:
        await session.execute(_payment_events(types, debtor_only), {"payments": list(payment_ids)})


async def bank_event(session: AsyncSession, participant_id: uuid.UUID, type_: EventType, data: dict) -> None:
    """Tell one bank of something that is not a payment's (a funding instruction, a
    settled window); `data` must be JSON (amounts as text)."""
    await session.execute(
        text("INSERT INTO events (participant_id, type, data) VALUES (:p, :t, CAST(:d AS jsonb))"),
        {"p": participant_id, "t": type_.value, "d": json.dumps(data, separators=(",", ":"), default=str)},
    )


_WINDOW_SETTLED = text(
    f"""
    INSERT INTO events (participant_id, type, data)
    SELECT bank.participant_id, '{EventType.WINDOW_SETTLED.value}', jsonb_build_object(
               'window_id', w.id, 'currency', w.currency, 'status', w.status,
               'settlement_reference', w.settlement_reference, 'settled_at', w.settled_at,
               'fallback_method', w.fallback_method)
    FROM clearing_windows w
    JOIN (SELECT payer_id AS participant_id FROM obligations WHERE clearing_window_id = :w AND status <> 'RELEASED'
          UNION SELECT payee_id FROM obligations WHERE clearing_window_id = :w AND status <> 'RELEASED'
          UNION SELECT participant_id FROM funding_instructions WHERE window_id = :w) AS bank ON true
    WHERE w.id = :w
    ORDER BY bank.participant_id
    """
)


async def window_settled_events(session: AsyncSession, window_id: uuid.UUID) -> None:
    """Tell every bank with an obligation settled by the window (those rolled on are in
    the next one by now) or a funding instruction in it that it settled (call it in the
    settling transaction, once)."""
    await session.execute(_WINDOW_SETTLED, {"w": window_id})


# -- numbering ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Numbered:
    count: int
    last_seq: int
    to_deliver: frozenset[uuid.UUID]  # the banks with a webhook that have new events


async def number_pending(sessions: async_sessionmaker, batch_size: int = 5000) -> Numbered | None:
    """Number committed events in the order they were written; None when another
    numberer holds the lock. One transaction: the numbers and the rows they number."""
    async with sessions() as session, session.begin():
        if not await session.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": NUMBERER_LOCK_KEY}):
            return None
        # READ COMMITTED: each statement sees the previous numberer's commit.
        head = await session.scalar(text("SELECT coalesce(max(seq), 0) FROM events"))
        rows = (
            await session.execute(
                text(
                    """
                    WITH batch AS (
                        SELECT id, row_number() OVER (ORDER BY written) AS n
                        FROM (SELECT id, written FROM events WHERE seq IS NULL ORDER BY written LIMIT :n) AS w
                    )
                    UPDATE events e SET seq = :head + batch.n, delivery_status = CASE
                        WHEN EXISTS (SELECT 1 FROM webhooks h WHERE h.participant_id = e.participant_id)
                        THEN 'PENDING' ELSE 'NO_WEBHOOK' END
                    FROM batch WHERE e.id = batch.id AND e.seq IS NULL
                    RETURNING e.seq, e.participant_id, e.delivery_status
                    """
                ),
                {"n": batch_size, "head": head},
            )
        ).all()
        if not rows:
            return Numbered(0, head, frozenset())
        due = frozenset(r.participant_id for r in rows if r.delivery_status == DeliveryStatus.PENDING)
        return Numbered(len(rows), max(r.seq for r in rows), due)


# -- reading -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    id: uuid.UUID
    seq: int
    type: str
    created_at: datetime
    data: dict


_FEED = """
    SELECT id, seq, type, created_at, data FROM events
    WHERE seq > :after {bank} ORDER BY seq LIMIT :limit
"""
_BANK_FEED = text(_FEED.format(bank="AND participant_id = :p"))
_WHOLE_FEED = text(_FEED.format(bank=""))


async def feed(session: AsyncSession, participant_id: uuid.UUID | None, after_seq: int, limit: int) -> list[Event]:
    """Numbered events after `after_seq`, oldest first: one bank's, or every bank's (None)."""
    if participant_id is None:
        rows = await session.execute(_WHOLE_FEED, {"after": after_seq, "limit": limit})
    else:
        rows = await session.execute(_BANK_FEED, {"after": after_seq, "p": participant_id, "limit": limit})
    return [Event(r.id, r.seq, r.type, r.created_at, r.data) for r in rows]
