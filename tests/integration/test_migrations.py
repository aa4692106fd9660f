"""Alembic migrations on a fresh database: upgrade to head creates the schema the code
queries (deltran/db/tables.py), downgrade to base removes it, upgrade works again.

Sync tests on purpose: migrate.upgrade/downgrade run their own event loop (asyncio.run).
"""

from __future__ import annotations

import asyncio
import re
import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import CheckConstraint, text
from sqlalchemy.ext.asyncio import create_async_engine

from deltran.db import migrate
from deltran.db.tables import Base

APP_TABLES = set(Base.metadata.tables)


def _run(coro):
    return asyncio.run(coro)


async def _query(url: str, sql: str) -> list[tuple]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return [tuple(row) for row in await conn.execute(text(sql))]
    finally:
        await engine.dispose()


def tables(url: str) -> set[str]:
    rows = _run(
        _query(
            url,
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
        )
    )
    return {name for (name,) in rows}


def constraints(url: str) -> set[str]:
    rows = _run(
        _query(
            url,
            "SELECT conname FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace"
            " WHERE n.nspname = 'public'",
        )
    )
    return {name for (name,) in rows}


def indexes(url: str) -> set[str]:
    rows = _run(_query(url, "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'"))
    return {name for (name,) in rows}


def version(url: str) -> list[str]:
    return [v for (v,) in _run(_query(url, "SELECT version_num FROM alembic_version"))]


def schema_drift(url: str) -> list:
    """What autogenerate would change to make the database match tables.py."""

    async def compare():
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(
                    lambda sync_conn: compare_metadata(MigrationContext.configure(sync_conn), Base.metadata)
                )
        finally:
            await engine.dispose()

    return _run(compare())


@pytest.fixture
def fresh_url(postgres) -> str:
    name = f"migtest_{uuid.uuid4().hex[:12]}"
    postgres.create_database(name)
    base, _, _ = postgres.url.rpartition("/")
    return f"{base}/{name}"


def test_fresh_database_is_empty(fresh_url):
    assert tables(fresh_url) == set()


def test_upgrade_downgrade_upgrade(fresh_url):
    head = ScriptDirectory.from_config(migrate.alembic_config(fresh_url)).get_current_head()
    assert head is not None

    migrate.upgrade(fresh_url)
    assert tables(fresh_url) == APP_TABLES | {"alembic_version"}
    assert version(fresh_url) == [head]
    # The guards the money paths rely on are in the database, not only in the models.
    assert {
        "uq_tokens_obligation_id",
        "ck_accounts_balance_not_negative",
        "ck_obligations_settled_has_references",
        "uq_payments_sender_identity",
        "uq_ledger_transfers_idempotency_key",
        "uq_bank_notifications_entry",
        "uq_accounts_owner",
        "ck_payments_distinct_agents",
        "ck_obligations_distinct_parties",
    } <= constraints(fresh_url)
    assert {
        "uq_bank_notifications_matched_payment",
        "uq_clearing_windows_open_currency",
    } <= indexes(fresh_url)

    # Upgrading an up-to-date database is a no-op.
    migrate.upgrade(fresh_url)
    assert version(fresh_url) == [head]

    migrate.downgrade(fresh_url, "base")
    remaining = tables(fresh_url)
    assert remaining & APP_TABLES == set()
    assert remaining <= {"alembic_version"}
    assert version(fresh_url) == []

    migrate.upgrade(fresh_url)
    assert tables(fresh_url) == APP_TABLES | {"alembic_version"}
    assert version(fresh_url) == [head]


def test_migrations_match_the_models(fresh_url):
    migrate.upgrade(fresh_url)
    assert schema_drift(fresh_url) == []


def test_url_with_percent_encoded_password_survives_config():
    # configparser interpolation would choke on a bare "%".
    url = "postgresql+asyncpg://user:p%40ss%25word@127.0.0.1:5432/db"
    cfg = migrate.alembic_config(url)
    assert cfg.get_main_option("sqlalchemy.url") == url


def test_every_enum_check_in_the_database_allows_exactly_the_vocabulary(fresh_url):
    """The CHECK constraints of the models are generated from deltran/vocabulary.py; the
    migrations wrote them by hand. Both must allow exactly the same values."""
    migrate.upgrade(fresh_url)
    try:
        in_database = {
            name: set(re.findall(r"'([^']*)'", definition))
            for name, definition in _run(
                _query(fresh_url, "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE contype = 'c'")
            )
        }
        generated = {
            c.name: set(re.findall(r"'([^']*)'", str(c.sqltext)))
            for table in Base.metadata.sorted_tables
            for c in table.constraints
            if isinstance(c, CheckConstraint) and " IN (" in str(c.sqltext)
        }
        assert len(generated) >= 12
        assert {name: in_database.get(name) for name in generated} == generated
    finally:
        migrate.downgrade(fresh_url, "base")


