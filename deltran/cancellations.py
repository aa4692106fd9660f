"""Recall: a debtor agent asks to cancel one of its payments (camt.056, or JSON), and is
answered (camt.029) with one of three statuses (CancellationStatus):

- CNCL — the payment had not settled: it is CANCELLED. The decision is the payment
  workflow's (its `cancel` update, serialized with its steps), made in one transaction
  by `cancel_unsettled`: under the payment's lock (the cut-off against a camt.054
  booking it) and, for a net obligation, its window's lock FOR SHARE (the cut-off
  against the window's close), the obligation is released and the payment cancelled —
  or nothing changes. Fiat already booked for it becomes an entry to return, like an
  expired payment's.
- PDCR — the payment has settled (or its window has closed, so netting counted it): only
  its creditor agent can give the money back. The request becomes an investigation for
  it (`GET /v1/investigations`), which it rejects (RJCR to the debtor agent) or answers
  by returning the payment.
- RJCR — the payment had already ended without settling (rejected, expired), or the
  creditor agent refused.

One request per payment: a repeat — the same message again, or forty at once — gets
the first one's answer, never a second decision.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, RPCTimeoutOrCancelledError, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from deltran import events, returns
from deltran.db import payment_rows
from deltran.db.tables import Cancellation, Obligation, Payment
from deltran.errors import Conflict, NotFound, Refused, ServiceUnavailable
from deltran.money import format_amount
from deltran.observability import metrics
from deltran.shared import CancelOutcome, CancelRequest
from deltran.temporal.contract import PaymentWorkflowContract
from deltran.vocabulary import (
    RETURNABLE_PAYMENT_STATUSES,
    CancellationStatus,
    EventType,
    ObligationStatus,
    PaymentStatus,
    ReturnReason,
)


class CancellationReason(StrEnum):
    """Why the debtor agent recalls a payment (ISO 20022 ExternalCancellationReason1Code,
    the codes a bank-to-bank recall uses)."""

    DUPL = "DUPL"  # duplicate payment
    CUST = "CUST"  # requested by the customer
    FRAD = "FRAD"  # fraudulent origin
    TECH = "TECH"  # technical problem
    UPAY = "UPAY"  # undue payment
    AGNT = "AGNT"  # incorrect agent
    CURR = "CURR"  # incorrect currency
    AM09 = "AM09"  # wrong amount
    AC03 = "AC03"  # invalid creditor account


class RecallRefusal(StrEnum):
    """Why a recall is refused (ISO 20022 ExternalPaymentCancellationRejection1Code)."""

    ARJR = "ARJR"  # the payment had already been rejected (or expired unfunded)
    ARDT = "ARDT"  # already returned
    LEGL = "LEGL"  # legal decision
    CUST = "CUST"  # the creditor refuses
    AGNT = "AGNT"  # the creditor agent's decision
    NOAS = "NOAS"  # no answer from the creditor
    AC04 = "AC04"  # the creditor's account is closed


# What the creditor agent may answer when it refuses (ARJR is DelTran's own answer).
CREDITOR_REFUSALS = frozenset(RecallRefusal) - {RecallRefusal.ARJR}

# How long a recall waits for the payment's workflow to decide (its current step first).
RECALL_ANSWER_S = 10.0
CANCELLED_NOW = "cancelled"  # CancelOutcome.detail of the transaction that cancelled it
UNSETTLED = (PaymentStatus.SCREENING, PaymentStatus.AWAITING_SETTLEMENT)
_NEVER_SETTLED = (PaymentStatus.REJECTED, PaymentStatus.EXPIRED)


@dataclass(frozen=True)
class Recall:
    """A recall as the API received it."""

    payment_id: uuid.UUID
    reason_code: CancellationReason
    reason: str | None = None
    case_id: str | None = None  # the camt.056's Assgnmt/Id; DelTran gives one otherwise
    message_name: str | None = None  # "camt.056.001.12" when it came as one


def investigated(cancellation: Cancellation) -> bool:
    """The recall went to the creditor agent (the payment had settled, or its window had
    closed): pending, or answered by it (returned, refused) or by the payment's expiry.
    A recall decided before settlement, or refused by DelTran, it never saw."""
    return (
        cancellation.status == CancellationStatus.PDCR
        or cancellation.return_id is not None
        or cancellation.status_reason_code in CREDITOR_REFUSALS
        or (cancellation.status == CancellationStatus.CNCL and cancellation.status_reason is not None)
    )


def case_id_for(payment_id: uuid.UUID) -> str:
    """The case a JSON recall is filed under (≤ 35 characters, one per payment)."""
    return "DTX" + payment_id.hex.upper()[:32]


# -- the decision before settlement (the payment workflow's `cancel` step) --------------


async def cancel_unsettled(session: AsyncSession, request: CancelRequest) -> CancelOutcome:
    """Cancel the payment if it has not settled and can no longer be settled by anyone
    else's commit: in one transaction with the caller's, all or nothing. A retry finds it
    CANCELLED and answers the same."""
    payment_id = request.payment_id
    payment = await payment_rows.lock(session, payment_id)
    if payment is None:
        return CancelOutcome(cancelled=False, status=PaymentStatus.REJECTED, detail="no such payment")
    status = PaymentStatus(payment.status)
    if status == PaymentStatus.CANCELLED:
        return CancelOutcome(cancelled=True, status=status, detail="already cancelled")
    if status not in UNSETTLED:
        return CancelOutcome(cancelled=False, status=status, detail=f"the payment is {status.value}")
    creditor_told = status == PaymentStatus.AWAITING_SETTLEMENT
    if creditor_told:
        # Read, not locked: the window is locked first (as the window's settlement does),
        # and the obligation changes below only if still PENDING; the payment's lock keeps
        # its own steps out meanwhile.
        # Every leg (a cross-currency payment has two): all still pending, none in a
        # closed window, or nothing is cancelled.
        legs = list((await session.scalars(select(Obligation).where(Obligation.payment_id == payment_id))).all())
        if not legs or any(leg.status != ObligationStatus.PENDING for leg in legs):
            return CancelOutcome(cancelled=False, status=status, detail="its obligation is no longer pending")
        for leg in legs:
            window = leg.clearing_window_id
            # The cut-off of the window's close, as for expiry.
            if window is not None and not await payment_rows.window_still_open(session, window):
                return CancelOutcome(
                    cancelled=False, status=status, detail="its clearing window has closed: netting counted it"
                )
        released = await session.execute(
            update(Obligation)
            .where(Obligation.id.in_([leg.id for leg in legs]), Obligation.status == ObligationStatus.PENDING)
            .values(status=ObligationStatus.RELEASED, released_at=func.now())
        )
        if cast(CursorResult, released).rowcount != len(legs):
            # Only the payment's own steps settle a leg, and none runs beside a recall: never
            # expected. Failed visibly (the recall, not the payment), and nothing committed.
            raise ApplicationError(
                f"payment {payment_id}: a leg settled during its recall", type="RecallRaced", non_retryable=True
            )
    cancelled = await session.execute(
        update(Payment)
        .where(Payment.id == payment_id, Payment.status == status)
        .values(
            status=PaymentStatus.CANCELLED,
            rejection_code=request.reason_code,
            rejection_reason=cancelled_detail(request),
            updated_at=func.now(),
        )
    )
    if cast(CursorResult, cancelled).rowcount:
        await events.payment_events(session, [payment_id], EventType.PAYMENT_CANCELLED, debtor_only=not creditor_told)
    await payment_rows.return_bookings(session, payment_id, PaymentStatus.CANCELLED)
    assignee = await _creditor_agent_id(session, payment)
    if await _file(session, payment_id, request, assignee, CancellationStatus.CNCL):
        metrics.recalls.labels(CancellationStatus.CNCL.value).inc()
    return CancelOutcome(cancelled=True, status=PaymentStatus.CANCELLED, detail=CANCELLED_NOW)


async def resolve_on_expiry(session: AsyncSession, payment_id: uuid.UUID) -> None:
    """A payment recalled after its window closed (PDCR) that then expired unsettled (its
    obligation rolled, then released): the recall is answered — it never settled, so
    there is nothing for the creditor agent to return."""
    await session.execute(
        update(Cancellation)
        .where(Cancellation.payment_id == payment_id, Cancellation.status == CancellationStatus.PDCR)
        .values(
            status=CancellationStatus.CNCL,
            status_reason="the payment expired unfunded: it never settled",
            resolved_at=func.now(),
        )
    )


def cancelled_detail(request: CancelRequest) -> str:
    text = f"cancelled at its debtor agent's request ({request.reason_code})"
    return f"{text}: {request.reason}" if request.reason else text


async def _creditor_agent_id(session: AsyncSession, payment: Payment) -> uuid.UUID:
    agents = await payment_rows.agents_of(session, payment)
    creditor = agents.get(payment.creditor_agent_bic)
    # A payment passes screening only between participants; one rejected before it may
    # name an unknown creditor agent: its recall is assigned back to the debtor agent.
    return creditor.id if creditor is not None else agents[payment.debtor_agent_bic].id


async def _file(
    session: AsyncSession,
    payment_id: uuid.UUID,
    request: CancelRequest,
    assignee_id: uuid.UUID,
    status: CancellationStatus,
    refusal: tuple[RecallRefusal, str] | None = None,
) -> bool:
    """Record the recall and its answer; False when the payment already has one."""
    inserted = await session.execute(
        insert(Cancellation)
        .values(
            payment_id=payment_id,
            requested_by=request.requested_by,
            assignee_id=assignee_id,
            case_id=request.case_id,
            reason_code=request.reason_code,
            reason=request.reason,
            message_name=request.message_name,
            status=status,
            status_reason_code=refusal[0] if refusal else None,
            status_reason=refusal[1] if refusal else None,
            resolved_at=None if status == CancellationStatus.PDCR else func.now(),
        )
        .on_conflict_do_nothing(index_elements=[Cancellation.payment_id])
    )
    return bool(cast(CursorResult, inserted).rowcount)


# -- the API's side: a recall, its answer, the creditor agent's investigations -----------


@dataclass(frozen=True)
class RecallAnswer:
    cancellation: Cancellation
    payment: Payment
    debtor_agent_bic: str
    creditor_agent_bic: str


@dataclass(frozen=True)
class Bank:
    id: uuid.UUID
    bic: str


async def recall(
    sessions: async_sessionmaker,
    temporal: Callable[[], Awaitable[Client]],
    bank: Bank,
    recall: Recall,
    start_wait_s: float,
) -> RecallAnswer:
    """File the bank's recall of its payment and answer it (CNCL, PDCR or RJCR)."""
    request = CancelRequest(
        payment_id=recall.payment_id,
        case_id=recall.case_id or case_id_for(recall.payment_id),
        reason_code=recall.reason_code.value,
        reason=recall.reason,
        requested_by=bank.id,
        message_name=recall.message_name,
    )
    async with sessions() as session:
        payment = await _own_payment(session, bank, recall.payment_id)
        answered = await _answer_of(session, recall.payment_id)
        if answered is not None:
            return answered
        status, workflow_id = PaymentStatus(payment.status), payment.workflow_id
    if status in UNSETTLED:  # only then is Temporal needed
        await _cancel_in_workflow(sessions, await temporal(), workflow_id, recall.payment_id, request, start_wait_s)
    async with sessions() as session, session.begin():
        locked = await payment_rows.lock(session, recall.payment_id)
        assert locked is not None
        payment, status = locked, PaymentStatus(locked.status)
        assignee = await _creditor_agent_id(session, payment)
        if status in _NEVER_SETTLED or status == PaymentStatus.RETURNED:
            refusal = (
                (RecallRefusal.ARDT, "the payment was returned in full")
                if status == PaymentStatus.RETURNED
                else (RecallRefusal.ARJR, f"the payment was {status.value.lower()} without settling")
            )
            if await _file(session, payment.id, request, assignee, CancellationStatus.RJCR, refusal):
                metrics.recalls.labels(CancellationStatus.RJCR.value).inc()
        # Settled, or netted in a closed window (SETTLED, COMPLETED, or still
        # AWAITING_SETTLEMENT past its window's cut-off): the creditor agent decides.
        elif status != PaymentStatus.CANCELLED and await _file(
            session, payment.id, request, assignee, CancellationStatus.PDCR
        ):
            await _tell(session, assignee, EventType.CANCELLATION_REQUESTED, payment.id)
            metrics.recalls.labels(CancellationStatus.PDCR.value).inc()
    async with sessions() as session:
        answered = await _answer_of(session, recall.payment_id)
        if answered is None:  # a workflow that cancelled it files its CNCL in that transaction
            raise ServiceUnavailable("temporal", "the payment's workflow has not answered the recall yet; retry")
        return answered


