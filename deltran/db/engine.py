"""One async engine and session factory per process."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine


def make_engine(url: str, *, pool_size: int = 20, pre_ping: bool = True) -> AsyncEngine:
    """`pre_ping` tests each connection as it leaves the pool (two round trips), so a
    connection PostgreSQL dropped (a restart) is replaced before a request uses it.
    Processes whose every transaction is retried (the worker's activities and loops) can
    skip it: the first use of a dead connection fails that attempt, SQLAlchemy then
    discards the pool's connections, and the retry gets a fresh one."""
    return create_async_engine(url, pool_size=pool_size, max_overflow=10, pool_pre_ping=pre_ping)


def make_session_factory(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False)
