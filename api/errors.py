"""Errors the API turns into clear HTTP answers."""
from fastapi import Request
from fastapi.responses import JSONResponse

RETRY_AFTER_S = 5


class ServiceUnavailable(Exception):
    """A dependency (Postgres, Temporal) is down: the client should retry later."""

    def __init__(self, dependency: str, detail: str) -> None:
        super().__init__(f"{dependency}: {detail}")
        self.dependency = dependency
        self.detail = detail


async def service_unavailable_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceUnavailable)
    return JSONResponse(
        status_code=503,
        content={"detail": f"{exc.dependency} unavailable, retry later", "reason": exc.detail},
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


async def database_unavailable_handler(_: Request, exc: Exception) -> JSONResponse:
    return await service_unavailable_handler(_, ServiceUnavailable("database", type(exc).__name__))
