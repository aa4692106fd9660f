"""pacs.002 for a stored payment: its status as an ISO 20022 status report."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from deltran.db.tables import Payment
from deltran.iso20022.pacs002 import StatusReport, build_pacs002, transaction_status_for


def pacs002_for(payment: Payment, reporter_bic: str) -> bytes:
    status, reason_code = transaction_status_for(payment.status, payment.rejection_code)
    now = datetime.now(UTC)
    return build_pacs002(
        StatusReport(
            message_id=f"DT{now:%Y%m%d%H%M%S}{uuid.uuid4().hex[:16]}",
            created_at=now,
            instructing_agent_bic=reporter_bic,
            instructed_agent_bic=payment.instructing_bic,
            # A JSON submission has no MsgId: its payment id stands in for it.
            original_message_id=payment.message_id or str(payment.id).replace("-", "")[:35],
            original_message_name=(
                payment.source_format if payment.source_format != "json" else "deltran.payment.json"
            ),
            original_end_to_end_id=payment.end_to_end_id,
            original_instruction_id=payment.instruction_id,
            original_transaction_id=payment.transaction_id,
            original_uetr=str(payment.uetr) if payment.uetr else None,
            status=status,
            reason_code=reason_code,
            reason_text=payment.rejection_reason if reason_code else None,
            acceptance_datetime=payment.created_at,
            settlement_amount=payment.amount,
            currency=payment.currency,
        )
    )