async def payment_named(
    session: AsyncSession, bank: Bank, uetr: uuid.UUID | None, end_to_end_id: str | None, message_id: str | None
) -> uuid.UUID:
    """The bank's payment a camt.056 names, in the references of the pacs.008 (or JSON)
    it sent: its UETR and/or EndToEndId, within its original message when given. None
    or several is a 404 or a 422, naming what was given."""
    query = select(Payment.id).where(Payment.debtor_agent_bic == bank.bic).limit(2)
    if uetr is not None:
        query = query.where(Payment.uetr == uetr)
    if end_to_end_id is not None:
        query = query.where(Payment.end_to_end_id == end_to_end_id)
    if message_id is not None:
        query = query.where(Payment.message_id == message_id)
    found = list(await session.scalars(query))
    named = ", ".join(
        f"{k} {v}" for k, v in (("UETR", uetr), ("EndToEndId", end_to_end_id), ("MsgId", message_id)) if v
    )
    if not found:
        raise NotFound(f"no payment sent by {bank.bic} with {named}", kind="payment-not-found")
    if len(found) > 1:
        raise Refused(f"{named} names several payments sent by {bank.bic}: give its OrgnlUETR", kind="ambiguous")
    return found[0]


async def _own_payment(session: AsyncSession, bank: Bank, payment_id: uuid.UUID) -> Payment:
    payment = await session.get(Payment, payment_id)
    if payment is None or payment.debtor_agent_bic != bank.bic:
        # Another bank's payment is as unknown as none at all.
        raise NotFound(f"no payment {payment_id} sent by {bank.bic}", kind="not-found")
    return payment


