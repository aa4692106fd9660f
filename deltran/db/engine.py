"""One async engine and session factory per process."""

from __future__ import annotations

from sqlalchemy import event, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine


def make_engine(url: str, *, pool_size: int = 20) -> AsyncEngine:
    """A pool whose connections are checked as they leave it, for free: a connection the
    server closed (PostgreSQL restarted) is replaced before anyone uses it. SQLAlchemy's
    pool_pre_ping would ask the server instead — BEGIN, a query and ROLLBACK, three round
    trips per checkout, about a tenth of all of a payment's round trips (docs/capacity.md).
    A connection that dies silently (no FIN: a partition) fails its first use; the
    worker's retries and the API's 503 cover that, and SQLAlchemy then renews the pool."""
    asyncpg = make_url(url).get_driver_name() == "asyncpg"  # the check is asyncpg's
    engine = create_async_engine(url, pool_size=pool_size, max_overflow=10, pool_pre_ping=not asyncpg)
    if asyncpg:
        event.listen(engine.sync_engine, "checkout", _replace_if_closed)
    return engine


def _replace_if_closed(dbapi_connection, connection_record, connection_proxy) -> None:
    # asyncpg notices the server's close on the event loop, between uses; raising
    # DisconnectionError makes the pool reconnect this slot (SQLAlchemy tries twice).
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("the server closed this pooled connection")


def make_session_factory(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False)
