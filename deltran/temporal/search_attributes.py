"""Typed search attributes every payment workflow carries, so ops can find a payment
in the Temporal UI (e.g. `EndToEndId = "E2E-1"` or `PaymentStatus = "AWAITING_SETTLEMENT"`).

They must be registered on the server before a workflow upserts them, or its workflow
task fails and retries forever: the dev stack and the tests register exactly these.
Safe to import inside the workflow sandbox (no I/O).
"""

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

from deltran.shared import PaymentInput
from deltran.vocabulary import PaymentStatus

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


def initial_search_attributes(data: PaymentInput) -> TypedSearchAttributes:
    """Set when the workflow starts, so the payment is searchable from its first event."""
    return TypedSearchAttributes(
        [
            SearchAttributePair(END_TO_END_ID, data.end_to_end_id),
            SearchAttributePair(DEBTOR_AGENT_BIC, data.debtor_agent_bic),
            SearchAttributePair(CREDITOR_AGENT_BIC, data.creditor_agent_bic),
            SearchAttributePair(PAYMENT_CURRENCY, data.currency),
            SearchAttributePair(PAYMENT_AMOUNT, float(data.amount)),
            SearchAttributePair(PAYMENT_STATUS, PaymentStatus.SCREENING.value),
        ]
    )


def cli_flags() -> list[str]:
    """`--search-attribute Name=Type` flags for `temporal server start-dev`."""
    kinds = {"KEYWORD": "Keyword", "DOUBLE": "Double"}
    flags: list[str] = []
    for key in ALL_KEYS:
        flags += ["--search-attribute", f"{key.name}={kinds[key.indexed_value_type.name]}"]
    return flags