async def _cancel_in_workflow(
    sessions: async_sessionmaker,
    temporal: Client,
    workflow_id: str,
    payment_id: uuid.UUID,
    request: CancelRequest,
    start_wait_s: float,
) -> None:
    """Ask the payment's workflow to cancel it (its `cancel` update, between its steps).
    A payment whose workflow is not started yet (the API starts it just after its 202) is
    waited for up to `start_wait_s`; one that has just ended is answered from its row."""
    handle = temporal.get_workflow_handle(workflow_id)
    deadline = asyncio.get_running_loop().time() + start_wait_s
    while True:
        try:
            # One update per payment (its id): recalls at once, or a retry after a 503, wait
            # on the same one. The answer is read from the payment's row, written in the
            # step's transaction.
            _ = await asyncio.wait_for(
                handle.execute_update(PaymentWorkflowContract.cancel, request, id=f"recall-{payment_id}"),
                timeout=RECALL_ANSWER_S,
            )
            return
        except (TimeoutError, RPCTimeoutOrCancelledError) as error:
            raise ServiceUnavailable(
                "temporal",
                "the payment's workflow has not answered the recall yet (a step is running or retrying): it may still"
                " apply; retry, and the same recall gets its answer",
            ) from error
        except WorkflowUpdateFailedError as error:
            raise ServiceUnavailable("temporal", f"the payment's workflow failed the recall: {error.cause}") from error
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise ServiceUnavailable("temporal", f"the payment's workflow is unreachable: {error}") from error
        async with sessions() as session:
            status = await session.scalar(select(Payment.status).where(Payment.id == payment_id))
        if status not in UNSETTLED:
            return  # it ended meanwhile: answered from its row
        if await _closed(handle):
            # Ended without its row saying so (terminated by hand, say): nothing can decide
            # the recall until ops look at the payment; retrying would not help.
            raise Conflict(
                f"payment {payment_id} is {status} but its workflow has ended: a recall cannot be decided;"
                " ops must look at it (runbook: Recalls and investigations)",
                kind="workflow-ended",
            )
        if asyncio.get_running_loop().time() >= deadline:
            raise ServiceUnavailable("temporal", "the payment's workflow has not started yet; retry")
        await asyncio.sleep(0.1)


