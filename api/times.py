"""Times in query strings (`since`, `until`, `from`, `to`): an ISO 8601 date-time with its
UTC offset, within UTC's years. Pydantic alone would also take `1700000000` (seconds since
1970) and `20261207` (a 1970 date read the same way): a query time must look like one."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import BeforeValidator

_ISO_8601 = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
EXAMPLE = "2026-12-07T09:00:00Z"


def _looks_like_iso_8601(value: object) -> object:
    if isinstance(value, str) and _ISO_8601.match(value):
        return value
    raise ValueError(f"an ISO 8601 date-time with its UTC offset, e.g. {EXAMPLE}")


QueryTime = Annotated[datetime, BeforeValidator(_looks_like_iso_8601)]


def in_utc_range(at: datetime) -> bool:
    """Whether a time with an offset is still a datetime in UTC (the database driver
    converts it; 0001-01-01T00:00+01:00 would overflow there)."""
    try:
        at.astimezone(UTC)
    except OverflowError:
        return False
    return True


def time_problems(**times: datetime | None) -> list[tuple[str, str]]:
    """(parameter, message) for each given time without an offset or outside UTC's years."""
    problems = []
    for name, value in times.items():
        if value is not None and value.utcoffset() is None:
            problems.append((name, f"needs its UTC offset (e.g. {EXAMPLE})"))
        elif value is not None and not in_utc_range(value):
            problems.append((name, "is outside the years 1 to 9999 in UTC"))
    return problems
