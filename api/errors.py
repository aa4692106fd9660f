"""The core's errors at the HTTP edge: each domain error becomes a problem document
with its status; a dependency outage a 503 with Retry-After, never a 500 or a hang."""

from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError

from api.problems import problem_response, unexpected_error_handler
from deltran.errors import Conflict, DomainError, Forbidden, Malformed, NotFound, Refused, ServiceUnavailable

RETRY_AFTER_S = 5

STATUS = {Malformed: 400, Forbidden: 403, NotFound: 404, Conflict: 409, Refused: 422}


async def domain_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    status = next((code for cls, code in STATUS.items() if isinstance(exc, cls)), 422)
    return problem_response(request, status, exc.detail, kind=exc.kind, errors=exc.errors)


async def service_unavailable_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceUnavailable)
    return problem_response(
        request,
        503,
        f"{exc.dependency} is unavailable ({exc.detail}); nothing was lost, retry later",
        kind="dependency-unavailable",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


async def database_unavailable_handler(request: Request, exc: Exception) -> JSONResponse:
    return await service_unavailable_handler(request, ServiceUnavailable("database", type(exc).__name__))


# PostgreSQL shutting down (admin or crash) or still starting up: an outage, not a bug.
_SERVER_UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03"})


def database_outage(exc: DBAPIError) -> bool:
    """Whether a driver error means the database is (briefly) not there. Pure."""
    return exc.connection_invalidated or getattr(exc.orig, "sqlstate", None) in _SERVER_UNAVAILABLE_SQLSTATES


async def driver_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DBAPIError)
    if database_outage(exc):
        return await database_unavailable_handler(request, exc)
    return await unexpected_error_handler(request, exc)
