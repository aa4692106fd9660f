"""What the core refuses, in its own words: each error names its kind (a stable,
machine-readable slug) and, where it can, the fields at fault. The HTTP edge
(api/errors.py) turns each class into a problem document with its status; the CLI and
the worker read the same errors without knowing HTTP."""

from __future__ import annotations


class DomainError(Exception):
    """A request the core refuses. `errors`: [{"field", "message", …}] at fault."""

    def __init__(self, detail: str, *, kind: str, errors: list[dict] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.kind = kind
        self.errors = errors


class Malformed(DomainError):
    """The input cannot be read as what it claims to be (HTTP 400)."""


class Forbidden(DomainError):
    """The caller may not do this (HTTP 403)."""


class NotFound(DomainError):
    """What the request names does not exist (HTTP 404)."""


class Conflict(DomainError):
    """The request contradicts what is already recorded (HTTP 409)."""


class Refused(DomainError):
    """Well-formed, but against the rules (HTTP 422)."""


class ServiceUnavailable(Exception):
    """A dependency (Postgres, Temporal) is down: the caller should retry later; nothing
    accepted was lost (HTTP 503 with Retry-After)."""

    def __init__(self, dependency: str, detail: str) -> None:
        super().__init__(f"{dependency}: {detail}")
        self.dependency = dependency
        self.detail = detail
