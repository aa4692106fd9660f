"""Errors as RFC 9457 problem details (`application/problem+json`).

Every 4xx and 5xx the API sends has the same shape: `type`, `title`, `status`,
`detail`, `instance`, and for input errors an `errors` list that names each field.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

MEDIA_TYPE = "application/problem+json"
log = logging.getLogger("deltran.api")


class FieldProblem(BaseModel):
    field: str
    message: str
    transaction: int | None = None


class ProblemDocument(BaseModel):
    """RFC 9457 problem details, as every error response carries them."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldProblem] | None = None


_MEANING = {
    400: "Invalid message (reasons per field or transaction)",
    401: "No valid API key",
    403: "Not allowed for this caller",
    404: "Not found (or not visible to this caller)",
    406: "Cannot be written in the media type asked for (the other one has it)",
    409: "Conflicts with what exists",
    413: "Body too large",
    415: "Unsupported media type",
    422: "Invalid input (each field named)",
    429: "Rate limited (see Retry-After)",
    500: "Unexpected error",
    503: "A dependency is down (see Retry-After); nothing was lost",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, all problem documents. Every route
    also gets 401, 413, 429, 500 and 503, which any call can meet."""
    schema = {"schema": {"$ref": "#/components/schemas/ProblemDocument"}}
    return {
        status: {"description": _MEANING[status], "content": {MEDIA_TYPE: schema}}
        for status in sorted({*statuses, 401, 413, 429, 500, 503})
    }


class Problem(Exception):
    """Raise from a route to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        kind: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.kind = kind
        self.errors = errors
        self.headers = headers


def problem_response(
    request: Request,
    status: int,
    detail: str,
    *,
    kind: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    title = HTTPStatus(status).phrase
    body: dict[str, Any] = {
        # A URN we own: stable, dereferenceable by nobody, named by the problem's kind.
        "type": f"urn:deltran:problem:{kind or title.lower().replace(' ', '-')}",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    }
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


async def problem_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return problem_response(request, exc.status, exc.detail, kind=exc.kind, errors=exc.errors, headers=exc.headers)


async def http_exception_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    return problem_response(request, exc.status_code, detail, headers=getattr(exc, "headers", None))


async def validation_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [{"field": _field(error.get("loc", ())), "message": error.get("msg", "invalid")} for error in exc.errors()]
    fields = ", ".join(e["field"] for e in errors) or "the request body"
    return problem_response(request, 422, f"invalid request: check {fields}", kind="validation", errors=errors)


def _field(loc: tuple | list) -> str:
    """('body', 'debtor', 'iban') → 'debtor.iban'; ('body',) → 'body'."""
    parts = [str(p) for p in loc]
    if len(parts) > 1 and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(parts) or "body"


async def unexpected_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """A bug, not the client's fault: logged with its traceback, answered as a problem
    document that reveals nothing of the internals."""
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(request, 500, "an unexpected error occurred; it has been logged", kind="internal")
