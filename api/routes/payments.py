"""`/v1/payments`: banks submit payments and read their status."""
from __future__ import annotations

import uuid

from fastapi import APIRouter, HTTPException, status
from sqlalchemy import select
from sqlalchemy.orm import aliased

from api.deps import BankDep, CallerDep, SessionDep, SettingsDep, TemporalDep
from api.intake import NewPayment, submit_payment
from api.schemas import ObligationOut, PaymentAccepted, PaymentIn, PaymentOut, TokenOut
from deltran.db.tables import Obligation, Participant, Payment, Token
from deltran.money import format_amount

router = APIRouter(prefix="/v1/payments", tags=["payments"])


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=PaymentAccepted)
async def submit(
    body: PaymentIn, caller: BankDep, session: SessionDep, temporal: TemporalDep, settings: SettingsDep
) -> PaymentAccepted:
    """Submit a payment. The same payment again returns the same `payment_id` and starts
    nothing new; the same EndToEndId with different content is a 409."""
    if body.debtor.agent_bic != caller.bic:
        raise HTTPException(
            status_code=403,
            detail=f"debtor.agent_bic {body.debtor.agent_bic} is not the authenticated bank {caller.bic}",
        )
    assert caller.bic is not None
    new = NewPayment(
        instructing_bic=caller.bic,
        end_to_end_id=body.end_to_end_id,
        amount=body.decimal_amount,
        currency=body.currency,
        debtor_name=body.debtor.name,
        debtor_iban=body.debtor.iban,
        debtor_account=body.debtor.account,
        debtor_agent_bic=body.debtor.agent_bic,
        creditor_name=body.creditor.name,
        creditor_iban=body.creditor.iban,
        creditor_account=body.creditor.account,
        creditor_agent_bic=body.creditor.agent_bic,
        remittance_info=body.remittance_info,
    )
    intake = await submit_payment(session, temporal, settings, new)
    return PaymentAccepted(payment_id=intake.payment_id, workflow_id=intake.workflow_id, status=intake.status)


@router.get("/{payment_id}", response_model=PaymentOut)
async def read(payment_id: uuid.UUID, caller: CallerDep, session: SessionDep) -> PaymentOut:
    """A payment with its obligation and token. A bank sees only payments it sent or
    receives; anything else is a 404, as if it did not exist."""
    payment = await session.get(Payment, payment_id)
    if payment is None or (
        caller.role == "bank" and caller.bic not in (payment.debtor_agent_bic, payment.creditor_agent_bic)
    ):
        raise HTTPException(status_code=404, detail="payment not found")
    payer, payee = aliased(Participant), aliased(Participant)
    row = (
        await session.execute(
            select(Obligation, payer.bic, payee.bic)
            .join(payer, payer.id == Obligation.payer_id)
            .join(payee, payee.id == Obligation.payee_id)
            .where(Obligation.payment_id == payment_id)
        )
    ).first()
    token = await session.scalar(select(Token).where(Token.payment_id == payment_id))
    obligation = None
    if row is not None:
        ob, payer_bic, payee_bic = row
        obligation = ObligationOut(
            id=ob.id,
            status=ob.status,
            amount=format_amount(ob.amount, ob.currency),
            currency=ob.currency,
            payer_bic=payer_bic,
            payee_bic=payee_bic,
            settlement_mode=ob.settlement_mode,
            created_at=ob.created_at,
            settled_at=ob.settled_at,
            bank_confirmation_reference=ob.bank_confirmation_reference,
            camt054_entry_reference=ob.camt054_entry_reference,
        )
    return PaymentOut(
        payment_id=payment.id,
        workflow_id=payment.workflow_id,
        status=payment.status,
        end_to_end_id=payment.end_to_end_id,
        amount=format_amount(payment.amount, payment.currency),
        currency=payment.currency,
        debtor_agent_bic=payment.debtor_agent_bic,
        creditor_agent_bic=payment.creditor_agent_bic,
        created_at=payment.created_at,
        obligation=obligation,
        token=(
            None
            if token is None
            else TokenOut(id=token.id, amount=format_amount(token.amount, token.currency), currency=token.currency)
        ),
        rejection_reason=payment.rejection_reason,
        rejection_code=payment.rejection_code,
    )
