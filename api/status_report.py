"""pacs.002 for stored payments: their status as an ISO 20022 status report, written in
the references of the bank it goes to (deltran/payment_references.py)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from deltran.db.tables import FxQuote, Payment
from deltran.iso20022.pacs002 import StatusReport, build_pacs002, build_pacs002_report, transaction_status_for
from deltran.payment_references import PaymentReferences, references_for


def pacs002_for(payment: Payment, reporter_bic: str, quote: FxQuote | None = None) -> bytes:
    """The payment's status for the bank that sent it (`quote`: a cross-currency one's)."""
    header = _header(reporter_bic, payment.instructing_bic)
    refs = references_for(payment, None, payment.debtor_agent_bic)
    return build_pacs002(_report(header, payment, refs, quote))


def status_report_for(
    payments: Sequence[tuple[Payment, PaymentReferences]],
    reporter_bic: str,
    to_bic: str,
    quotes: Mapping[uuid.UUID, FxQuote] | None = None,
) -> bytes:
    """One report of several payments' status, for `to_bic`, each in its references
    (`quotes`: the cross-currency ones', by payment)."""
    header = _header(reporter_bic, to_bic)
    quotes = quotes or {}
    return build_pacs002_report([_report(header, payment, refs, quotes.get(payment.id)) for payment, refs in payments])


async def fx_quotes_of(session: AsyncSession, payment_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, FxQuote]:
    """The quotes of those payments that are cross-currency, by payment (one query)."""
    if not payment_ids:
        return {}
    rows = await session.scalars(select(FxQuote).where(FxQuote.payment_id.in_(list(payment_ids))))
    return {q.payment_id: q for q in rows if q.payment_id is not None}


def _header(reporter_bic: str, to_bic: str) -> dict:
    now = datetime.now(UTC)
    return {
        "message_id": f"DT{now:%Y%m%d%H%M%S}{uuid.uuid4().hex[:16]}",
        "created_at": now,
        "instructing_agent_bic": reporter_bic,
        "instructed_agent_bic": to_bic,
    }


def _report(header: dict, payment: Payment, refs: PaymentReferences, quote: FxQuote | None) -> StatusReport:
    """Cross-currency, the pair as its pacs.008 stated it: IntrBkSttlmAmt the target side,
    Amt/InstdAmt the source side."""
    status, reason_code = transaction_status_for(payment.status, payment.rejection_code)
    return StatusReport(
        **header,
        original_message_id=refs.message_id,
        original_message_name=refs.message_name,
        original_end_to_end_id=refs.end_to_end_id,
        original_instruction_id=refs.instruction_id,
        original_transaction_id=refs.transaction_id,
        original_uetr=refs.uetr,
        status=status,
        reason_code=reason_code,
        reason_text=payment.rejection_reason if reason_code else None,
        acceptance_datetime=payment.created_at,
        settlement_amount=quote.target_amount if quote else payment.amount,
        currency=quote.target_currency if quote else payment.currency,
        instructed_amount=quote.source_amount if quote else None,
        instructed_currency=quote.source_currency if quote else None,
    )