async def _closed(handle: WorkflowHandle) -> bool:
    """The workflow exists and has ended (a closed one can be described; one never
    started cannot)."""
    try:
        await handle.describe()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return False
        raise ServiceUnavailable("temporal", f"the payment's workflow is unreachable: {error}") from error
    return True


async def _answer_of(session: AsyncSession, payment_id: uuid.UUID) -> RecallAnswer | None:
    row = (
        await session.execute(
            select(Cancellation, Payment)
            .join(Payment, Payment.id == Cancellation.payment_id)
            .where(Cancellation.payment_id == payment_id)
        )
    ).first()
    if row is None:
        return None
    cancellation, payment = row
    return RecallAnswer(cancellation, payment, payment.debtor_agent_bic, payment.creditor_agent_bic)


async def _tell(session: AsyncSession, participant_id: uuid.UUID, type_: EventType, payment_id: uuid.UUID) -> None:
    answered = await _answer_of(session, payment_id)
    assert answered is not None  # told in the transaction that filed or answered it
    await events.bank_event(session, participant_id, type_, cancellation_data(answered.cancellation, answered.payment))


def cancellation_data(cancellation: Cancellation, payment: Payment) -> dict:
    """A recall as the banks see it (events, investigations)."""
    return {
        "cancellation_id": str(cancellation.id),
        "case_id": cancellation.case_id,
        "payment_id": str(payment.id),
        "end_to_end_id": payment.end_to_end_id,
        "uetr": str(payment.uetr) if payment.uetr else None,
        "amount": format_amount(payment.amount, payment.currency),
        "currency": payment.currency,
        "debtor_agent_bic": payment.debtor_agent_bic,
        "creditor_agent_bic": payment.creditor_agent_bic,
        "payment_status": payment.status,
        "status": cancellation.status,
        "reason_code": cancellation.reason_code,
        "reason": cancellation.reason,
        "status_reason_code": cancellation.status_reason_code,
        "status_reason": cancellation.status_reason,
        "requested_at": _iso(cancellation.created_at),
        "resolved_at": _iso(cancellation.resolved_at),
        "return_id": str(cancellation.return_id) if cancellation.return_id else None,
    }


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


