"""Refunds: fiat booked on DelTran's settlement account that can no longer settle
anything goes back to the bank that sent it.

A booked camt.054 CRDT entry is stranded when it names a payment that ended without
settling (rejected, expired, cancelled: the entry is PAYMENT_NOT_AWAITING) or one that
another entry already funded (a second booking), when its amount or currency is not the
payment's (AMOUNT_MISMATCH: nothing ever re-matches it), or when it funds a window's
instruction too late (after the cut-off, or a second booking) or too little. Each
becomes one refund to the bank that owes that payment or funding — the payment's debtor
agent, the instruction's funder (`instruct_stranded`, run by the worker's sweeper:
idempotent, so an entry stranded by any path — the intake, an expiry, a recall — is
refunded once). A window funding that matched is minted only as far as the window's
settlement takes it; the rest (over-funding, or funding a fallback did not use) is
refunded by that settlement, in its transaction (`instruct_excess`). Each refund is
listed for the settlement agent (GET /v1/payouts, kind refund) until its DBIT camt.054,
EndToEndId the refund's reference, books it (`store_refund_payout`, in the intake, under
the refund's lock). The refunded fiat was never minted: a refund moves no
tokens and leaves supply and backing as they are.

A credit that matched nothing (UNMATCHED, AMBIGUOUS) is refunded too, once it has waited
`unmatched_refund_after_s` (a payment sent late may be matched by hand first), to the
bank the settlement agent named as its debtor agent (TxDtls/RltdAgts/DbtrAgt).

Not refunded here, left to ops (the end-of-day run lists them): a credit that matched
nothing and names no participant as its debtor agent; a credit of another amount than its
payment's that names neither the payment's UETR nor its debtor agent (matched by an
EndToEndId alone, it may be another bank's); fiat of a payment still being screened, or
rejected by sanctions screening (RR04) or because its bank is suspended (AG01), which is
frozen, not returned, until compliance decides; a debtor agent or funder no longer
ACTIVE; and an entry the settlement agent has reversed (a reversal with its EndToEndId
and amount).
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from deltran import events
from deltran.db.tables import BankNotification, Refund
from deltran.domain.settlement import REFUND_REFERENCE_PREFIX
from deltran.errors import Conflict, NotFound
from deltran.observability import metrics
from deltran.reason_codes import ReasonCode
from deltran.vocabulary import EntryOutcome, EventType, ParticipantStatus, PaymentStatus, RefundStatus

# Rejections whose fiat is frozen for compliance, not paid back: a sanctions hit, a
# suspended bank.
FROZEN_REJECTIONS = (ReasonCode.REGULATORY_REASON.value, ReasonCode.TRANSACTION_FORBIDDEN.value)

# The payment `p` was rejected for a sanctions hit or a suspended bank: its fiat is frozen.
_FROZEN = f"coalesce(p.status = '{PaymentStatus.REJECTED.value}' AND p.rejection_code IN {FROZEN_REJECTIONS}, false)"
# The settlement agent reversed the entry `n`: a reversal with its account, EndToEndId,
# amount and currency.
REVERSED = """EXISTS (
              SELECT 1 FROM bank_notifications rv
              WHERE rv.reversal AND rv.account = n.account AND rv.end_to_end_id IS NOT DISTINCT FROM n.end_to_end_id
                AND rv.amount = n.amount AND rv.currency = n.currency
          )"""
_NOT_REVERSED = f"NOT {REVERSED}"
# Each refund made, and the bank it is owed to told (refund.instructed) in the same statement.
_INSERT = f"""
    , made AS (
        INSERT INTO refunds (id, entry_id, participant_id, reference, currency, amount, status, reason)
        SELECT id, entry_id, participant_id,
               '{REFUND_REFERENCE_PREFIX}' || upper(left(replace(id::text, '-', ''), 28)),
               currency, amount, '{RefundStatus.PAYOUT_INSTRUCTED.value}', reason
        FROM stranded
        ON CONFLICT (entry_id) DO NOTHING
        RETURNING *
    ), marked AS (
        UPDATE bank_notifications SET refunded_at = now() FROM made WHERE bank_notifications.id = made.entry_id
    )
    INSERT INTO events (participant_id, type, data)
    SELECT participant_id, '{EventType.REFUND_INSTRUCTED.value}', {events.refund_data("made")}
    FROM made ORDER BY reference
    RETURNING data->>'currency'
