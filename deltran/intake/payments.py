"""Payment intake: record a submitted payment and start (or find) its workflow.

Shared by every input format (JSON and pacs.008). The row is committed before the
workflow starts, so nothing accepted is lost. Called with `WorkflowStarts` (the API), the
starts run after the answer: the committed row is the durable record, and a start that
fails (Temporal down) or never runs (the API stopped) is made by the worker's sweeper or by
a resubmission. Called without (the CLI, tests), the starts run before it returns, and
Temporal down is a ServiceUnavailable (503).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Coroutine, Sequence
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from deltran import audit, events, fx
from deltran.config import Settings
from deltran.db.tables import Participant, Payment, table_of
from deltran.errors import Conflict, Malformed, NotFound, Refused, ServiceUnavailable
from deltran.identity import content_fingerprint, payment_id_for, workflow_id_for
from deltran.iso20022.pacs008 import MAX_TRANSACTIONS
from deltran.observability import metrics
from deltran.shared import PaymentInput
from deltran.temporal.contract import PaymentWorkflowContract
from deltran.temporal.search_attributes import initial_search_attributes
from deltran.vocabulary import EventType, PaymentStatus

# The logger keeps the name it had when intake lived in the API: dashboards and log queries use it.
log = logging.getLogger("deltran.api.intake")

# Payments per message: a bound on one transaction's size (the pacs.008 reader refuses more).
MAX_BATCH = MAX_TRANSACTIONS


class WorkflowStarts:
    """The API's workflow starts, run after the 202 instead of before it.

    The payment's row is committed first and is the durable record (its SCREENING status
    says its workflow may not exist yet): if a start fails (Temporal down) or never runs
    (the API stopped), the worker's sweeper starts the workflow of every payment still
    SCREENING after its grace period, and a resubmission starts it at once. So the bank's answer waits for one
    PostgreSQL commit, not also for Temporal's round trip, which under load is most of
    it. At most `limit` starts wait at once; beyond that a submission starts its
    workflows itself before answering, so a Temporal that falls behind slows intake
    instead of growing this queue without bound."""

    def __init__(self, limit: int = 1000) -> None:
        self._limit = limit
        self._running: set[asyncio.Task] = set()

    def has_room(self, n: int) -> bool:
        return len(self._running) + n <= self._limit

    def start(self, starts: list[Coroutine[Any, Any, None]]) -> None:
        for start in starts:
            task = asyncio.create_task(_logged(start))
            self._running.add(task)
            task.add_done_callback(self._done)
        metrics.workflow_starts_pending.set(len(self._running))

    def _done(self, task: asyncio.Task) -> None:
        self._running.discard(task)
        metrics.workflow_starts_pending.set(len(self._running))

    async def drain(self, timeout_s: float) -> int:
        """Wait up to `timeout_s` for the starts in flight (the API stopping); returns how
        many were left to the sweeper."""
        if self._running:
            await asyncio.wait(set(self._running), timeout=timeout_s)
        return len(self._running)


async def _logged(start: Coroutine[Any, Any, None]) -> None:
    try:
        await start
    except ServiceUnavailable:
        metrics.workflow_starts_failed.inc()  # logged by _start_workflow with the payment
    except Exception:
        metrics.workflow_starts_failed.inc()
        log.exception("payment workflow start failed (recorded; the sweeper or a resubmission starts it)")


@dataclass(frozen=True)
class NewPayment:
    """A payment as any input format maps it, already validated for shape."""

    instructing_bic: str
    end_to_end_id: str
    amount: Decimal
    currency: str
    debtor_name: str
    debtor_iban: str | None
    debtor_account: str | None
    debtor_agent_bic: str
    creditor_name: str
    creditor_iban: str | None
    creditor_account: str | None
    creditor_agent_bic: str
    remittance_info: str | None = None
    uetr: uuid.UUID | None = None
    instruction_id: str | None = None
    transaction_id: str | None = None
    settlement_date: date | None = None
    charge_bearer: str | None = None
    urgent: bool = False
    # A cross-currency payment: the debtor agent's FX quote (deltran/fx.py), taken at intake.
    fx_quote_id: uuid.UUID | None = None
    # What a pacs.008 stated of the conversion (IntrBkSttlmAmt, XchgRate), checked
    # against the quote; not stored (the quote is).
    fx_stated: FxStated | None = None
    # Where it came from; not part of the payment's content.
    source_format: str = "json"
    message_id: str | None = None

    def fingerprint(self) -> str:
        """The content a resubmission must repeat: everything but the envelope, so the
        same transaction resent in a new message (new MsgId) is still a duplicate."""
        content = asdict(self)
        del content["source_format"], content["message_id"]
        for fx_field in ("fx_quote_id", "fx_stated"):
            if content[fx_field] is None:  # the fingerprints of payments before FX stay as they were
                del content[fx_field]
        return content_fingerprint(content)

    def row(self) -> dict:
        """Its columns in payments (the quote is linked from fx_quotes)."""
        columns = asdict(self)
        del columns["fx_quote_id"], columns["fx_stated"]
        return columns


@dataclass(frozen=True)
class FxStated:
    """A pacs.008's statement of its conversion: what the creditor agent is to receive
    (IntrBkSttlmAmt) and at what rate (XchgRate, if stated)."""

    target_amount: Decimal
    target_currency: str
    rate: Decimal | None = None


@dataclass(frozen=True)
class Intake:
    payment_id: uuid.UUID
    workflow_id: str
    status: str
    created: bool


async def submit_payments(
    session: AsyncSession,
    temporal: Client,
    settings: Settings,
    batch: Sequence[NewPayment],
    *,
    actor: str,
    starts: WorkflowStarts | None = None,
) -> list[Intake]:
    """Record every payment of one message in one transaction (all or none: a conflict
    on any of them is a 409 for the message), audited in that same transaction, then
    start their workflows: after returning when `starts` has room, else before."""
    assert 0 < len(batch) <= MAX_BATCH
    _refuse_repeated_end_to_end_ids(batch)
    _refuse_self_payments(batch)
    intakes: list[Intake] = []
    async with session.begin():
        await _refuse_uncleared_currencies(session, batch, settings)
        for new in batch:
            intakes.append(await _record(session, new, settings))
        created = [str(i.payment_id) for i in intakes if i.created]
        await events.payment_events(session, [i.payment_id for i in intakes if i.created], EventType.PAYMENT_ACCEPTED)
        if created:
            await audit.record(
                session,
                actor=actor,
                action="payment.submit",
                subject=batch[0].message_id or created[0],
                result="accepted",
                details={
                    "format": batch[0].source_format,
                    "payments": created,
                    "duplicates": len(intakes) - len(created),
                },
            )
    # A payment still SCREENING may be one whose workflow start failed earlier: start
    # it (or find it running). Past SCREENING the workflow exists for sure.
    due = [
        (new, intake) for new, intake in zip(batch, intakes, strict=True) if intake.status == PaymentStatus.SCREENING
    ]
    pending = [_start_workflow(temporal, settings, new, i.payment_id, i.workflow_id) for new, i in due]
    if starts is not None and starts.has_room(len(pending)):
        starts.start(pending)
    else:
        await asyncio.gather(*pending)
    for new, intake in zip(batch, intakes, strict=True):
        log.info(
            "payment accepted",
            extra={
                "payment_id": intake.payment_id,
                "end_to_end_id": new.end_to_end_id,
                "workflow_id": intake.workflow_id,
                "instructing_bic": new.instructing_bic,
                "result": "created" if intake.created else "duplicate",
                "status": str(intake.status),
                "format": new.source_format,
            },
        )
    return intakes


def _refuse_repeated_end_to_end_ids(batch: Sequence[NewPayment]) -> None:
    seen: set[str] = set()
    errors = []
    for index, new in enumerate(batch):
        if new.end_to_end_id in seen:
            errors.append(
                {
                    "field": f"CdtTrfTxInf[{index}]/PmtId/EndToEndId",
                    "transaction": index,
                    "message": f"EndToEndId {new.end_to_end_id!r} appears more than once in the message",
                }
            )
        seen.add(new.end_to_end_id)
    if errors:
        raise Malformed(
            "each transaction of a message needs its own EndToEndId", kind="repeated-end-to-end-id", errors=errors
        )


def _field_error(index: int, new: NewPayment, json_field: str, xml_path: str, message: str) -> dict:
    """One field at fault, named as the payment's format names it (a pacs.008 transaction
    by its path and index)."""
    if new.source_format == "json":
        return {"field": json_field, "message": message}
    return {"field": f"CdtTrfTxInf[{index}]/{xml_path}", "transaction": index, "message": message}


def _refuse_self_payments(batch: Sequence[NewPayment]) -> None:
    """A bank cannot pay itself through DelTran: such an obligation has no counterparty
    to net against, and its transfer would debit and credit one account."""
    errors = [
        _field_error(index, new, "creditor.agent_bic", "CdtrAgt/FinInstnId/BICFI",
                     f"{new.creditor_agent_bic} is also the debtor agent: a bank cannot pay itself")
        for index, new in enumerate(batch)
        if new.debtor_agent_bic == new.creditor_agent_bic
    ]  # fmt: skip
    if errors:
        raise Refused(
            "the debtor agent and the creditor agent must be different banks", kind="same-agent", errors=errors
        )


async def _refuse_uncleared_currencies(session: AsyncSession, batch: Sequence[NewPayment], settings: Settings) -> None:
    """A currency DelTran knows but does not clear is refused at the door, not accepted
    and then rejected by screening. A payment already recorded (accepted while its
    currency was cleared) is not refused: its resubmission still finds it."""
    cleared = settings.supported_currencies
    uncleared = {
        payment_id_for(new.instructing_bic, new.end_to_end_id): (index, new)
        for index, new in enumerate(batch)
        if new.currency not in cleared
    }
    if not uncleared:
        return
    recorded = set((await session.scalars(select(Payment.id).where(Payment.id.in_(uncleared)))).all())
    errors = [
        _field_error(index, new, "currency", "IntrBkSttlmAmt/@Ccy",
                     f"{new.currency} is not cleared by DelTran (it clears {', '.join(cleared)})")
        for payment_id, (index, new) in uncleared.items()
        if payment_id not in recorded
    ]  # fmt: skip
    if errors:
        raise Refused("a payment's currency is not cleared by DelTran", kind="currency-not-cleared", errors=errors)


# Untargeted ON CONFLICT: a conflict on any unique key (id, workflow id, BIC + EndToEndId,
# UETR) stores nothing and raises nothing; what it collided with is read below. (Targeted
# at the id alone, a concurrent twin could first hit another of the twin's keys and be
# mistaken for a UETR clash.) A Core statement with its values bound at execution:
# compiled once, and no ORM bulk-insert machinery per payment.
_INSERT_PAYMENT = insert(table_of(Payment)).on_conflict_do_nothing().returning(Payment.id)


async def _record(session: AsyncSession, new: NewPayment, settings: Settings) -> Intake:
    payment_id = payment_id_for(new.instructing_bic, new.end_to_end_id)
    workflow_id = workflow_id_for(new.instructing_bic, new.end_to_end_id)
    fingerprint = new.fingerprint()
    inserted = await session.scalar(
        _INSERT_PAYMENT,
        {
            "id": payment_id,
            "fingerprint": fingerprint,
            "status": PaymentStatus.SCREENING,
            "workflow_id": workflow_id,
            **new.row(),
        },
    )
    if inserted is not None:
        if new.fx_quote_id is not None or new.fx_stated is not None:
            # (A cross-currency payment recorded before the switch went off is still found
            # as a duplicate below: only a new one is refused.)
            if not settings.fx_payments:
                raise Refused(
                    "cross-currency payments are switched off (DELTRAN_FX_PAYMENTS) while workers are upgraded:"
                    " retry later",
                    kind="fx-payments-disabled",
                    errors=[{"field": "fx_quote_id" if new.source_format == "json" else "InstdAmt",
                             "message": "cross-currency payments are not accepted now"}],
                )  # fmt: skip
            await _take_quote(session, new, payment_id, settings.supported_currencies)
        return Intake(payment_id, workflow_id, PaymentStatus.SCREENING, created=True)
    existing = (
        await session.execute(select(Payment.fingerprint, Payment.status).where(Payment.id == payment_id))
    ).one_or_none()
    if existing is None:
        # The id derives from the sender's identity (BIC + EndToEndId), and so do the
        # workflow id and that pair: a payment with another identity holds the UETR.
        raise Conflict(
            f"UETR {new.uetr} already identifies another payment",
            kind="uetr-conflict",
            errors=[{"field": "uetr", "message": "already used by another payment"}],
        )
    if existing.fingerprint != fingerprint:
        raise Conflict(
            f"EndToEndId {new.end_to_end_id!r} was already used by"
            f" {new.instructing_bic} for a payment with different content",
            kind="end-to-end-id-conflict",
            errors=[{"field": "end_to_end_id", "message": "already used with different content"}],
        )
    return Intake(payment_id, workflow_id, existing.status, created=False)


async def _take_quote(session: AsyncSession, new: NewPayment, payment_id: uuid.UUID, cleared: Sequence[str]) -> None:
    """A cross-currency payment takes its quote in its intake's transaction: the quote is
    the debtor agent's, open and unexpired, and the payment's amount and currency are its
    source side (a pacs.008's target amount and rate, its target side and rate); the
    creditor agent is not the provider (the target leg would pay itself). JSON names its
    quote; a pacs.008 (which has no field for it) takes the debtor agent's open quote of
    exactly its terms. Any refusal rolls the payment back: nothing is recorded."""
    debtor_agent = await session.scalar(select(Participant).where(Participant.bic == new.debtor_agent_bic))
    if debtor_agent is None:
        raise NotFound(f"{new.debtor_agent_bic} is not a participant: it holds no FX quote", kind="fx-quote-not-found")
    quote_id = new.fx_quote_id
    if quote_id is None:
        terms = new.fx_stated
        assert terms is not None
        quote_id = await fx.open_quote_of(
            session,
            debtor_agent.id,
            source=(new.amount, new.currency),
            target=(terms.target_amount, terms.target_currency),
            rate=terms.rate,
        )
        if quote_id is None:
            # Well-formed terms no usable quote has (none asked, used, expired, another rate).
            terms_named = "no open quote of the debtor agent has InstdAmt, IntrBkSttlmAmt and XchgRate as stated"
            raise Refused(
                f"{new.debtor_agent_bic} holds no open FX quote of {new.amount} {new.currency} →"
                f" {terms.target_amount} {terms.target_currency} at {terms.rate}: ask POST /v1/fx/quotes first",
                kind="fx-quote-no-match",
                errors=[{"field": f, "message": terms_named} for f in ("InstdAmt", "IntrBkSttlmAmt", "XchgRate")],
            )
    quote = await fx.take(session, quote_id, debtor_agent.id, payment_id)
    provider_bic = await session.scalar(select(Participant.bic).where(Participant.id == quote.provider_id))
    errors = []
    if (new.amount, new.currency) != (quote.source_amount, quote.source_currency):
        errors.append(
            {
                "field": "amount" if new.source_format == "json" else "InstdAmt",
                "message": f"the quote's source side is {quote.source_amount} {quote.source_currency},"
                f" not {new.amount} {new.currency}",
            }
        )
    stated = new.fx_stated
    if stated is not None and (stated.target_amount, stated.target_currency) != (
        quote.target_amount,
        quote.target_currency,
    ):
        errors.append(
            {
                "field": "IntrBkSttlmAmt",
                "message": f"the quote's target side is {quote.target_amount} {quote.target_currency},"
                f" not {stated.target_amount} {stated.target_currency}",
            }
        )
    if stated is not None and stated.rate is not None and stated.rate != quote.rate:
        errors.append({"field": "XchgRate", "message": f"the quote's rate is {quote.rate}, not {stated.rate}"})
    if errors:
        raise Refused("the payment does not match its FX quote", kind="fx-quote-mismatch", errors=errors)
    if quote.target_currency not in cleared:  # a pair allowed before its currency stopped being cleared
        raise Refused(
            f"{quote.target_currency} is not cleared by DelTran (it clears {', '.join(cleared)})",
            kind="currency-not-cleared",
            errors=[{"field": "fx_quote_id" if new.source_format == "json" else "IntrBkSttlmAmt/@Ccy",
                     "message": f"the quote's target currency {quote.target_currency} is not cleared"}],
        )  # fmt: skip
    if provider_bic == new.creditor_agent_bic:
        raise Refused(
            f"the creditor agent {provider_bic} is the quote's FX provider: pay it in {quote.source_currency}",
            kind="fx-provider-is-creditor",
            errors=[{"field": "fx_quote_id", "message": "its provider is the creditor agent"}],
        )


async def _start_workflow(
    temporal: Client, settings: Settings, new: NewPayment, payment_id: uuid.UUID, workflow_id: str
) -> None:
    data = payment_input(
        settings, payment_id, new.end_to_end_id, new.amount, new.currency, new.debtor_agent_bic, new.creditor_agent_bic
    )
    try:
        await start_payment_workflow(temporal, settings, data, workflow_id)
    except RPCError as exc:
        log.warning(
            "payment workflow not started: Temporal unavailable (recorded; the sweeper or a resubmission starts it)",
            extra={
                "payment_id": payment_id,
                "end_to_end_id": new.end_to_end_id,
                "workflow_id": workflow_id,
                "error": exc.message,
            },
        )
        raise ServiceUnavailable("temporal", exc.message) from exc


def payment_input(
    settings: Settings,
    payment_id: uuid.UUID,
    end_to_end_id: str,
    amount: Decimal,
    currency: str,
    debtor_agent_bic: str,
    creditor_agent_bic: str,
) -> PaymentInput:
    return PaymentInput(
        payment_id=payment_id,
        end_to_end_id=end_to_end_id,
        amount=amount,
        currency=currency,
        debtor_agent_bic=debtor_agent_bic,
        creditor_agent_bic=creditor_agent_bic,
        deadline_s=settings.payment_deadline_s,
        step_timeout_s=settings.activity_timeout_s,
        local_step_attempts=settings.local_step_attempts,
        local_steps=settings.local_steps,
    )


async def start_payment_workflow(temporal: Client, settings: Settings, data: PaymentInput, workflow_id: str) -> None:
    """Start the payment's workflow, or find it: a running one is joined, a closed one is
    never started again (one payment, one workflow). Raises RPCError if Temporal is down."""
    try:
        await temporal.start_workflow(
            PaymentWorkflowContract.run,
            data,
            id=workflow_id,
            task_queue=settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=initial_search_attributes(data),
            # The steps run inside workflow tasks (local activities): a worker that dies
            # mid-step is noticed when its task times out, and another worker replays it.
            task_timeout=timedelta(seconds=settings.workflow_task_timeout_s),
        )
    except WorkflowAlreadyStartedError:
        pass  # it ran before and closed: this is a duplicate
