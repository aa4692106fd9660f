"""camt.054 intake: store every entry, match booked credits to payments, signal them.

Every entry is stored, matched or not, in the same transaction as the raw message.
Only after that commit are matched payments signalled; an entry whose signal did not go
out (Temporal down) keeps `signalled_at` empty and is signalled again when the
settlement agent re-posts the message, which it does on our 503.
"""
from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api.errors import ServiceUnavailable
from api.iso20022.camt054 import Camt054Entry, Camt054Message
from deltran import audit
from deltran.db.tables import BankNotification, Camt054Message as MessageRow, Payment
from deltran.shared import FiatBooking, PaymentStatus
from workflows.payment import PaymentWorkflow

# A booked credit can fund a payment that is still being screened or already waits.
_FUNDABLE = (PaymentStatus.SCREENING, PaymentStatus.AWAITING_SETTLEMENT)


@dataclass
class EntryResult:
    entry: Camt054Entry
    notification_id: uuid.UUID
    outcome: str
    detail: str | None
    payment_id: uuid.UUID | None
    duplicate: bool
    needs_signal: bool = False
    workflow_id: str | None = None


async def receive_camt054(
    session: AsyncSession, temporal: Client, message: Camt054Message, body: bytes, *, actor: str
) -> list[EntryResult]:
    async with session.begin():
        message_row_id = await session.scalar(
            insert(MessageRow)
            .values(
                message_id=message.message_id,
                body_sha256=hashlib.sha256(body).hexdigest(),
                body=body.decode("utf-8", errors="replace"),
            )
            .returning(MessageRow.id)
        )
        results = [await _store_entry(session, message_row_id, entry) for entry in message.entries]
        outcomes = Counter(r.outcome for r in results if not r.duplicate)
        await audit.record(
            session,
            actor=actor,
            action="camt054.receive",
            subject=message.message_id,
            result="stored",
            details={"entries": len(results), "duplicates": sum(r.duplicate for r in results),
                     "outcomes": dict(outcomes)},
        )
    for result in results:
        if result.needs_signal:
            await _signal(session, temporal, result)
    return results


async def _store_entry(
    session: AsyncSession, message_row_id: uuid.UUID, entry: Camt054Entry
) -> EntryResult:
    existing = await _stored(session, entry)
    if existing is not None:
        return await _duplicate(session, entry, existing)
    outcome, detail, payment = await _classify(session, entry)
    values = dict(
        message_row_id=message_row_id,
        account=entry.account,
        entry_reference=entry.entry_reference,
        tx_index=entry.tx_index,
        end_to_end_id=entry.end_to_end_id,
        uetr=entry.uetr,
        bank_reference=entry.bank_reference,
        amount=entry.amount,
        currency=entry.currency,
        credit_debit=entry.credit_debit,
        entry_status=entry.status,
        reversal=entry.reversal,
        booking_date=entry.booking_date,
        payment_id=payment.id if payment else None,
    )
    try:
        # A savepoint: a concurrent post of the same entry, or a second booking for the
        # same payment, loses the race here and is then stored for what it is.
        async with session.begin_nested():
            row_id = await session.scalar(
                insert(BankNotification)
                .values(outcome=outcome, outcome_detail=detail, **values)
                .returning(BankNotification.id)
            )
    except IntegrityError:
        existing = await _stored(session, entry)
        if existing is not None:
            return await _duplicate(session, entry, existing)
        outcome, detail = "PAYMENT_NOT_AWAITING", "the payment is already funded by another entry"
        row_id = await session.scalar(
            insert(BankNotification)
            .values(outcome=outcome, outcome_detail=detail, **values)
            .returning(BankNotification.id)
        )
    assert row_id is not None
    matched = outcome == "MATCHED"
    return EntryResult(
        entry=entry,
        notification_id=row_id,
        outcome=outcome,
        detail=detail,
        payment_id=payment.id if payment else None,
        duplicate=False,
        needs_signal=matched,
        workflow_id=payment.workflow_id if matched and payment else None,
    )


