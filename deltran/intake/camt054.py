"""camt.054 intake: store every entry, match booked credits to payments, signal them.

Every entry is stored, matched or not, in the same transaction as the raw message.
Only after that commit are matched payments signalled; an entry whose signal did not go
out (Temporal down) keeps `signalled_at` empty and is signalled again when the
settlement agent re-posts the message, which it does on our 503, or by the worker's
sweeper (`signal_unsent`) if it never does.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import logging
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import any_, bindparam, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from deltran import audit, events
from deltran.db.tables import (
    BankNotification,
    ClearingWindow,
    FundingInstruction,
    FxQuote,
    Obligation,
    Participant,
    Payment,
    Redemption,
    Refund,
    table_of,
)
from deltran.db.tables import Camt054Message as MessageRow
from deltran.domain import settlement
from deltran.errors import ServiceUnavailable
from deltran.iso20022.camt054 import Camt054Entry, Camt054Message
from deltran.observability import metrics
from deltran.shared import FiatBooking
from deltran.temporal.contract import ClearingWindowContract, PaymentWorkflowContract, RedemptionContract
from deltran.vocabulary import EntryOutcome, FundingStatus, RefundStatus

# The logger keeps the name it had when intake lived in the API: dashboards and log queries use it.
log = logging.getLogger("deltran.api.camt054")


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
    # Set for a window funding: the instruction reference the window's workflow awaits.
    funding_reference: str | None = None
    # Set for a booked payout: the redemption workflow to tell (it also looks by itself).
    redemption_workflow_id: str | None = None


# The statements every entry runs, built once with their values bound at execution
# (see deltran/db/payment_rows.py).
_INSERT_MESSAGE = insert(table_of(MessageRow)).returning(MessageRow.id)
_ENTRIES = table_of(BankNotification)
_INSERT_ENTRY_UNLESS_TAKEN = insert(_ENTRIES).on_conflict_do_nothing().returning(_ENTRIES.c.id)
_STORED = select(BankNotification).where(
    BankNotification.account == bindparam("account"),
    BankNotification.entry_reference == bindparam("entry_reference"),
    BankNotification.tx_index == bindparam("tx_index"),
)
# UETR identifies a payment globally; EndToEndId only per instructing bank.
_PAYMENTS_BY_UETR = select(Payment).where(Payment.uetr == bindparam("uetr")).with_for_update(read=True)
_PAYMENTS_BY_E2E = select(Payment).where(Payment.end_to_end_id == bindparam("e2e")).with_for_update(read=True)
_MODE_OF = select(Obligation.settlement_mode).where(Obligation.payment_id == bindparam("payment_id")).limit(1)
_IDS = bindparam("ids", type_=ARRAY(_ENTRIES.c.id.type))
_MARK_SIGNALLED = (  # on the table: no ORM bulk-update bookkeeping
    update(_ENTRIES).where(_ENTRIES.c.id == any_(_IDS)).values(signalled_at=func.now())
)
_OUTCOMES = select(_ENTRIES.c.id, _ENTRIES.c.outcome, _ENTRIES.c.outcome_detail).where(_ENTRIES.c.id == any_(_IDS))
# How long the API's signal waits for the workflow of a payment accepted a moment ago to
# start (Settings.camt054_start_wait_s).
START_WAIT_S = 5.0
# Signals in flight at once for one message: enough to hide Temporal's round trip, few
# enough that one large camt.054 does not crowd out every other caller's requests.
SIGNAL_CONCURRENCY = 16


async def receive_camt054(
    session: AsyncSession,
    temporal: Client,
    message: Camt054Message,
    body: bytes,
    *,
    actor: str,
    start_wait_s: float = START_WAIT_S,
) -> list[EntryResult]:
    async with session.begin():
        message_row_id = await session.scalar(
            _INSERT_MESSAGE,
            {
                "message_id": message.message_id,
                "body_sha256": hashlib.sha256(body).hexdigest(),
                "body": body.decode("utf-8", errors="replace"),
            },
        )
        assert message_row_id is not None
        results = [await _store_entry(session, message_row_id, entry) for entry in message.entries]
        outcomes = Counter(r.outcome for r in results if not r.duplicate)
        await audit.record(
            session,
            actor=actor,
            action="camt054.receive",
            subject=message.message_id,
            result="stored",
            details={
                "entries": len(results),
                "duplicates": sum(r.duplicate for r in results),
                "outcomes": dict(outcomes),
            },
        )
    try:
        await _signal_all(session, temporal, [r for r in results if r.needs_signal], start_wait_s)
        await _tell_redemptions([r.redemption_workflow_id for r in results if r.redemption_workflow_id], temporal)
    finally:  # each entry's outcome as stored (re-read when its workflow had closed)
        for result in results:
            _log_entry(message.message_id, result)
    return results


async def _tell_redemptions(workflow_ids: list[str], temporal: Client) -> None:
    """Best effort: a redemption workflow also looks for its payout every few minutes."""
    for workflow_id in workflow_ids:
        try:
            await temporal.get_workflow_handle(workflow_id).signal(RedemptionContract.payout_changed)
        except RPCError as error:
            log.warning("redemption %s not told of its payout (%s); it looks by itself", workflow_id, error.message)


def _log_entry(message_id: str, result: EntryResult) -> None:
    entry = result.entry
    log.log(
        logging.WARNING if result.outcome in settlement.EXCEPTIONS and not result.duplicate else logging.INFO,
        "camt054 entry %s",
        result.outcome,
        extra={
            "outcome": result.outcome,
            "detail": result.detail,
            "duplicate": result.duplicate,
            "notification_id": result.notification_id,
            "message_id": message_id,
            "entry_reference": entry.entry_reference,
            "end_to_end_id": entry.end_to_end_id,
            "uetr": entry.uetr,
            "amount": str(entry.amount),
            "currency": entry.currency,
            "payment_id": result.payment_id,
            "workflow_id": result.workflow_id,
            "funding_reference": result.funding_reference,
        },
    )


async def _store_entry(session: AsyncSession, message_row_id: uuid.UUID, entry: Camt054Entry) -> EntryResult:
    existing = await _stored(session, entry)
    if existing is not None:
        return await _duplicate(session, entry, existing)
    if settlement.is_payout(entry):
        return await _store_payout(session, message_row_id, entry)
    if settlement.is_refund_payout(entry):
        return await _store_refund_payout(session, message_row_id, entry)
    instruction = await _funding_instruction(session, entry)
    if instruction is not None:
        return await _store_funding(session, message_row_id, entry, instruction)
    classified, classified_detail, payment = await _classify(session, entry)
    values = _row(message_row_id, entry) | dict(
        payment_id=payment.id if payment else None,
    )
    # A concurrent post of the same entry, or a second booking for the same payment,
    # loses the race on a unique index (stores nothing): the entry stored first makes it
    # a duplicate; otherwise the payment is funded by another entry, and it is stored so.
    row_id = None
    for outcome, detail in (
        (classified, classified_detail),
        (EntryOutcome.PAYMENT_NOT_AWAITING, "the payment is already funded by another entry"),
    ):
        stored = {"outcome": outcome, "outcome_detail": detail, **values}
        row_id = await session.scalar(_INSERT_ENTRY_UNLESS_TAKEN, stored)
        if row_id is not None:
            break
        if (existing := await _stored(session, entry)) is not None:
            return await _duplicate(session, entry, existing)
    assert row_id is not None
    matched = outcome == EntryOutcome.MATCHED
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


def _row(message_row_id: uuid.UUID, entry: Camt054Entry) -> dict:
    return dict(
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
        debtor_agent_bic=entry.debtor_agent_bic,
    )


async def _funding_instruction(session: AsyncSession, entry: Camt054Entry) -> FundingInstruction | None:
    """The instruction whose reference the entry carries as EndToEndId, locked."""
    if not settlement.may_fund_a_window(entry):
        return None
    return await session.scalar(
        select(FundingInstruction).where(FundingInstruction.reference == entry.end_to_end_id).with_for_update()
    )


async def _store_funding(
    session: AsyncSession, message_row_id: uuid.UUID, entry: Camt054Entry, instruction: FundingInstruction
) -> EntryResult:
    """A net debtor's funding: a booked credit of at least the instructed amount funds
    the instruction (locked above, so two bookings cannot both fund it, and the window's
    settlement cut-off either counts this funding or makes it late); the settlement mints
    what it takes of it and refunds the rest (activities/clearing.py)."""
    outcome, detail = settlement.funding_outcome(entry, instruction)
    row_id = await _insert_entry(
        session, message_row_id, entry, outcome=outcome, outcome_detail=detail, funding_instruction_id=instruction.id
    )
    if row_id is None:
        return await _duplicate_of(session, entry)
    if outcome == EntryOutcome.MATCHED:
        await session.execute(
            update(FundingInstruction)
            .where(FundingInstruction.id == instruction.id)
            .values(status=FundingStatus.FUNDED, notification_id=row_id, funded_at=func.now())
        )
    closed_by = await session.scalar(select(ClearingWindow.closed_by).where(ClearingWindow.id == instruction.window_id))
    return EntryResult(
        entry=entry,
        notification_id=row_id,
        outcome=outcome,
        detail=detail,
        payment_id=None,
        duplicate=False,
        needs_signal=outcome == EntryOutcome.MATCHED and closed_by is not None,
        workflow_id=closed_by,
        funding_reference=instruction.reference,
    )


async def _store_payout(session: AsyncSession, message_row_id: uuid.UUID, entry: Camt054Entry) -> EntryResult:
    """The settlement agent paid a redemption out. Under the redemption's lock — the one
    its release takes — so a payout is either booked here (and its tokens then burn) or
    the redemption was released first (and this is an exception to reverse)."""
    redemption = await session.scalar(
        select(Redemption).where(Redemption.reference == entry.end_to_end_id).with_for_update()
    )
    outcome, detail = settlement.payout_outcome(entry, redemption)
    row_id = await _insert_entry(
        session,
        message_row_id,
        entry,
        outcome=outcome,
        outcome_detail=detail,
        redemption_id=redemption.id if redemption else None,
        # No payment or window signal awaits it: the redemption is told after the commit.
        signalled_at=func.now(),
    )
    if row_id is None:
        return await _duplicate_of(session, entry)
    if outcome == EntryOutcome.MATCHED:
        assert redemption is not None
        redemption.notification_id = row_id
        redemption.updated_at = func.now()
    return EntryResult(
        entry=entry,
        notification_id=row_id,
        outcome=outcome,
        detail=detail,
        payment_id=None,
        duplicate=False,
        redemption_workflow_id=redemption.workflow_id if redemption and outcome == EntryOutcome.MATCHED else None,
    )


async def _store_refund_payout(session: AsyncSession, message_row_id: uuid.UUID, entry: Camt054Entry) -> EntryResult:
    """The settlement agent paid a refund back. Under the refund's lock, so one DBIT books
    it; any other (a second, another amount, a reversal) is an exception to look at."""
    refund = await session.scalar(select(Refund).where(Refund.reference == entry.end_to_end_id).with_for_update())
    outcome, detail = settlement.payout_outcome(entry, refund, what="refund")
    row_id = await _insert_entry(
        session,
        message_row_id,
        entry,
        outcome=outcome,
        outcome_detail=detail,
        refund_id=refund.id if refund else None,
        signalled_at=func.now(),  # nothing to signal: the refund is done in this transaction
    )
    if row_id is None:
        return await _duplicate_of(session, entry)
    if outcome == EntryOutcome.MATCHED:
        assert refund is not None
        refund.notification_id = row_id
        refund.status = RefundStatus.COMPLETED
        refund.updated_at = func.now()
        await session.flush()
        await events.refund_completed(session, refund.id)
        metrics.refunds.labels(refund.currency, RefundStatus.COMPLETED.value).inc()
    return EntryResult(
        entry=entry, notification_id=row_id, outcome=outcome, detail=detail, payment_id=None, duplicate=False
    )


async def _insert_entry(
    session: AsyncSession, message_row_id: uuid.UUID, entry: Camt054Entry, **values
) -> uuid.UUID | None:
    """Store the entry with what it did; None when the same entry, posted concurrently,
    was stored first (a unique index decides): it is then a duplicate."""
    try:
        async with session.begin_nested():
            return await session.scalar(
                insert(BankNotification).values(**values, **_row(message_row_id, entry)).returning(BankNotification.id)
            )
    except IntegrityError:
        return None


async def _duplicate_of(session: AsyncSession, entry: Camt054Entry) -> EntryResult:
    existing = await _stored(session, entry)
    assert existing is not None
    return await _duplicate(session, entry, existing)


async def _stored(session: AsyncSession, entry: Camt054Entry) -> BankNotification | None:
    """The entry as stored earlier: same account, entry reference and transaction."""
    return await session.scalar(
        _STORED, {"account": entry.account, "entry_reference": entry.entry_reference, "tx_index": entry.tx_index}
    )


async def _duplicate(session: AsyncSession, entry: Camt054Entry, existing: BankNotification) -> EntryResult:
    """A repeated entry changes nothing, except that a match whose signal never went
    out is signalled now."""
    workflow_id = funding_reference = None
    if existing.outcome == EntryOutcome.MATCHED and existing.signalled_at is None:
        if existing.funding_instruction_id is not None:
            workflow_id, funding_reference = (
                await session.execute(
                    select(ClearingWindow.closed_by, FundingInstruction.reference)
                    .join(ClearingWindow, ClearingWindow.id == FundingInstruction.window_id)
                    .where(FundingInstruction.id == existing.funding_instruction_id)
                )
            ).one()
        else:
            workflow_id = await session.scalar(select(Payment.workflow_id).where(Payment.id == existing.payment_id))
    return EntryResult(
        entry=entry,
        notification_id=existing.id,
        outcome=existing.outcome,
        detail=existing.outcome_detail,
        payment_id=existing.payment_id,
        duplicate=True,
        needs_signal=workflow_id is not None,
        workflow_id=workflow_id,
        funding_reference=funding_reference,
    )


async def _classify(session: AsyncSession, entry: Camt054Entry) -> tuple[str, str | None, Payment | None]:
    if (refused := settlement.unsettling(entry)) is not None:
        return (*refused, None)
    # UETR identifies a payment globally; EndToEndId only per instructing bank.
    # FOR SHARE (in the statements): the payment's own transitions (routing, rejection,
    # expiry) lock its row too (deltran/db/payment_rows.lock), so a booking and a
    # transition never interleave: either this entry is stored first and the transition
    # accounts for it, or this sees the status the transition committed.
    if entry.uetr is not None:
        candidates = list((await session.scalars(_PAYMENTS_BY_UETR, {"uetr": uuid.UUID(entry.uetr)})).all())
    else:
        candidates = []
    if not candidates and (entry.uetr is None or entry.end_to_end_id is not None):
        candidates = list((await session.scalars(_PAYMENTS_BY_E2E, {"e2e": entry.end_to_end_id})).all())
    quotes = await _quotes_of(session, candidates)
    refused, chosen = settlement.choose_payment(entry, [_as_booked(p, quotes.get(p.id), entry) for p in candidates])
    if refused is not None:
        return (*refused, None)
    assert chosen is not None
    payment = chosen.payment
    mode = await session.scalar(_MODE_OF, {"payment_id": payment.id})
    quote = quotes.get(payment.id)
    if quote is not None and entry.currency == quote.target_currency:
        # A cross-currency payment's target leg, booked by its FX provider. One the agent
        # says another bank sent funds no leg: it is that bank's, and goes back to it
        # (deltran/refunds.py, unmatched credits).
        provider_bic = await session.scalar(select(Participant.bic).where(Participant.id == quote.provider_id))
        if entry.debtor_agent_bic is not None and entry.debtor_agent_bic != provider_bic:
            why = f"{entry.currency} for the target leg of {payment.id} from {entry.debtor_agent_bic}, not its provider"
            return EntryOutcome.UNMATCHED, why, None
    return (*settlement.payment_outcome(entry, chosen, mode), payment)


@dataclass(frozen=True)
class _AsBooked:
    """A candidate payment as an entry would pay it: a cross-currency payment's target leg
    when that is the entry's currency, else the payment itself. Several payments sharing
    an EndToEndId are told apart by it."""

    payment: Payment
    amount: Decimal
    currency: str
    status: str


def _as_booked(payment: Payment, quote: FxQuote | None, entry: Camt054Entry) -> _AsBooked:
    if quote is not None and quote.target_currency == entry.currency:
        return _AsBooked(payment, quote.target_amount, quote.target_currency, payment.status)
    return _AsBooked(payment, payment.amount, payment.currency, payment.status)


async def _quotes_of(session: AsyncSession, candidates: list[Payment]) -> dict[uuid.UUID, FxQuote]:
    """The candidates' FX quotes, by payment (those that are cross-currency): one query."""
    if not candidates:
        return {}
    rows = await session.scalars(select(FxQuote).where(FxQuote.payment_id.in_([c.id for c in candidates])))
    return {q.payment_id: q for q in rows if q.payment_id is not None}


