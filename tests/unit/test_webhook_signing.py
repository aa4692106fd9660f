"""Webhook signatures (Standard Webhooks): they verify, they break when anything signed
changes, and they are the spec's HMAC, not just whatever the library does."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from deltran.webhooks.signing import WebhookVerificationError, new_secret, signed_headers, verify

BODY = b'{"event":"payment.settled","amount_minor":125000,"note":"caf\xc3\xa9"}'


def _now() -> datetime:
    # The library refuses timestamps more than five minutes from its own clock.
    return datetime.now(UTC)


def test_secret_format():
    secret = new_secret()
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{43}=", secret)
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    assert new_secret() != secret


def test_round_trip():
    secret = new_secret()
    headers = signed_headers(secret, "evt_1", _now(), BODY)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-id"] == "evt_1"
    verify(secret, headers, BODY)


def test_header_names_are_case_insensitive_for_the_receiver():
    secret = new_secret()
    headers = {k.title(): v for k, v in signed_headers(secret, "evt_1", _now(), BODY).items()}
    verify(secret, headers, BODY)


def test_signature_is_the_specs_hmac():
    secret = new_secret()
    timestamp = datetime(2026, 3, 1, 12, 30, 45, 999_000, tzinfo=UTC)
    headers = signed_headers(secret, "evt_42", timestamp, BODY)

    seconds = int(timestamp.timestamp())  # whole seconds, rounded down
    assert headers["webhook-timestamp"] == str(seconds) == "1772368245"
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = b"evt_42." + str(seconds).encode() + b"." + BODY
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"] == f"v1,{expected}"


def test_a_timestamp_in_another_zone_is_the_same_instant():
    secret = new_secret()
    utc = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    dubai = utc.astimezone(timezone(timedelta(hours=4)))
    assert signed_headers(secret, "evt_1", dubai, BODY) == signed_headers(secret, "evt_1", utc, BODY)


def test_naive_timestamp_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        signed_headers(new_secret(), "evt_1", datetime(2026, 3, 1, 12, 0), BODY)


def test_tampered_body_fails():
    secret = new_secret()
    headers = signed_headers(secret, "evt_1", _now(), BODY)
    with pytest.raises(WebhookVerificationError):
        verify(secret, headers, BODY.replace(b"125000", b"925000"))


def test_tampered_id_fails():
    secret = new_secret()
    headers = signed_headers(secret, "evt_1", _now(), BODY)
    with pytest.raises(WebhookVerificationError):
        verify(secret, {**headers, "webhook-id": "evt_2"}, BODY)


def test_tampered_timestamp_fails():
    secret = new_secret()
    headers = signed_headers(secret, "evt_1", _now(), BODY)
    # One second later: still inside the library's five-minute window, so only the
    # signature can refuse it.
    later = str(int(headers["webhook-timestamp"]) + 1)
    with pytest.raises(WebhookVerificationError):
        verify(secret, {**headers, "webhook-timestamp": later}, BODY)


def test_another_secret_fails():
    headers = signed_headers(new_secret(), "evt_1", _now(), BODY)
    with pytest.raises(WebhookVerificationError):
        verify(new_secret(), headers, BODY)


def test_stale_delivery_fails():
    secret = new_secret()
    headers = signed_headers(secret, "evt_1", _now() - timedelta(minutes=10), BODY)
    with pytest.raises(WebhookVerificationError):
        verify(secret, headers, BODY)


def test_missing_signature_fails():
    secret = new_secret()
    headers = signed_headers(secret, "evt_1", _now(), BODY)
    del headers["webhook-signature"]
    with pytest.raises(WebhookVerificationError):
        verify(secret, headers, BODY)
