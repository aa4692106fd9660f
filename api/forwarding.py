"""What DelTran sends a payment's creditor agent once its obligation has settled and the
tokens are credited: the payment forwarded as a pacs.008.001.08 (DelTran the instructing
agent of this leg, the creditor agent the instructed one), and the camt.054 of the
posting on the bank's token account. Both are built from what is stored, so asking again
gives the same message, byte for byte."""

from __future__ import annotations

from datetime import UTC

from deltran.db.tables import FxQuote, Payment
from deltran.domain.statements import Posting
from deltran.iso20022.pacs008 import Pacs008Spec, build_pacs008
from deltran.payment_references import forwarded_message_id, forwarding_uetr


def forwarded_pacs008(payment: Payment, credit: Posting, deltran_bic: str, quote: FxQuote | None = None) -> bytes:
    """The payment as DelTran forwards it, settled at `credit` (the creditor agent's
    posting): IntrBkSttlmDt its day, TxId the obligation (as in the camt.054 and the
    statement), InstrId DelTran's instruction for this leg. Cross-currency (`quote`):
    IntrBkSttlmAmt what the creditor agent received, InstdAmt what left the debtor agent,
    XchgRate the quote's."""
    assert credit.obligation_id is not None and credit.credit
    spec = Pacs008Spec(
        end_to_end_id=payment.end_to_end_id,
        amount=quote.target_amount if quote else payment.amount,
        currency=quote.target_currency if quote else payment.currency,
        instructed_amount=quote.source_amount if quote else None,
        instructed_currency=quote.source_currency if quote else None,
        exchange_rate=quote.rate if quote else None,
        debtor_name=payment.debtor_name,
        debtor_agent_bic=payment.debtor_agent_bic,
        creditor_name=payment.creditor_name,
        creditor_agent_bic=payment.creditor_agent_bic,
        debtor_iban=payment.debtor_iban,
        debtor_account=payment.debtor_account,
        creditor_iban=payment.creditor_iban,
        creditor_account=payment.creditor_account,
        uetr=forwarding_uetr(payment),
        instruction_id=credit.id.hex,
        transaction_id=credit.obligation_id.hex,
        remittance_info=payment.remittance_info,
        charge_bearer=payment.charge_bearer or "SHAR",
        settlement_date=credit.booked_at.astimezone(UTC).date(),
        urgent=payment.urgent,
    )
    return build_pacs008(
        [spec],
        message_id=forwarded_message_id(payment.id),
        instructing_agent_bic=deltran_bic,
        instructed_agent_bic=payment.creditor_agent_bic,
        created_at=credit.booked_at,
    )
