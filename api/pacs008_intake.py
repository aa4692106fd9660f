"""pacs.008 → payments: one per CdtTrfTxInf, each from the authenticated bank only."""

from __future__ import annotations

import uuid

from api.problems import Problem
from deltran.identity import normalize_bic
from deltran.intake.payments import FxStated, NewPayment
from deltran.iso20022.pacs008 import Pacs008Message

MESSAGE_NAME = "pacs.008.001.08"


def payments_from_pacs008(message: Pacs008Message, caller_bic: str) -> list[NewPayment]:
    """Map a validated message; 403 unless the bank that sent it is the instructing
    agent (AppHdr sender, InstgAgt) and the debtor agent of every transaction."""
    wrong: list[dict] = []
    if message.app_header_from_bic and normalize_bic(message.app_header_from_bic) != caller_bic:
        wrong.append({"field": "AppHdr/Fr", "message": f"sender {message.app_header_from_bic} is not {caller_bic}"})
    for tx in message.transactions:
        for field, bic in (("InstgAgt", tx.instructing_agent_bic), ("DbtrAgt", tx.debtor_agent_bic)):
            if bic is not None and normalize_bic(bic) != caller_bic:
                wrong.append(
                    {
                        "field": f"CdtTrfTxInf[{tx.index}]/{field}",
                        "transaction": tx.index,
                        "message": f"{bic} is not the authenticated bank {caller_bic}",
                    }
                )
    if wrong:
        raise Problem(
            403, f"a bank may only instruct payments as itself ({caller_bic})", kind="not-your-bic", errors=wrong
        )
    return [
        NewPayment(
            instructing_bic=caller_bic,
            end_to_end_id=tx.end_to_end_id,
            # Cross-currency: the payment is its source side; the target side and the
            # rate are checked against the debtor agent's quote (deltran/intake/payments.py).
            amount=tx.instructed_amount if tx.instructed_amount is not None else tx.amount,
            currency=tx.instructed_currency or tx.currency,
            debtor_name=tx.debtor_name,
            debtor_iban=tx.debtor_iban,
            debtor_account=tx.debtor_account,
            debtor_agent_bic=normalize_bic(tx.debtor_agent_bic),
            creditor_name=tx.creditor_name,
            creditor_iban=tx.creditor_iban,
            creditor_account=tx.creditor_account,
            creditor_agent_bic=normalize_bic(tx.creditor_agent_bic),
            remittance_info=tx.remittance_info,
            uetr=uuid.UUID(tx.uetr) if tx.uetr else None,
            instruction_id=tx.instruction_id,
            transaction_id=tx.transaction_id,
            settlement_date=tx.settlement_date,
            charge_bearer=tx.charge_bearer,
            urgent=tx.urgent,
            fx_stated=(
                FxStated(target_amount=tx.amount, target_currency=tx.currency, rate=tx.exchange_rate)
                if tx.instructed_currency is not None
                else None
            ),
            source_format=MESSAGE_NAME,
            message_id=message.message_id,
        )
        for tx in message.transactions
    ]