class _Delivery(enum.Enum):
    SENT = "sent"
    CLOSED = "closed"  # the workflow has run and closed
    NOT_STARTED = "not started"  # no such workflow yet


async def _signal_all(
    session: AsyncSession, temporal: Client, due: list[EntryResult], start_wait_s: float = START_WAIT_S
) -> int:
    """Signal the entries' workflows, at most SIGNAL_CONCURRENCY at once (a camt.054 of a
    hundred entries waits for about one round trip to Temporal, not a hundred in a row),
    and mark every entry whose signal went out, in one statement. The first failure is
    raised after that, so what went out is never signalled again. Returns how many went out."""
    gate = asyncio.Semaphore(SIGNAL_CONCURRENCY)

    async def send(result: EntryResult) -> _Delivery:
        async with gate:
            return await _deliver(temporal, result)

    first = await asyncio.gather(*(send(r) for r in due), return_exceptions=True)
    sent = [r for r, d in zip(due, first, strict=True) if d is _Delivery.SENT]
    await _mark(session, sent, [])
    # A payment accepted a moment ago may not have its workflow yet: the API starts it just
    # after the 202 (intake.payments.WorkflowStarts). Its signal waits for that start; if
    # the start never comes the entry stays unmarked, and the sweeper starts the workflow
    # (worker/sweeper.py) and then signals it.
    unstarted = [r for r, d in zip(due, first, strict=True) if d is _Delivery.NOT_STARTED and start_wait_s > 0]
    second = await asyncio.gather(
        *(_deliver_once_started(temporal, gate, r, start_wait_s) for r in unstarted), return_exceptions=True
    )
    late = [r for r, d in zip(unstarted, second, strict=True) if d is _Delivery.SENT]
    # The workflow had closed: it settled with this booking (a duplicate post racing the
    # first), or the payment's own final transition already turned the entry into an
    # exception to return (deltran/db/payment_rows.return_bookings), or an operator ended
    # it. Either way the stored outcome stands; a signal never rewrites it: report it as stored.
    closed = [
        r for r, d in (*zip(due, first, strict=True), *zip(unstarted, second, strict=True)) if d is _Delivery.CLOSED
    ]
    await _mark(session, late, closed)
    failure = next((d for d in (*first, *second) if isinstance(d, BaseException)), None)
    if failure is not None:
        raise failure
    return len(sent) + len(late)


