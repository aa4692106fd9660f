"""Typed search attributes every payment workflow carries, so ops can find a payment
in the Temporal UI (e.g. `EndToEndId = "E2E-1"` or `PaymentStatus = "AWAITING_SETTLEMENT"`).

They must be registered on the server before a workflow upserts them, or its workflow
task fails and retries forever: the dev stack and the tests register exactly these.
Safe to import inside the workflow sandbox (no I/O).
"""
from temporalio.common import SearchAttributeKey

END_TO_END_ID = SearchAttributeKey.for_keyword("EndToEndId")
DEBTOR_AGENT_BIC = SearchAttributeKey.for_keyword("DebtorAgentBic")
CREDITOR_AGENT_BIC = SearchAttributeKey.for_keyword("CreditorAgentBic")
PAYMENT_CURRENCY = SearchAttributeKey.for_keyword("PaymentCurrency")
# A search index for range queries in the UI ("PaymentAmount > 1000000"), never the
# amount of record: that is the NUMERIC column in Postgres and the Decimal in the workflow.
PAYMENT_AMOUNT = SearchAttributeKey.for_float("PaymentAmount")
PAYMENT_STATUS = SearchAttributeKey.for_keyword("PaymentStatus")
# NET (in a clearing window) or GROSS, as the liquidity router chose.
SETTLEMENT_MODE = SearchAttributeKey.for_keyword("SettlementMode")

ALL_KEYS = (
    END_TO_END_ID,
    DEBTOR_AGENT_BIC,
    CREDITOR_AGENT_BIC,
    PAYMENT_CURRENCY,
    PAYMENT_AMOUNT,
    PAYMENT_STATUS,
    SETTLEMENT_MODE,
)


def cli_flags() -> list[str]:
    """`--search-attribute Name=Type` flags for `temporal server start-dev`."""
    kinds = {"KEYWORD": "Keyword", "DOUBLE": "Double"}
    flags: list[str] = []
    for key in ALL_KEYS:
        flags += ["--search-attribute", f"{key.name}={kinds[key.indexed_value_type.name]}"]
    return flags
