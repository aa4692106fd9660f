"""Errors that end a step for good. Business outcomes that no retry can change are
non-retryable application errors; anything else (a dropped connection, a timeout,
Postgres restarting) is left to Temporal's retry policy."""

from temporalio.exceptions import ApplicationError

MINT_REFUSED = "MintRefused"
OBLIGATION_RELEASED = "ObligationReleased"
PAYMENT_NOT_FOUND = "PaymentNotFound"
OBLIGATION_NOT_IN_WINDOW = "ObligationNotInWindow"
# Retryable: minting of the currency is stopped until an admin closes its breaker.
CIRCUIT_BREAKER_OPEN = "CircuitBreakerOpen"

NON_RETRYABLE_ERROR_TYPES = [MINT_REFUSED, OBLIGATION_RELEASED, PAYMENT_NOT_FOUND, OBLIGATION_NOT_IN_WINDOW]


def mint_refused(reason: str) -> ApplicationError:
    return ApplicationError(f"mint refused: {reason}", type=MINT_REFUSED, non_retryable=True)


def obligation_released(obligation_id: object) -> ApplicationError:
    return ApplicationError(
        f"obligation {obligation_id} was released; it can no longer settle",
        type=OBLIGATION_RELEASED,
        non_retryable=True,
    )


def payment_not_found(payment_id: object) -> ApplicationError:
    return ApplicationError(f"payment {payment_id} does not exist", type=PAYMENT_NOT_FOUND, non_retryable=True)


def breaker_open_error(currency: str) -> ApplicationError:
    # Retryable on purpose: the payment waits, retrying, until the breaker closes.
    return ApplicationError(
        f"circuit breaker open for {currency}: minting is stopped until the reconciliation"
        " break is resolved and an admin closes it",
        type=CIRCUIT_BREAKER_OPEN,
    )