async def _mark(session: AsyncSession, sent: list[EntryResult], closed: list[EntryResult]) -> None:
    if not sent and not closed:
        return
    async with session.begin():
        await session.execute(_MARK_SIGNALLED, {"ids": [r.notification_id for r in (*sent, *closed)]})
        if closed:
            by_id = {r.notification_id: r for r in closed}
            for row in await session.execute(_OUTCOMES, {"ids": list(by_id)}):
                by_id[row.id].outcome, by_id[row.id].detail = row.outcome, row.outcome_detail


async def _deliver_once_started(
    temporal: Client, gate: asyncio.Semaphore, result: EntryResult, wait_s: float
) -> _Delivery:
    """Signal again while the workflow is not started, for up to `wait_s`."""
    deadline = time.monotonic() + wait_s
    pause_s = 0.05
    while time.monotonic() < deadline:
        await asyncio.sleep(pause_s)
        async with gate:
            delivery = await _deliver(temporal, result)
        if delivery is not _Delivery.NOT_STARTED:
            return delivery
        pause_s = min(pause_s * 2, 1.0)
    log.info(
        "camt054 entry matched before its payment's workflow started; the sweeper starts and signals it",
        extra={"notification_id": result.notification_id, "payment_id": result.payment_id},
    )
    return _Delivery.NOT_STARTED