"""
# Entries that name a payment or a window funding they can no longer pay: back to the
# payment's debtor agent, or the instruction's funder.
_STRANDED_OUTCOMES = (EntryOutcome.PAYMENT_NOT_AWAITING.value, EntryOutcome.AMOUNT_MISMATCH.value)
_STRANDED = f"""n.outcome IN {_STRANDED_OUTCOMES} AND n.refunded_at IS NULL AND n.credit_debit = 'CRDT'
          AND n.entry_status = 'BOOK' AND NOT n.reversal AND n.amount > 0
          AND NOT EXISTS (SELECT 1 FROM refunds r WHERE r.entry_id = n.id)
          AND bank.status = '{ParticipantStatus.ACTIVE.value}'
          AND {_NOT_REVERSED}"""
_INSTRUCT = text(
    f"""
    WITH stranded AS (
        (SELECT gen_random_uuid() AS id, n.id AS entry_id, bank.id AS participant_id, n.currency, n.amount,
                'payment ' || p.id || ' is ' || p.status || coalesce(': ' || n.outcome_detail, '') AS reason
         FROM bank_notifications n
         JOIN payments p ON p.id = n.payment_id
         -- a cross-currency payment's target-currency booking is its FX provider's to get back
         LEFT JOIN fx_quotes q ON q.payment_id = p.id AND q.target_currency = n.currency
         JOIN participants bank ON bank.id = coalesce(
             q.provider_id, (SELECT id FROM participants WHERE bic = p.debtor_agent_bic))
         WHERE {_STRANDED}
           -- screening may yet freeze it
           AND p.status <> '{PaymentStatus.SCREENING.value}'
           AND NOT {_FROZEN}
           -- another amount is a sign of a wrong match (an EndToEndId is only unique per
           -- bank): refunded only when its UETR or its debtor agent says whose it is
           AND (n.outcome <> '{EntryOutcome.AMOUNT_MISMATCH.value}'
                OR lower(n.uetr) = p.uetr::text OR n.debtor_agent_bic = bank.bic)
         ORDER BY n.received_at, n.id
         LIMIT :n)
        UNION ALL
        (SELECT gen_random_uuid(), n.id, bank.id, n.currency, n.amount,
                'funding instruction ' || f.reference || ' is ' || f.status
                || coalesce(': ' || n.outcome_detail, '')
         FROM bank_notifications n
         JOIN funding_instructions f ON f.id = n.funding_instruction_id
         JOIN participants bank ON bank.id = f.participant_id
         WHERE {_STRANDED}
         ORDER BY n.received_at, n.id
         LIMIT :n)
    )
    {_INSERT}
    """
)
# Credits that matched nothing for long enough: back to the debtor agent the agent named.
_INSTRUCT_UNMATCHED = text(
    f"""
    WITH stranded AS (
        SELECT gen_random_uuid() AS id, n.id AS entry_id, bank.id AS participant_id, n.currency, n.amount,
               n.outcome || ' for ' || make_interval(secs => :after_s)
               || coalesce(': ' || n.outcome_detail, '') AS reason
        FROM bank_notifications n
        JOIN participants bank ON bank.bic = n.debtor_agent_bic
        WHERE n.outcome IN ('{EntryOutcome.UNMATCHED.value}', '{EntryOutcome.AMBIGUOUS.value}')
          AND n.refunded_at IS NULL
          AND n.credit_debit = 'CRDT' AND n.entry_status = 'BOOK' AND NOT n.reversal AND n.amount > 0
          AND n.received_at < now() - make_interval(secs => :after_s)
          AND NOT EXISTS (SELECT 1 FROM refunds r WHERE r.entry_id = n.id)
          AND bank.status = '{ParticipantStatus.ACTIVE.value}'
          AND {_NOT_REVERSED}
        ORDER BY n.received_at, n.id
        LIMIT :n
    )
    {_INSERT}
    """
)


# Held, like the sweeper's, for a funder no longer ACTIVE or an entry the agent reversed
# (the end-of-day run lists the funding as `window_funding_not_accounted`).
_INSTRUCT_EXCESS = text(
    f"""
    WITH stranded AS (
        SELECT gen_random_uuid() AS id, n.id AS entry_id, bank.id AS participant_id, n.currency,
               CAST(:amount AS numeric) AS amount, CAST(:reason AS text) AS reason
        FROM bank_notifications n JOIN participants bank ON bank.id = :participant
        WHERE n.id = :entry AND bank.status = '{ParticipantStatus.ACTIVE.value}' AND {_NOT_REVERSED}
    )
    {_INSERT}
    """
)


async def instruct_excess(
    session: AsyncSession,
    *,
    entry_id: uuid.UUID,
    participant_id: uuid.UUID,
    currency: str,
    amount: Decimal,
    reason: str,
) -> None:
    """Refund the part of a matched window funding its settlement did not take (once per
    entry: a settlement run again instructs nothing new). `currency` is the entry's."""
    params = dict(entry=entry_id, participant=participant_id, amount=amount, reason=reason)
    if (await session.execute(_INSTRUCT_EXCESS, params)).first():
        metrics.refunds.labels(currency, RefundStatus.PAYOUT_INSTRUCTED.value).inc()


