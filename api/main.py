"""The DelTran HTTP API (FastAPI). `create_app` is what uvicorn and the tests run."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from sqlalchemy.exc import DBAPIError, InterfaceError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.body_limit import BodyLimitMiddleware
from api.errors import (
    database_unavailable_handler,
    domain_error_handler,
    driver_error_handler,
    service_unavailable_handler,
)
from api.observability import add_metrics
from api.problems import (
    Problem,
    ProblemDocument,
    http_exception_handler,
    problem_handler,
    unexpected_error_handler,
    validation_handler,
)
from api.rate_limit import RateLimiter
from api.routes import (
    accounts,
    admin,
    cancellations,
    clearing,
    events,
    fx,
    health,
    monitor,
    notifications,
    payments,
    redemptions,
    returns,
    status_requests,
    track,
    webhooks,
)
from api.schemas import PaymentIn
from api.temporal_connection import TemporalConnection
from deltran.config import Settings, get_settings
from deltran.db.engine import make_engine, make_session_factory
from deltran.errors import DomainError, ServiceUnavailable
from deltran.intake.payments import WorkflowStarts
from deltran.observability.tracing import setup_tracing

log = logging.getLogger("deltran.api")
# On shutdown, how long the workflow starts still in flight may take (then the sweeper's).
STARTS_DRAIN_S = 10.0

# Seconds a kept-alive connection may idle before the server closes it: longer than any
# client's or proxy's own idle limit (httpx 5 s, load balancers typically 60 s). At an
# equal limit the server closes a connection just as the client reuses it, and that
# client's request fails with a read error.
KEEP_ALIVE_S = 75


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        engine = make_engine(settings.effective_database_url)
        app.state.settings = settings
        app.state.sessions = make_session_factory(engine)
        # Single-statement reads (the API-key lookup of every request): no BEGIN/ROLLBACK
        # round trips around them. Same pool; the option is set per checkout.
        app.state.reads = make_session_factory(engine.execution_options(isolation_level="AUTOCOMMIT"))
        app.state.temporal = TemporalConnection(settings)
        app.state.rate_limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
        app.state.workflow_starts = WorkflowStarts()
        try:
            await app.state.temporal.get()
        except ServiceUnavailable:
            pass  # connect again on the first request that needs it; /healthz says why
        yield
        # Starts still in flight get a moment; any left are the sweeper's (the rows are committed).
        if left := await app.state.workflow_starts.drain(STARTS_DRAIN_S):
            log.warning("API stopping with %d payment workflow start(s) left to the sweeper", left)
        await engine.dispose()

    app = FastAPI(
        title="DelTran API",
        version="0.1.0",
        description=(
            "Clearing and settlement for cross-border interbank payments. Authenticate with"
            " `Authorization: Bearer <API key>`."
        ),
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    add_metrics(app)
    setup_tracing("deltran-api")
    FastAPIInstrumentor.instrument_app(app, excluded_urls="healthz,metrics")
    app.add_exception_handler(Problem, problem_handler)
    app.add_exception_handler(DomainError, domain_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_exception_handler)
    app.add_exception_handler(RequestValidationError, validation_handler)
    app.add_exception_handler(ServiceUnavailable, service_unavailable_handler)
    # A connection refused or dropped by Postgres is an outage, not a bug: 503, retry.
    app.add_exception_handler(OSError, database_unavailable_handler)
    app.add_exception_handler(InterfaceError, database_unavailable_handler)
    # PostgreSQL restarting (shutting down, starting up) or a connection it dropped: 503.
    app.add_exception_handler(DBAPIError, driver_error_handler)
    app.add_exception_handler(Exception, unexpected_error_handler)
    app.include_router(payments.router)
    app.include_router(accounts.router)
    app.include_router(events.router)
    app.include_router(webhooks.router)
    app.include_router(redemptions.router)
    app.include_router(notifications.router)
    app.include_router(status_requests.router)
    app.include_router(cancellations.router)
    app.include_router(returns.router)
    app.include_router(fx.router)
    app.include_router(track.router)
    app.include_router(health.router)
    app.include_router(clearing.router)
    app.include_router(admin.router)
    app.include_router(monitor.router)
    _document_payment_body(app)
    return app


def _document_payment_body(app: FastAPI) -> None:
    """POST /v1/payments reads its body itself (JSON or pacs.008 XML); put the JSON
    model, and the problem document every error carries, into the OpenAPI components."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = build()
            models = PaymentIn.model_json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(models.pop("$defs", {}))
            components["PaymentIn"] = models
            problem = ProblemDocument.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(problem.pop("$defs", {}))
            components["ProblemDocument"] = problem
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the schema