async def _deliver(temporal: Client, result: EntryResult) -> _Delivery:
    assert result.workflow_id is not None
    entry = result.entry
    handle = temporal.get_workflow_handle(result.workflow_id)
    try:
        if result.funding_reference is not None:
            await handle.signal(ClearingWindowContract.funding_booked, result.funding_reference)
        else:
            booking = FiatBooking(
                notification_id=result.notification_id,
                camt054_entry_reference=entry.entry_reference,
                bank_confirmation_reference=entry.bank_reference or entry.entry_reference,
                amount=entry.amount,
                currency=entry.currency,
                booking_date=entry.booking_date,
            )
            await handle.signal(PaymentWorkflowContract.fiat_booked, booking)
        return _Delivery.SENT
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise ServiceUnavailable("temporal", exc.message) from exc
    if result.funding_reference is not None:
        return _Delivery.CLOSED  # a window's workflow exists before its instructions do
    # A closed workflow cannot be signalled but can be described; one never started cannot.
    try:
        await handle.describe()
        return _Delivery.CLOSED
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise ServiceUnavailable("temporal", exc.message) from exc
    return _Delivery.NOT_STARTED


async def signal_unsent(
    session: AsyncSession,
    temporal: Client,
    grace: timedelta,
    *,
    start_wait_s: float = 0.0,
    page: int = 500,
) -> int:
    """Signal the matched entries whose signal never went out, older than `grace`: the
    API stopped between its commit and the signal, and the agent never re-posted. A
    booked payment does not expire (its booking is on record), so without this it
    would wait for a signal that nobody sends. Returns how many were signalled.

    Page by page, oldest first, to the end: an entry that cannot be signalled yet stays
    unsent, and never hides the ones behind it. By default one attempt each, no wait for
    a start: the sweeper has just started every workflow it could (start_orphans)."""
    signalled = 0
    after: tuple[datetime, uuid.UUID] | None = None
    while True:
        query = (
            select(BankNotification)
            .where(
                BankNotification.outcome == EntryOutcome.MATCHED,
                BankNotification.signalled_at.is_(None),
                BankNotification.received_at < func.now() - grace,
            )
            .order_by(BankNotification.received_at, BankNotification.id)
            .limit(page)
        )
        if after is not None:
            query = query.where(tuple_(BankNotification.received_at, BankNotification.id) > after)
        async with session.begin():
            rows = list((await session.scalars(query)).all())
        due = []
        for row in rows:
            async with session.begin():
                result = await _duplicate(session, _entry_of(row), row)
            if result.needs_signal:
                due.append(result)
        signalled += await _signal_all(session, temporal, due, start_wait_s)
        if len(rows) < page:
            return signalled
        after = (rows[-1].received_at, rows[-1].id)


def _entry_of(row: BankNotification) -> Camt054Entry:
    """A stored entry as the reader gave it (what a signal carries)."""
    return Camt054Entry(
        notification_id="",
        account=row.account,
        entry_reference=row.entry_reference,
        tx_index=row.tx_index,
        amount=row.amount,
        currency=row.currency,
        credit_debit=row.credit_debit,
        status=row.entry_status,
        reversal=row.reversal,
        booking_date=row.booking_date,
        value_date=None,
        end_to_end_id=row.end_to_end_id,
        uetr=row.uetr,
        instruction_id=None,
        transaction_id=None,
        bank_reference=row.bank_reference,
    )
