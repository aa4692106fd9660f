"""Opaque keyset cursors for the newest-first lists: the (time, id) of the last item a
page returned, base64url-encoded JSON. Opaque to clients, so the position can change
form without breaking them; tampering only moves the position, since every list applies
the caller's own visibility on top. A cursor that does not decode is a 400."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from api.problems import Problem


@dataclass(frozen=True)
class Position:
    """Where the next page starts: strictly before (at, id) in newest-first order."""

    at: datetime
    id: uuid.UUID


def encode(position: Position) -> str:
    raw = json.dumps([position.at.isoformat(), str(position.id)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str) -> Position:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, id_ = json.loads(raw)
        position = Position(at=datetime.fromisoformat(at), id=uuid.UUID(id_))
    except (binascii.Error, ValueError, TypeError, AttributeError):
        raise Problem(400, "cursor is not one this API returned", kind="invalid-cursor") from None
    if position.at.utcoffset() is None or not in_utc_range(position.at):
        raise Problem(400, "cursor is not one this API returned", kind="invalid-cursor")
    return position


def in_utc_range(at: datetime) -> bool:
    """Whether a time with an offset is still a datetime in UTC (the database driver
    converts it; 0001-01-01T00:00+01:00 would overflow there)."""
    try:
        at.astimezone(UTC)
    except OverflowError:
        return False
    return True
