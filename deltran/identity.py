"""Payment identity: the ids DelTran derives from what the instructing bank sent.

The instructing bank's BIC plus its EndToEndId identify a payment; from them come the
payment id and the workflow id, so a resubmission maps onto the same row and the same
workflow (and never starts a second one).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from schwifty import BIC

# Fixed namespace: payment ids must be stable across processes and releases.
_PAYMENT_NAMESPACE = uuid.UUID("6f1c0c4e-2d7a-4b8e-9a51-3c1f5d0e7a21")


def payment_id_for(instructing_bic: str, end_to_end_id: str) -> uuid.UUID:
    return uuid.uuid5(_PAYMENT_NAMESPACE, f"{instructing_bic.upper()}\x1f{end_to_end_id}")


def workflow_id_for(instructing_bic: str, end_to_end_id: str) -> str:
    return f"payment-{instructing_bic.upper()}-{end_to_end_id}"


def content_fingerprint(fields: dict[str, Any]) -> str:
    """SHA-256 over a canonical JSON of the payment's content: the same EndToEndId with a
    different fingerprint is a conflicting resubmission (409), not a duplicate."""
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def normalize_bic(bic: str) -> str:
    """A BIC as DelTran stores and compares it: upper case, and 8 characters for a head
    office (the "XXX" branch code dropped), so EBILAEAD and EBILAEADXXX are one bank.
    Raises a ValueError (schwifty's) for a BIC that is not valid."""
    compact = str(BIC(bic.strip()))
    return compact[:8] if compact.endswith("XXX") else compact
