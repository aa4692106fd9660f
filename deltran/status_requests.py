"""Status requests (pacs.028): which payments a bank asks about.

A bank may ask about the payments it sent or receives, in its own references
(deltran/payment_references.py): by original message (every transaction of it), by
EndToEndId and/or TxId, or by transactions within a message. Every transaction asked
about must name at least one payment the bank may see, else nothing is answered (a 404
naming each one): a report never silently leaves out what was asked. A payment another
bank sent or receives is answered as if it did not exist, and so is a payment named by
the other agent's references.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from deltran.db.tables import Obligation, Payment
from deltran.errors import Forbidden, NotFound, Refused
from deltran.identity import normalize_bic
from deltran.iso20022.pacs028 import RequestedTransaction, StatusRequest
from deltran.payment_references import (
    PaymentReferences,
    obligation_id_in_transaction_id,
    payment_id_in_message_id,
    references_for,
)
from deltran.vocabulary import ObligationLeg

# One report answers at most this many payments (a pacs.008 carries at most 1,000).
MAX_REPORTED = 1000
# Transactions named in a 404, at most (and how many more).
MAX_LISTED = 100


@dataclass(frozen=True)
class RequestedPayment:
    payment: Payment
    references: PaymentReferences  # as the asking bank knows the payment


async def requested_payments(session: AsyncSession, bic: str, request: StatusRequest) -> list[RequestedPayment]:
    """The payments `request` asks about that `bic` sends or receives, each once: in the
    order of the transactions asked about, or as recorded for a whole message. NotFound
    naming every transaction (or the message) that finds none; Forbidden when the request
    speaks for another bank; Refused when it names too many payments."""
    _check_instructing_agent(request.instructing_agent_bic, bic)
    rows = (await session.execute(_candidates(bic, request))).all()
    if len(rows) > MAX_REPORTED:
        raise _too_many()
    original = request.original_message
    found = []
    for payment, source_leg, target_leg in rows:
        # The creditor agent knows a cross-currency payment by the leg that credited it.
        credited_by_target = target_leg is not None and bic == payment.creditor_agent_bic
        refs = references_for(payment, target_leg if credited_by_target else source_leg, bic)
        if original is None or refs.message_id == original.message_id:
            found.append(RequestedPayment(payment, refs))
    if not request.transactions:
        assert original is not None  # the reader refuses a request that names nothing
        if not found:
            raise NotFound(
                f"no payment of message {original.message_id} that you send or receive",
                kind="payment-not-found",
                errors=[{"field": "OrgnlGrpInf/OrgnlMsgId", "message": "names no payment of yours"}],
            )
        return found
    by_e2e: dict[str, list[RequestedPayment]] = defaultdict(list)
    by_tx_id: dict[str | None, list[RequestedPayment]] = defaultdict(list)
    for p in found:
        by_e2e[p.references.end_to_end_id].append(p)
        by_tx_id[p.references.transaction_id].append(p)
    answered: dict[uuid.UUID, RequestedPayment] = {}
    missing = []
    for n, transaction in enumerate(request.transactions):
        matches = [p for p in _named_by(transaction, by_e2e, by_tx_id) if _matches(p.references, transaction)]
        if not matches:
            missing.append(n)
        for match in matches:
            answered.setdefault(match.payment.id, match)
    if missing:
        errors = [{"field": f"TxInf[{n}]", "message": "names no payment you send or receive"} for n in missing]
        if len(missing) > MAX_LISTED:
            errors = errors[:MAX_LISTED] + [{"field": "TxInf", "message": f"... and {len(missing) - MAX_LISTED} more"}]
        raise NotFound(
            f"{len(missing)} of the {len(request.transactions)} transactions asked about name no payment of yours",
            kind="payment-not-found",
            errors=errors,
        )
    return list(answered.values())


def _check_instructing_agent(instructing_agent_bic: str | None, bic: str) -> None:
    if instructing_agent_bic is None:
        return
    try:
        named = normalize_bic(instructing_agent_bic)
    except ValueError:
        named = instructing_agent_bic
    if named != bic:
        raise Forbidden(
            f"a bank may only ask as itself ({bic}); the request's instructing agent is {instructing_agent_bic}",
            kind="not-your-bic",
            errors=[{"field": "GrpHdr/InstgAgt", "message": f"must be {bic} (the caller) or absent"}],
        )


def _named_by(
    transaction: RequestedTransaction,
    by_e2e: dict[str, list[RequestedPayment]],
    by_tx_id: dict[str | None, list[RequestedPayment]],
) -> list[RequestedPayment]:
    if transaction.end_to_end_id is not None:
        return by_e2e.get(transaction.end_to_end_id, [])
    return by_tx_id.get(transaction.transaction_id, [])


def _matches(references: PaymentReferences, transaction: RequestedTransaction) -> bool:
    return (transaction.end_to_end_id is None or transaction.end_to_end_id == references.end_to_end_id) and (
        transaction.transaction_id is None or transaction.transaction_id == references.transaction_id
    )


def _too_many() -> Refused:
    return Refused(
        f"the request names more than {MAX_REPORTED} payments; one report answers at most {MAX_REPORTED}",
        kind="too-many-payments",
        errors=[{"field": "body", "message": "ask by transaction (TxInf), or about fewer"}],
    )


def _candidates(bic: str, request: StatusRequest):
    """The payments of `bic`'s that the request's references could name, each key by an
    index and on the side whose reference it is (the sender's MsgId and TxId for the
    debtor agent, the forwarded ones for the creditor agent), with their obligations. At
    most MAX_REPORTED + 1 rows: more is refused."""
    e2e_ids = sorted({t.end_to_end_id for t in request.transactions if t.end_to_end_id is not None})
    tx_ids = sorted({t.transaction_id for t in request.transactions if t.end_to_end_id is None and t.transaction_id})
    as_debtor: list[ColumnElement[bool]] = []
    as_creditor: list[ColumnElement[bool]] = []
    if e2e_ids:
        either = Payment.end_to_end_id.in_(e2e_ids)
        as_debtor.append(either)
        as_creditor.append(either)
    if tx_ids:
        as_debtor.append(Payment.transaction_id.in_(tx_ids))
        obligation_ids = [o for t in tx_ids if (o := obligation_id_in_transaction_id(t)) is not None]
        if obligation_ids:
            as_creditor.append(Payment.id.in_(select(Obligation.payment_id).where(Obligation.id.in_(obligation_ids))))
    if not request.transactions and request.original_message is not None:
        message_id = request.original_message.message_id
        as_debtor.append(Payment.message_id == message_id)
        if (payment_id := payment_id_in_message_id(message_id)) is not None:
            # A JSON payment's stand-in MsgId (its id) for its sender, "DTF" + id for its receiver.
            if message_id == payment_id.hex:
                as_debtor.append(and_(Payment.id == payment_id, Payment.message_id.is_(None)))
            else:
                as_creditor.append(Payment.id == payment_id)
    sides = []  # the reader guarantees a reference on at least one side
    if as_debtor:
        sides.append(and_(Payment.debtor_agent_bic == bic, or_(*as_debtor)))
    if as_creditor:
        sides.append(and_(Payment.creditor_agent_bic == bic, or_(*as_creditor)))
    source, target = aliased(Obligation), aliased(Obligation)
    return (
        select(Payment, source.id, target.id)
        .outerjoin(source, and_(source.payment_id == Payment.id, source.leg == ObligationLeg.SOURCE))
        .outerjoin(target, and_(target.payment_id == Payment.id, target.leg == ObligationLeg.TARGET))
        .where(or_(*sides))
        .order_by(Payment.created_at, Payment.id)
        .limit(MAX_REPORTED + 1)
    )