async def investigations(
    session: AsyncSession, bank: Bank, *, limit: int, after: tuple[datetime, uuid.UUID] | None = None
) -> list[tuple[Cancellation, Payment]]:
    """The creditor agent's open investigations (recalls of settled payments it has not
    answered), oldest first, a page at a time (keyset on created_at, id)."""
    query = (
        select(Cancellation, Payment)
        .join(Payment, Payment.id == Cancellation.payment_id)
        .where(Cancellation.assignee_id == bank.id, Cancellation.status == CancellationStatus.PDCR)
        .order_by(Cancellation.created_at, Cancellation.id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(
            (Cancellation.created_at > after[0])
            | ((Cancellation.created_at == after[0]) & (Cancellation.id > after[1]))
        )
    return [(c, p) for c, p in (await session.execute(query)).all()]


async def _investigation_locked(session: AsyncSession, bank: Bank, cancellation_id: uuid.UUID) -> Cancellation:
    """The recall `bank` is to answer, locked; anyone else's is as unknown as none."""
    cancellation = await session.scalar(
        select(Cancellation).where(Cancellation.id == cancellation_id).with_for_update()
    )
    if cancellation is None or cancellation.assignee_id != bank.id:
        raise NotFound(f"no investigation {cancellation_id} for {bank.bic}", kind="not-found")
    return cancellation


async def accept(sessions: async_sessionmaker, bank: Bank, cancellation_id: uuid.UUID) -> tuple[Cancellation, Payment]:
    """The creditor agent accepts a recall: all of the payment still unreturned goes back
    to the debtor agent (a return, reason FOCR) and the recall is answered CNCL, in one
    transaction. Accepting it again changes nothing; one refused is a conflict, and one
    for a payment not yet settled (netted in a closed window) waits until it has."""
    async with sessions() as session, session.begin():
        cancellation = await _investigation_locked(session, bank, cancellation_id)
        payment_id = cancellation.payment_id
        if cancellation.status == CancellationStatus.PDCR:
            payment = await session.get(Payment, payment_id)
            assert payment is not None
            if PaymentStatus(payment.status) not in RETURNABLE_PAYMENT_STATUSES:
                raise Conflict(
                    f"payment {payment_id} is {payment.status}: it can be returned once it has settled",
                    kind="not-returnable",
                )
            await returns.return_payment(
                session,
                (bank.id, bank.bic),
                returns.NewReturn(
                    payment_id=payment_id,
                    amount=None,  # all that is left, reckoned under the payment's lock
                    reason_code=ReturnReason.FOCR,
                    return_key=f"recall:{cancellation_id}",
                    reason=f"recall {cancellation.case_id} accepted",
                ),
                accepting=cancellation_id,
            )
        elif cancellation.return_id is None:
            raise Conflict(
                f"investigation {cancellation_id} is already answered ({cancellation.status})", kind="conflict"
            )
    async with sessions() as session:
        answered = await _answer_of(session, payment_id)
        assert answered is not None
        return answered.cancellation, answered.payment


async def reject(
    sessions: async_sessionmaker, bank: Bank, cancellation_id: uuid.UUID, code: RecallRefusal, reason: str | None
) -> tuple[Cancellation, Payment]:
    """The creditor agent refuses a recall: RJCR, told to the debtor agent. Refusing it
    again changes nothing; one already answered otherwise is a conflict."""
    async with sessions() as session, session.begin():
        cancellation = await _investigation_locked(session, bank, cancellation_id)
        payment_id = cancellation.payment_id
        if cancellation.status == CancellationStatus.PDCR:
            cancellation.status = CancellationStatus.RJCR
            cancellation.status_reason_code = code.value
            cancellation.status_reason = reason
            cancellation.resolved_at = func.now()
            await session.flush()
            await _tell(session, cancellation.requested_by, EventType.CANCELLATION_REJECTED, payment_id)
            metrics.recalls.labels(CancellationStatus.RJCR.value).inc()
        elif cancellation.status_reason_code != code.value or cancellation.status_reason != reason:
            raise Conflict(
                f"investigation {cancellation_id} is already answered ({cancellation.status})", kind="conflict"
            )
    async with sessions() as session:
        answered = await _answer_of(session, payment_id)
        assert answered is not None
        return answered.cancellation, answered.payment