async def _stored(session: AsyncSession, entry: Camt054Entry) -> BankNotification | None:
    """The entry as stored earlier: same account, entry reference and transaction."""
    return await session.scalar(
        select(BankNotification).where(
            BankNotification.account == entry.account,
            BankNotification.entry_reference == entry.entry_reference,
            BankNotification.tx_index == entry.tx_index,
        )
    )


async def _duplicate(
    session: AsyncSession, entry: Camt054Entry, existing: BankNotification
) -> EntryResult:
    """A repeated entry changes nothing, except that a match whose signal never went
    out is signalled now."""
    workflow_id = None
    if existing.outcome == "MATCHED" and existing.signalled_at is None:
        workflow_id = await session.scalar(
            select(Payment.workflow_id).where(Payment.id == existing.payment_id)
        )
    return EntryResult(
        entry=entry,
        notification_id=existing.id,
        outcome=existing.outcome,
        detail=existing.outcome_detail,
        payment_id=existing.payment_id,
        duplicate=True,
        needs_signal=workflow_id is not None,
        workflow_id=workflow_id,
    )


async def _classify(
    session: AsyncSession, entry: Camt054Entry
) -> tuple[str, str | None, Payment | None]:
    if entry.status != "BOOK":
        return "NOT_BOOKED", f"entry status {entry.status} does not settle", None
    if entry.credit_debit != "CRDT" or entry.reversal:
        return "NOT_A_CREDIT", "only booked credits settle payments", None
    if entry.uetr is None and entry.end_to_end_id is None:
        return "UNMATCHED", "the entry carries neither UETR nor EndToEndId", None
    # UETR identifies a payment globally; EndToEndId only per instructing bank.
    key = (
        Payment.uetr == uuid.UUID(entry.uetr)
        if entry.uetr is not None
        else Payment.end_to_end_id == entry.end_to_end_id
    )
    candidates = list((await session.scalars(select(Payment).where(key))).all())
    if entry.uetr is not None and not candidates and entry.end_to_end_id is not None:
        candidates = list(
            (await session.scalars(select(Payment).where(Payment.end_to_end_id == entry.end_to_end_id))).all()
        )
    if not candidates:
        return "UNMATCHED", "no payment has this reference", None
    if len(candidates) > 1:
        same = [p for p in candidates if p.amount == entry.amount and p.currency == entry.currency and p.status in _FUNDABLE]
        if len(same) != 1:
            return "AMBIGUOUS", f"{len(candidates)} payments share this EndToEndId", None
        candidates = same
    payment = candidates[0]
    if payment.amount != entry.amount or payment.currency != entry.currency:
        return (
            "AMOUNT_MISMATCH",
            f"booked {entry.amount} {entry.currency}, payment is {payment.amount} {payment.currency}",
            payment,
        )
    if payment.status not in _FUNDABLE:
        return "PAYMENT_NOT_AWAITING", f"payment is {payment.status}", payment
    return "MATCHED", None, payment


async def _signal(session: AsyncSession, temporal: Client, result: EntryResult) -> None:
    assert result.workflow_id is not None
    entry = result.entry
    booking = FiatBooking(
        notification_id=result.notification_id,
        camt054_entry_reference=entry.entry_reference,
        bank_confirmation_reference=entry.bank_reference or entry.entry_reference,
        amount=entry.amount,
        currency=entry.currency,
        booking_date=entry.booking_date,
    )
    try:
        await temporal.get_workflow_handle(result.workflow_id).signal(PaymentWorkflow.fiat_booked, booking)
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise ServiceUnavailable("temporal", exc.message) from exc
        # The workflow closed meanwhile (e.g. it expired): keep the entry as an exception.
        result.outcome, result.detail = "PAYMENT_NOT_AWAITING", "the payment's workflow has closed"
        async with session.begin():
            await session.execute(
                update(BankNotification)
                .where(BankNotification.id == result.notification_id)
                .values(outcome=result.outcome, outcome_detail=result.detail)
            )
        return
    async with session.begin():
        await session.execute(
            update(BankNotification)
            .where(BankNotification.id == result.notification_id)
            .values(signalled_at=func.now())
        )
