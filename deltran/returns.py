"""Returns: a creditor agent sends a settled payment back (pacs.004, or JSON), in whole or
in part, with an ISO return reason.

One transaction, under the payment's lock: the return's row, the ledger posting that
moves its tokens back (token[creditor agent] → token[debtor agent]: supply and backing
unchanged; a creditor agent that no longer holds them is refused, the account CHECK
keeps every balance at zero or above), the payment's status (PARTIALLY_RETURNED, or
RETURNED once all of it is back), both agents' events, and — when the creditor agent
accepts its debtor agent's recall — the recall's answer. All of a payment's returns
never exceed what was paid; the same return again (its key: the pacs.004's RtrId, an
Idempotency-Key, or the JSON request itself) moves nothing twice.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import cast

from sqlalchemy import CursorResult, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from deltran import events, ledger
from deltran.db import payment_rows
from deltran.db.tables import Cancellation, FxQuote, Obligation, Payment, PaymentReturn
from deltran.errors import Conflict, NotFound, Refused
from deltran.money import AmountError, format_amount, parse_amount
from deltran.observability import metrics
from deltran.payment_references import obligation_id_in_transaction_id
from deltran.vocabulary import (
    RETURNABLE_PAYMENT_STATUSES,
    AccountKind,
    CancellationStatus,
    EventType,
    PaymentStatus,
    ReturnReason,
    TransferKind,
)


@dataclass(frozen=True)
class NewReturn:
    payment_id: uuid.UUID
    amount: Decimal | None  # None: all that is left (an accepted recall)
    reason_code: ReturnReason
    return_key: str  # the pacs.004's RtrId, an Idempotency-Key, or fingerprint_key()
    reason: str | None = None
    message_id: str | None = None  # the pacs.004's GrpHdr/MsgId

    def same_as(self, row: PaymentReturn) -> bool:
        amount = row.amount if self.amount is None else self.amount
        return (row.payment_id, row.amount, row.reason_code) == (self.payment_id, amount, self.reason_code)


def fingerprint_key(payment_id: uuid.UUID, amount: Decimal, reason_code: str) -> str:
    """The key of a JSON return sent without an Idempotency-Key: the same request twice
    is one return (a second return of the same amount and reason needs a key)."""
    content = json.dumps([str(payment_id), str(amount.normalize()), reason_code])
    return "json:" + hashlib.sha256(content.encode()).hexdigest()[:40]


def transfer_key(bank_id: uuid.UUID, return_key: str) -> str:
    """The ledger posting's key: the return's own identity (its bank and key), so the
    ledger too refuses to post one return twice."""
    return "return:" + hashlib.sha256(f"{bank_id}:{return_key}".encode()).hexdigest()[:48]


@dataclass(frozen=True)
class Returned:
    row: PaymentReturn
    payment: Payment
    created: bool  # False: the same return again, answered as the first time


async def return_payment(
    session: AsyncSession, creditor_agent: tuple[uuid.UUID, str], new: NewReturn, *, accepting: uuid.UUID | None = None
) -> Returned:
    """Send the payment's tokens back to its debtor agent (in the caller's transaction).
    `accepting`: the recall (cancellation id) this return answers."""
    bank_id, bic = creditor_agent
    # One return key at a time per bank, whatever payment it names (the unique key would
    # otherwise answer two concurrent uses on two payments with an IntegrityError).
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": f"return:{bank_id}:{new.return_key}"}
    )
    payment = await payment_rows.lock(session, new.payment_id)
    if payment is None or payment.creditor_agent_bic != bic:
        raise NotFound(f"no payment {new.payment_id} received by {bic}", kind="payment-not-found")
    earlier = await session.scalar(
        select(PaymentReturn).where(PaymentReturn.returned_by == bank_id, PaymentReturn.return_key == new.return_key)
    )
    if earlier is not None:
        if not new.same_as(earlier):
            raise Conflict(
                f"return {new.return_key} was already made with other content (payment, amount or reason)",
                kind="conflict",
            )
        return Returned(earlier, payment, created=False)
    status = PaymentStatus(payment.status)
    if status not in RETURNABLE_PAYMENT_STATUSES:
        why = "all of it is already returned" if status == PaymentStatus.RETURNED else f"it is {status.value}"
        raise Conflict(f"payment {payment.id} cannot be returned: {why}", kind="not-returnable")
    if await session.scalar(select(FxQuote.id).where(FxQuote.payment_id == payment.id)) is not None:
        # Sending it back takes a new conversion (target → source) at a new rate: the
        # creditor agent sends a new cross-currency payment back instead.
        raise Conflict(
            f"payment {payment.id} was cross-currency: it is not returned through pacs.004;"
            " send a cross-currency payment back with a new FX quote",
            kind="not-returnable",
        )
    left = await left_to_return(session, payment)
    amount = left if new.amount is None else new.amount  # None: the rest (an accepted recall)
    try:
        parse_amount(amount, payment.currency)
    except AmountError as exc:
        raise Refused(f"the return's amount: {exc}", kind="invalid-amount") from None
    if amount > left:
        raise Refused(
            f"{format_amount(amount, payment.currency)} {payment.currency} is more than is left to return"
            f" ({format_amount(left, payment.currency)} of {format_amount(payment.amount, payment.currency)})",
            kind="return-exceeds-payment",
        )
    obligation = await session.scalar(select(Obligation).where(Obligation.payment_id == payment.id))
    assert obligation is not None  # a completed payment settled its obligation
    return_id = uuid.uuid4()
    try:
        transfer_id = await ledger.post_transfer(
            session,
            idempotency_key=transfer_key(bank_id, new.return_key),
            debit_account_id=await ledger.account_id(session, obligation.payee_id, payment.currency, AccountKind.TOKEN),
            credit_account_id=await ledger.account_id(
                session, obligation.payer_id, payment.currency, AccountKind.TOKEN
            ),
            amount=amount,
            currency=payment.currency,
            kind=TransferKind.RETURNED,
            obligation_id=obligation.id,
        )
    except ledger.LedgerRefused as refused:
        short = refused.refusal is ledger.Refusal.BALANCE_BELOW_ZERO
        raise Refused(
            f"{bic} cannot return {format_amount(amount, payment.currency)} {payment.currency}: "
            + (
                "it does not hold that many tokens (spent or reserved for a payout)" if short else refused.refusal.value
            ),
            kind="insufficient-tokens" if short else "ledger-refused",
        ) from None
    row = PaymentReturn(
        id=return_id,
        payment_id=payment.id,
        returned_by=bank_id,
        return_key=new.return_key,
        amount=amount,
        currency=payment.currency,
        reason_code=new.reason_code.value,
        reason=new.reason,
        message_id=new.message_id,
        transfer_id=transfer_id,
        created_at=func.clock_timestamp(),  # after the lock: returns of a payment in the order made
    )
    session.add(row)
    fully = amount == left
    payment.status = PaymentStatus.RETURNED if fully else PaymentStatus.PARTIALLY_RETURNED
    payment.updated_at = func.now()
    await session.flush()
    await session.refresh(row)
    await session.refresh(payment)
    if accepting is not None or fully:
        # The accepted recall; or, all of it back, a recall still pending: answered either way.
        answered = await session.execute(
            update(Cancellation)
            .where(
                Cancellation.id == accepting if accepting is not None else Cancellation.payment_id == payment.id,
                Cancellation.status == CancellationStatus.PDCR,
            )
            .values(status=CancellationStatus.CNCL, resolved_at=func.now(), return_id=return_id)
        )
        if cast(CursorResult, answered).rowcount:
            metrics.recalls.labels(CancellationStatus.CNCL.value).inc()
    data = return_data(row, payment)
    for participant_id in (obligation.payer_id, obligation.payee_id):
        await events.bank_event(session, participant_id, EventType.PAYMENT_RETURNED, data)
    # Counted before the commit: a rolled-back return counts once too many, never too few.
    metrics.returns.labels(payment.currency, new.reason_code.value).inc()
    metrics.returned_amount.labels(payment.currency).inc(float(amount))
    return Returned(row, payment, created=True)


async def left_to_return(session: AsyncSession, payment: Payment) -> Decimal:
    returned = await session.scalar(
        select(func.coalesce(func.sum(PaymentReturn.amount), 0)).where(PaymentReturn.payment_id == payment.id)
    )
    return payment.amount - (returned or Decimal(0))


def return_data(row: PaymentReturn, payment: Payment) -> dict:
    """A return as both agents see it (its event, the API)."""
    return {
        "return_id": str(row.id),
        "payment_id": str(payment.id),
        "end_to_end_id": payment.end_to_end_id,
        "uetr": str(payment.uetr) if payment.uetr else None,
        "amount": format_amount(row.amount, row.currency),
        "currency": row.currency,
        "reason_code": row.reason_code,
        "reason": row.reason,
        "payment_status": payment.status,
        "payment_amount": format_amount(payment.amount, payment.currency),
        "debtor_agent_bic": payment.debtor_agent_bic,
        "creditor_agent_bic": payment.creditor_agent_bic,
        "returned_at": row.created_at.isoformat() if row.created_at else None,
    }


async def payment_named(
    session: AsyncSession, bic: str, uetr: uuid.UUID | None, transaction_id: str | None, end_to_end_id: str | None
) -> uuid.UUID:
    """The payment a creditor agent's pacs.004 names, in the references DelTran forwarded
    it with: the UETR (the payment's own, or the one derived for it), the TxId (its
    obligation), or the EndToEndId — the first given that names one. None, or an
    EndToEndId naming several, is a 404 or a 422."""
    if uetr is not None:
        payment = await payment_rows.payment_known_by(session, uetr, bic)
        if payment is None or payment.creditor_agent_bic != bic:
            raise NotFound(f"no payment received by {bic} with UETR {uetr}", kind="payment-not-found")
        return payment.id
    if transaction_id is not None:
        obligation_id = obligation_id_in_transaction_id(transaction_id)
        found = (
            await session.scalar(
                select(Payment.id)
                .join(Obligation, Obligation.payment_id == Payment.id)
                .where(Obligation.id == obligation_id, Payment.creditor_agent_bic == bic)
            )
            if obligation_id is not None
            else None
        )
        if found is None:
            raise NotFound(f"no payment received by {bic} with TxId {transaction_id}", kind="payment-not-found")
        return found
    ids = list(
        await session.scalars(
            select(Payment.id).where(Payment.creditor_agent_bic == bic, Payment.end_to_end_id == end_to_end_id).limit(2)
        )
    )
    if not ids:
        raise NotFound(f"no payment received by {bic} with EndToEndId {end_to_end_id}", kind="payment-not-found")
    if len(ids) > 1:
        raise Refused(
            f"EndToEndId {end_to_end_id} names several payments received by {bic}: give OrgnlUETR or OrgnlTxId",
            kind="ambiguous",
        )
    return ids[0]


async def returns_of(session: AsyncSession, payment_id: uuid.UUID) -> list[PaymentReturn]:
    return list(
        await session.scalars(
            select(PaymentReturn)
            .where(PaymentReturn.payment_id == payment_id)
            .order_by(PaymentReturn.created_at, PaymentReturn.id)
        )
    )
