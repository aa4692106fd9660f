"""The payment tracker: a payment's timeline by UETR, for its two agents, like the gpi
tracker — each state it reached, when, and the ISO 20022 message behind it.

Read from where each step recorded its time (the payment, its screening, its
obligation, the camt.054 entry that booked it, its token), so nothing more is written
on the hot path; states in the order a payment goes through them. As with events
(deltran/events.py), the creditor agent's timeline starts at AWAITING_SETTLEMENT: a
payment still screening, or refused before it awaits settlement, is unknown to it. Each agent finds the payment by the
UETR it was given: the sender's own, or the one DelTran forwarded (derived from the
payment's id for a payment sent without one). A pacs.002 is written when asked for, so
it has no stored MsgId: `message_id` is null for it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from deltran.cancellations import investigated
from deltran.db import payment_rows
from deltran.db.tables import BankNotification, Cancellation, Obligation, PaymentReturn, Token
from deltran.db.tables import Camt054Message as MessageRow
from deltran.errors import NotFound
from deltran.payment_references import references_for
from deltran.vocabulary import EntryOutcome, PaymentStatus

PACS002 = "pacs.002.001.10"
CAMT054 = "camt.054.001.08"
PACS004 = "pacs.004.001.09"
CAMT029 = "camt.029.001.14"
RECALL_REQUESTED = "CANCELLATION_REQUESTED"  # the debtor agent's recall (camt.056), by its case


@dataclass(frozen=True)
class TrackedState:
    at: datetime
    state: str
    message_type: str | None
    message_id: str | None


@dataclass(frozen=True)
class Track:
    uetr: str
    payment_id: uuid.UUID
    status: str
    events: list[TrackedState]


async def track(session: AsyncSession, uetr: uuid.UUID, bic: str) -> Track:
    """The timeline of the payment `bic` knows by `uetr`; NotFound if there is none."""
    payment = await payment_rows.payment_known_by(session, uetr, bic)
    if payment is None:
        raise _unknown(uetr)
    obligation = (
        await session.execute(
            select(Obligation.id, Obligation.created_at, Obligation.settled_at, Obligation.currency)
            .where(Obligation.payment_id == payment.id)
            # The sender's leg is the SOURCE; the creditor agent's, cross-currency, the TARGET.
            .order_by(Obligation.leg if bic == payment.debtor_agent_bic else Obligation.leg.desc())
            .limit(1)
        )
    ).one_or_none()
    sender = bic == payment.debtor_agent_bic
    if obligation is None and not sender:  # screening, or rejected before the creditor agent was told
        raise _unknown(uetr)
    booked = (
        await session.execute(
            select(BankNotification.received_at, MessageRow.message_id)
            .join(MessageRow, MessageRow.id == BankNotification.message_row_id)
            .where(
                BankNotification.payment_id == payment.id,
                BankNotification.outcome == EntryOutcome.MATCHED,
                # the booking of the bank's own leg (a cross-currency payment has one per currency)
                BankNotification.currency == (obligation.currency if obligation is not None else payment.currency),
            )
        )
    ).one_or_none()
    minted_at = (
        await session.scalar(select(Token.minted_at).where(Token.obligation_id == obligation.id))
        if obligation is not None
        else None
    )
    refs = references_for(payment, obligation.id if obligation else None, bic)
    # In the order a payment goes through them (a booking may arrive before the payment
    # awaits it: a payment booked during its screening settles gross).
    states: list[TrackedState] = []
    if sender:
        received = refs.message_name if payment.source_format != "json" else None
        states.append(TrackedState(payment.created_at, PaymentStatus.SCREENING, received, payment.message_id))
    if obligation is None:  # the sender's only: refused at screening or by the risk engine, or recalled
        if payment.status in (PaymentStatus.REJECTED, PaymentStatus.CANCELLED):
            states.append(TrackedState(payment.updated_at, PaymentStatus(payment.status), PACS002, None))
        return Track(uetr=str(uetr), payment_id=payment.id, status=payment.status, events=states)
    states.append(TrackedState(obligation.created_at, PaymentStatus.AWAITING_SETTLEMENT, PACS002, None))
    if booked is not None:
        # Never earlier than the creditor agent's first state: when screening ran is the sender's.
        at = booked.received_at if sender else max(booked.received_at, obligation.created_at)
        states.append(TrackedState(at, "BOOKED", CAMT054, booked.message_id))
    if obligation.settled_at is not None:
        states.append(TrackedState(obligation.settled_at, PaymentStatus.SETTLED, None, None))
    if minted_at is not None:
        # The debtor agent is told by pacs.002; the creditor agent gets the payment forwarded.
        states.append(
            TrackedState(minted_at, PaymentStatus.COMPLETED, PACS002, None)
            if sender
            else TrackedState(minted_at, PaymentStatus.COMPLETED, refs.message_name, refs.message_id)
        )
    # Each return: the debtor agent gets DelTran's pacs.004; the creditor agent made its own.
    returned = Decimal(0)
    for r in await session.scalars(
        select(PaymentReturn).where(PaymentReturn.payment_id == payment.id).order_by(PaymentReturn.created_at)
    ):
        returned += r.amount
        state = PaymentStatus.RETURNED if returned >= payment.amount else PaymentStatus.PARTIALLY_RETURNED
        message_id = ("DTR" + r.id.hex.upper()[:32]) if sender else r.message_id
        states.append(TrackedState(r.created_at, state, PACS004, message_id))
    recall = await session.scalar(select(Cancellation).where(Cancellation.payment_id == payment.id))
    if payment.status == PaymentStatus.EXPIRED:
        states.append(TrackedState(payment.updated_at, PaymentStatus.EXPIRED, PACS002, None))
    if payment.status == PaymentStatus.CANCELLED:  # by its debtor agent's recall, answered by a camt.029
        answered = CAMT029 if sender and recall is not None and recall.message_name else PACS002
        states.append(TrackedState(payment.updated_at, PaymentStatus.CANCELLED, answered, None))
    # The recall itself, where it happened: the debtor agent sent it; the creditor agent
    # saw it only as an investigation (a recall of a payment that had settled).
    if recall is not None and (sender or investigated(recall)):
        at = recall.created_at
        seen = TrackedState(at, RECALL_REQUESTED, recall.message_name if sender else None, recall.case_id)
        later = next((i for i, s in enumerate(states) if s.at >= at), len(states))  # before what it caused
        states.insert(later, seen)
    return Track(uetr=str(uetr), payment_id=payment.id, status=payment.status, events=states)


def _unknown(uetr: uuid.UUID) -> NotFound:
    return NotFound(f"no payment with UETR {uetr} that you send or receive", kind="payment-not-found")
