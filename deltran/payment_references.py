"""What each of a payment's two agents knows it by.

The debtor agent by what it sent: its pacs.008's MsgId, InstrId and TxId (a JSON
submission has no MsgId: its payment id stands in), its EndToEndId and UETR. The creditor
agent by what DelTran forwarded to it (api/forwarding.py): MsgId "DTF" + the payment id,
TxId the obligation, and a UETR on every leg (derived from the payment id when the
payment came without one). Status requests are matched, and status reports written, in
the asking agent's references.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from deltran.db.tables import Payment

FORWARDED_MESSAGE_NAME = "pacs.008.001.08"
_FORWARDED_PREFIX = "DTF"
JSON_MESSAGE_NAME = "deltran.payment.json"


@dataclass(frozen=True)
class PaymentReferences:
    message_id: str
    message_name: str
    end_to_end_id: str
    instruction_id: str | None
    transaction_id: str | None
    uetr: str | None


def forwarding_uetr(payment: Payment) -> str:
    """The payment's UETR; for one submitted without, a UUIDv4 DelTran derives from the
    payment's id (the same every time; CBPR+ wants a UETR on every leg)."""
    if payment.uetr is not None:
        return str(payment.uetr)
    return str(uuid.UUID(bytes=payment.id.bytes, version=4))


def forwarded_message_id(payment_id: uuid.UUID) -> str:
    return _FORWARDED_PREFIX + payment_id.hex


def payment_id_in_message_id(message_id: str) -> uuid.UUID | None:
    """The payment a forwarded MsgId ("DTF" + id) or a JSON submission's stand-in (the id
    itself, 32 hex digits) names, else None."""
    candidate = message_id.removeprefix(_FORWARDED_PREFIX)
    return _hex_uuid(candidate)


def obligation_id_in_transaction_id(transaction_id: str) -> uuid.UUID | None:
    """The obligation a forwarded TxId (its id, 32 hex digits) names, else None."""
    return _hex_uuid(transaction_id)


def references_for(payment: Payment, obligation_id: uuid.UUID | None, bic: str) -> PaymentReferences:
    """The payment as `bic` (one of its two agents) knows it."""
    if bic == payment.debtor_agent_bic:
        return PaymentReferences(
            message_id=payment.message_id or payment.id.hex,
            message_name=payment.source_format if payment.source_format != "json" else JSON_MESSAGE_NAME,
            end_to_end_id=payment.end_to_end_id,
            instruction_id=payment.instruction_id,
            transaction_id=payment.transaction_id,
            uetr=str(payment.uetr) if payment.uetr else None,
        )
    return PaymentReferences(
        message_id=forwarded_message_id(payment.id),
        message_name=FORWARDED_MESSAGE_NAME,
        end_to_end_id=payment.end_to_end_id,
        instruction_id=None,
        transaction_id=obligation_id.hex if obligation_id is not None else None,
        uetr=forwarding_uetr(payment),
    )


def _hex_uuid(text: str) -> uuid.UUID | None:
    if len(text) != 32:
        return None
    try:
        return uuid.UUID(hex=text)
    except ValueError:
        return None
