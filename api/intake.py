"""Payment intake: record a submitted payment and start (or find) its workflow.

Shared by every input format (JSON now, pacs.008 later). The row is committed before the
workflow starts, so nothing accepted is lost: if Temporal is down the caller gets a 503
and the resubmission (same identity, same content) starts the workflow then.
"""
from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from decimal import Decimal

from fastapi import HTTPException
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from api.errors import ServiceUnavailable
from deltran.config import Settings
from deltran.db.tables import Payment
from deltran.identity import content_fingerprint, payment_id_for, workflow_id_for
from deltran.shared import PaymentInput, PaymentStatus
from workflows.payment import PaymentWorkflow, initial_search_attributes


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

    def fingerprint(self) -> str:
        return content_fingerprint(asdict(self))


@dataclass(frozen=True)
class Intake:
    payment_id: uuid.UUID
    workflow_id: str
    status: str
    created: bool


async def submit_payment(
    session: AsyncSession, temporal: Client, settings: Settings, new: NewPayment
) -> Intake:
    payment_id = payment_id_for(new.instructing_bic, new.end_to_end_id)
    workflow_id = workflow_id_for(new.instructing_bic, new.end_to_end_id)
    fingerprint = new.fingerprint()
    async with session.begin():
        inserted = await session.scalar(
            insert(Payment)
            .values(
                id=payment_id,
                fingerprint=fingerprint,
                status=PaymentStatus.SCREENING,
                workflow_id=workflow_id,
                **asdict(new),
            )
            .on_conflict_do_nothing(constraint="uq_payments_sender_identity")
            .returning(Payment.id)
        )
        if inserted is None:
            existing = (
                await session.execute(
                    select(Payment.fingerprint, Payment.status).where(Payment.id == payment_id)
                )
            ).one()
            if existing.fingerprint != fingerprint:
                raise HTTPException(
                    status_code=409,
                    detail=(
                        f"EndToEndId {new.end_to_end_id!r} was already used by"
                        f" {new.instructing_bic} for a payment with different content"
                    ),
                )
            status = existing.status
        else:
            status = PaymentStatus.SCREENING
    # A payment still SCREENING may be one whose workflow start failed earlier: start
    # it (or find it running). Past SCREENING the workflow exists for sure.
    if status == PaymentStatus.SCREENING:
        await _start_workflow(temporal, settings, new, payment_id, workflow_id)
    return Intake(payment_id, workflow_id, status, created=inserted is not None)


async def _start_workflow(
    temporal: Client, settings: Settings, new: NewPayment, payment_id: uuid.UUID, workflow_id: str
) -> None:
    data = PaymentInput(
        payment_id=payment_id,
        end_to_end_id=new.end_to_end_id,
        amount=new.amount,
        currency=new.currency,
        debtor_agent_bic=new.debtor_agent_bic,
        creditor_agent_bic=new.creditor_agent_bic,
        deadline_s=settings.payment_deadline_s,
    )
    try:
        await temporal.start_workflow(
            PaymentWorkflow.run,
            data,
            id=workflow_id,
            task_queue=settings.task_queue,
            # One payment, one workflow: a running one is joined, a closed one is
            # never started again.
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=initial_search_attributes(data),
        )
    except WorkflowAlreadyStartedError:
        pass  # it ran before and closed: this is a duplicate
    except RPCError as exc:
        raise ServiceUnavailable("temporal", exc.message) from exc
