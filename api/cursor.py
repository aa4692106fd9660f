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
from datetime import datetime

from api.problems import Problem
from api.times import in_utc_range


@dataclass(frozen=True)
class Position:
    """Where the next page starts: strictly before (at, id) in newest-first order."""

    at: datetime
    id: uuid.UUID


def encode(position: Position) -> str:
    return pack([position.at.isoformat(), str(position.id)])


def decode(cursor: str) -> Position:
    try:
        at, id_ = unpack(cursor)
        return Position(at=parse_time(at), id=uuid.UUID(id_))
    except (ValueError, TypeError, AttributeError):
        raise invalid() from None


def pack(values: list) -> str:
    """JSON values as an opaque, URL-safe cursor."""
    raw = json.dumps(values, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def unpack(cursor: str) -> list:
    """What `pack` packed; a ValueError for anything else."""
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, UnicodeDecodeError) as error:
        raise ValueError(str(error)) from None
    if not isinstance(values, list):
        raise ValueError("not a cursor")
    return values


def parse_time(value: str) -> datetime:
    """A cursor's time: with its offset and within UTC's years, else a ValueError."""
    at = datetime.fromisoformat(value)
    if at.utcoffset() is None or not in_utc_range(at):
        raise ValueError("not a cursor time")
    return at


def invalid() -> Problem:
    return Problem(400, "cursor is not one this API returned", kind="invalid-cursor")
