"""Alembic environment: runs migrations on an async engine (Alembic's async template).

The database URL comes from the caller (`deltran migrate` sets it on the config) or
from DELTRAN_DATABASE_URL / the local stack's default.
"""

import asyncio

from alembic import context
from sqlalchemy.ext.asyncio import create_async_engine

from deltran.config import get_settings
from deltran.db.tables import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or get_settings().effective_database_url


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_online() -> None:
    engine = create_async_engine(_url())
    async with engine.connect() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