_HOLD = text(
    f"""
    UPDATE refunds SET status = '{RefundStatus.HELD.value}', held_reason = :reason, updated_at = now()
    WHERE reference = :reference AND status = '{RefundStatus.PAYOUT_INSTRUCTED.value}'
    RETURNING id
    """
)
_RELEASE = text(
    f"""
    UPDATE refunds SET status = '{RefundStatus.PAYOUT_INSTRUCTED.value}', held_reason = NULL,
                       instructed_at = now(), updated_at = now()
    WHERE reference = :reference AND status = '{RefundStatus.HELD.value}'
    RETURNING id
    """
)


async def hold(session: AsyncSession, reference: str, reason: str) -> Refund:
    """Take a refund off the settlement agent's list (compliance or ops): until released
    it is not to be paid, and a DBIT that books it anyway is an exception to reverse.
    Holding a held refund again changes nothing (its first reason stays)."""
    held = (await session.execute(_HOLD, {"reference": reference, "reason": reason})).first() is not None
    refund = await _refund(session, reference)
    if held:
        metrics.refunds.labels(refund.currency, RefundStatus.HELD.value).inc()
    elif refund.status != RefundStatus.HELD:
        raise Conflict(
            f"refund {reference} is {refund.status}: only one still to be paid is held", kind="refund-already-paid"
        )
    return refund


async def release(session: AsyncSession, reference: str) -> Refund:
    """Put a held refund back on the settlement agent's list; its payout deadline starts
    again. Releasing one already listed changes nothing. One the agent paid while it was
    held (its DBIT stored as an exception) is not released: it would be paid twice."""
    refund = await _refund(session, reference)
    paid = await session.scalar(
        select(BankNotification.id).where(
            BankNotification.refund_id == refund.id,
            BankNotification.credit_debit == "DBIT",
            BankNotification.entry_status == "BOOK",
            BankNotification.reversal.is_(False),
        )
    )
    if paid is not None and refund.status == RefundStatus.HELD:
        raise Conflict(
            f"refund {reference} was paid out while held (entry {paid}): have the agent reverse that payout,"
            " or record the refund as returned",
            kind="refund-already-paid",
        )
    if (await session.execute(_RELEASE, {"reference": reference})).first() is not None:
        refund = await _refund(session, reference)
        metrics.refunds.labels(refund.currency, RefundStatus.PAYOUT_INSTRUCTED.value).inc()  # listed again
    elif refund.status != RefundStatus.PAYOUT_INSTRUCTED:
        raise Conflict(f"refund {reference} is {refund.status}: only a held refund is released", kind="refund-not-held")
    return refund


async def _refund(session: AsyncSession, reference: str) -> Refund:
    refund = await session.scalar(
        select(Refund).where(Refund.reference == reference).execution_options(populate_existing=True)
    )
    if refund is None:
        raise NotFound(f"no refund {reference}", kind="refund-not-found")
    return refund


async def instruct_stranded(session: AsyncSession, unmatched_after_s: float, batch: int = 500) -> int:
    """Instruct a refund for each stranded entry without one (at most `batch` of each
    kind); how many."""
    made = [
        *(await session.execute(_INSTRUCT, {"n": batch})).all(),
        *(await session.execute(_INSTRUCT_UNMATCHED, {"n": batch, "after_s": unmatched_after_s})).all(),
    ]
    for (currency,) in made:  # counted before the commit: a rolled-back round over-counts, never under
        metrics.refunds.labels(currency, RefundStatus.PAYOUT_INSTRUCTED.value).inc()
    return len(made)
