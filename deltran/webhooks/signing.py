"""Signing webhook deliveries the Standard Webhooks way (standardwebhooks.com), with its
reference library: the receiving bank can verify with any Standard Webhooks library.

The signature is `v1,` + base64(HMAC-SHA256(secret, "{id}.{timestamp}.{body}")), where the
secret is the base64 after `whsec_` and the timestamp is in whole unix seconds.
"""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime
from math import floor

from standardwebhooks import Webhook, WebhookVerificationError

__all__ = ["WebhookVerificationError", "new_secret", "signed_headers", "verify"]

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def signed_headers(secret: str, event_id: str, timestamp: datetime, body: bytes) -> dict[str, str]:
    """The three headers that go with `body`. `timestamp` must be timezone-aware."""
    if timestamp.tzinfo is None:
        raise ValueError("the webhook timestamp must be timezone-aware")
    # In UTC before the library sees it: 1.1.0 replaces the tzinfo instead of converting,
    # and would sign 14:00+04:00 as 14:00 UTC.
    timestamp = timestamp.astimezone(UTC)
    # As str, not bytes: 1.1.0 formats the body into an f-string and would sign "b'...'".
    # Our bodies are JSON, so UTF-8; a str is signed as its UTF-8 bytes by every version.
    signature = Webhook(secret).sign(event_id, timestamp, body.decode("utf-8"))
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(floor(timestamp.timestamp())),
        "webhook-signature": signature,
    }


def verify(secret: str, headers: dict[str, str], body: bytes) -> None:
    """Raise WebhookVerificationError unless `headers` sign `body` with `secret`. The library
    also refuses a timestamp more than five minutes from now (replays), by the wall clock."""
    Webhook(secret).verify(body, headers, json_parse=False)
