"""Dependency outages: the API answers 503 with Retry-After, never 500 or a hang."""
from fastapi import Request
from fastapi.responses import JSONResponse

from api.problems import problem_response

RETRY_AFTER_S = 5


class ServiceUnavailable(Exception):
    """A dependency (Postgres, Temporal) is down: the client should retry later."""

    def __init__(self, dependency: str, detail: str) -> None:
        super().__init__(f"{dependency}: {detail}")
        self.dependency = dependency
        self.detail = detail


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
    return await service_unavailable_handler(
        request, ServiceUnavailable("database", type(exc).__name__)
    )