async def _seed_stranded_entries(url: str, entries: dict[uuid.UUID, tuple[str, str]]) -> None:
    """One bank, two rejected payments (one of them a sanctions hit, RR04), a window's
    funding instruction, and per entry id (outcome, what it names: "payment", "frozen"
    or "funding") a booked credit."""
    bank, message, window = (uuid.uuid4() for _ in range(3))
    names = {"payment": uuid.uuid4(), "frozen": uuid.uuid4(), "funding": uuid.uuid4()}
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            for sql, params in (
                ("INSERT INTO participants (id, bic, name, country) VALUES (:id, 'OLDBAEAD', 'Old Bank', 'AE')",
                 {"id": bank}),
                *(
                    ("INSERT INTO payments (id, instructing_bic, end_to_end_id, fingerprint, amount, currency,"
                     " debtor_name, debtor_account, debtor_agent_bic, creditor_name, creditor_account,"
                     " creditor_agent_bic, status, rejection_code, workflow_id)"
                     " VALUES (:id, 'OLDBAEAD', :e2e, 'f', 10, 'AED', 'D', '1', 'OLDBAEAD', 'C', '2',"
                     " 'SBININBB', 'REJECTED', :code, :wf)",
                     {"id": names[kind], "e2e": f"OLD-{kind}", "code": code, "wf": f"payment-old-{kind}"})
                    for kind, code in (("payment", None), ("frozen", "RR04"))
                ),
                ("INSERT INTO camt054_messages (id, message_id, body_sha256, body) VALUES (:id, 'M-OLD', 'f', '')",
                 {"id": message}),
                ("INSERT INTO clearing_windows (id, currency, status) VALUES (:id, 'AED', 'SETTLED')", {"id": window}),
                ("INSERT INTO funding_instructions (id, window_id, participant_id, amount, currency, reference, status)"
                 " VALUES (:id, :w, :b, 10, 'AED', 'FUND-OLD', 'EXPIRED')",
                 {"id": names["funding"], "w": window, "b": bank}),
            ):  # fmt: skip
                await conn.execute(text(sql), params)
            for i, (entry, (outcome, names_what)) in enumerate(entries.items()):
                await conn.execute(
                    text(
                        "INSERT INTO bank_notifications (id, message_row_id, account, entry_reference, tx_index,"
                        " end_to_end_id, amount, currency, credit_debit, entry_status, outcome, payment_id,"
                        " funding_instruction_id)"
                        " VALUES (:id, :m, 'ACC', :ref, 0, :e2e, 10, 'AED', 'CRDT', 'BOOK', :outcome, :p, :f)"
                    ),
                    {
                        "id": entry, "m": message, "ref": f"E-OLD-{i}", "e2e": f"OLD-{i}", "outcome": outcome,
                        "p": None if names_what == "funding" else names[names_what],
                        "f": names["funding"] if names_what == "funding" else None,
                    },
                )  # fmt: skip
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    "before, entries, returned",
    [
        # Before 0018 the runbook had ops return a payment's stranded fiat by hand.
        ("0017", {"not-awaiting": ("PAYMENT_NOT_AWAITING", "payment")}, {"not-awaiting"}),
        # Before 0021, credits of the wrong amount and late or short window fundings too;
        # a sanctions hit's fiat stays frozen, listed for compliance.
        (
            "0020",
            {
                "mismatch": ("AMOUNT_MISMATCH", "payment"),
                "frozen-mismatch": ("AMOUNT_MISMATCH", "frozen"),
                "short-funding": ("AMOUNT_MISMATCH", "funding"),
                "late-funding": ("PAYMENT_NOT_AWAITING", "funding"),
            },
            {"mismatch", "short-funding", "late-funding"},
        ),
    ],
)
def test_entries_stranded_before_their_refunds_existed_are_never_paid_again(fresh_url, before, entries, returned):
    # Recorded as returned (BY_HAND), so the sweeper's refunds never pay them twice.
    migrate.upgrade(fresh_url, before)
    ids = {name: uuid.uuid4() for name in entries}
    _run(_seed_stranded_entries(fresh_url, {ids[name]: spec for name, spec in entries.items()}))
    migrate.upgrade(fresh_url)
    found = _run(_query(fresh_url, "SELECT entry_id, status, amount, participant_id IS NOT NULL FROM refunds"))
    assert {row[0]: tuple(row[1:]) for row in found} == {ids[name]: ("BY_HAND", 10, True) for name in returned}
