"""The audit log on the real PostgreSQL: records commit with their transaction, are sealed
into one unbroken hash chain whatever order their transactions commit in, the trigger
keeps the table append-only, and `deltran audit verify` catches an altered or deleted
record (tampering bypasses the trigger, as a table owner could).

Tests that break the chain, or need to know every record in the table, run on a database
of their own: the shared one must stay verifiable for everyone else.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import async_sessionmaker

from cli import main as cli
from deltran import audit
from deltran.config import get_settings
from deltran.db import migrate
from deltran.db.engine import make_engine, make_session_factory

ROW = "SELECT id, seal_seq, prev_hash, hash, actor, action, subject, result, details FROM audit_log"


@dataclass
class Db:
    url: str
    sessions: async_sessionmaker


@pytest.fixture
async def own_db(postgres):
    name = f"audit_{uuid.uuid4().hex[:12]}"
    await asyncio.to_thread(postgres.create_database, name)
    url = f"{postgres.url.rpartition('/')[0]}/{name}"
    await asyncio.to_thread(migrate.upgrade, url)  # runs its own event loop
    engine = make_engine(url, pool_size=5)
    yield Db(url, make_session_factory(engine))
    await engine.dispose()


async def write(sessions, n: int, *, subject: str | None = None, **details) -> list[int]:
    """n records in one transaction, as a caller writing beside its change would."""
    async with sessions() as session, session.begin():
        return [
            await audit.record(
                session,
                actor="admin",
                action="test.write",
                subject=subject or f"S-{i}",
                result="ok",
                details={"i": i, **details},
            )
            for i in range(n)
        ]


async def rows(sessions, where: str = "TRUE", **params) -> list[dict]:
    async with sessions() as session:
        result = await session.execute(text(f"{ROW} WHERE {where} ORDER BY id"), params)
        return [dict(r) for r in result.mappings()]


async def tamper(sessions, sql: str, **params) -> None:
    """Change the table behind the trigger's back (the owner may disable it)."""
    async with sessions() as session, session.begin():
        await session.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"))
        await session.execute(text(sql), params)
        await session.execute(text("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only"))


async def seal_until_sealed(sessions, ids: list[int], timeout_s: float = 15.0) -> None:
    """Seal, tolerating another sealer (e.g. a worker's) holding the lock meanwhile."""
    deadline = time.monotonic() + timeout_s
    while True:
        await audit.seal_pending(sessions)
        pending = await rows(sessions, "id = ANY(:ids) AND seal_seq IS NULL", ids=ids)
        if not pending:
            return
        assert time.monotonic() < deadline, f"not sealed: {[r['id'] for r in pending]}"
        await asyncio.sleep(0.05)


# -- the shared database -------------------------------------------------------------------


async def test_records_are_sealed_in_append_order_and_the_chain_verifies(sessions):
    subject = f"AUD-{uuid.uuid4().hex[:12]}"
    details = {
        "z": 1,
        "amount": Decimal("100000.10"),
        "payment_id": uuid.uuid4(),
        "nested": {"y": [1.5, 2, "x", None, True], "b": 1e-7, "big": 10**30},
        "name": "Ganesh Textiles — ₹ मुंबई",
    }
    ids = await write(sessions, 5, subject=subject, **details)
    await seal_until_sealed(sessions, ids)

    mine = await rows(sessions, "id = ANY(:ids)", ids=ids)
    seqs = [r["seal_seq"] for r in mine]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5  # id order is seal order
    for r in mine:
        (before,) = await rows(sessions, "seal_seq = :s", s=r["seal_seq"] - 1) or [{"hash": audit.GENESIS_HASH}]
        assert r["prev_hash"] == before["hash"]
        assert r["hash"] == audit._digest(r["prev_hash"], await _raw(sessions, r["id"]))
    # What the writer held is stored as JSON: Decimal and UUID as strings, exact.
    assert mine[0]["details"]["amount"] == "100000.10"
    assert mine[0]["details"]["payment_id"] == str(details["payment_id"])
    assert mine[0]["details"]["nested"]["big"] == 10**30

    report = await audit.verify_chain(sessions)
    assert report.ok, report.first_break
    assert report.sealed >= 5 and report.first_break is None
    assert report.head_seal_seq is not None and report.head_seal_seq >= max(seqs)


async def _raw(sessions, row_id: int) -> dict:
    async with sessions() as session:
        result = await session.execute(text(f"SELECT {audit._COLUMNS} FROM audit_log WHERE id = :id"), {"id": row_id})
        return dict(result.mappings().one())


async def test_a_rolled_back_record_leaves_no_trace(sessions):
    subject = f"AUD-RB-{uuid.uuid4().hex[:12]}"

    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        async with sessions() as session, session.begin():
            await audit.record(session, actor="cli:root", action="bank.add", subject=subject, result="ok")
            raise Abort  # the change failed: its audit record goes with it
    assert await rows(sessions, "subject = :s", s=subject) == []

    # The identity value it burnt is no hole in the chain: seal_seq is assigned at sealing.
    ids = await write(sessions, 1, subject=subject)
    await seal_until_sealed(sessions, ids)
    assert (await audit.verify_chain(sessions)).ok


# -- a database of its own -----------------------------------------------------------------


async def test_an_altered_record_is_caught(own_db):
    sessions = own_db.sessions
    await write(sessions, 6, amount=Decimal("250.00"), nested={"b": 2, "a": 1.25})
    assert await audit.seal_pending(sessions) == 6
    report = await audit.verify_chain(sessions)
    assert (report.ok, report.sealed, report.unsealed, report.head_seal_seq) == (True, 6, 0, 6)
    (fourth,) = await rows(sessions, "seal_seq = 4")

    # Its result rewritten: caught at that record.
    await tamper(sessions, "UPDATE audit_log SET result = 'refused' WHERE seal_seq = 4")
    report = await audit.verify_chain(sessions)
    assert not report.ok and report.sealed == 6
    assert report.first_break["seal_seq"] == 4 and report.first_break["id"] == fourth["id"]
    assert report.first_break["reason"] == "hash_mismatch"

    # Put back exactly as it was: the chain verifies again (the digest is deterministic).
    await tamper(sessions, "UPDATE audit_log SET result = 'ok' WHERE seal_seq = 4")
    assert (await audit.verify_chain(sessions)).ok

    # A number inside the details changed: caught too.
    await tamper(
        sessions, """UPDATE audit_log SET details = jsonb_set(details, '{nested,a}', '1.26') WHERE seal_seq = 2"""
    )
    report = await audit.verify_chain(sessions)
    assert (report.ok, report.first_break["seal_seq"], report.first_break["reason"]) == (False, 2, "hash_mismatch")
    await tamper(
        sessions, """UPDATE audit_log SET details = jsonb_set(details, '{nested,a}', '1.25') WHERE seal_seq = 2"""
    )
    assert (await audit.verify_chain(sessions)).ok

    # Altered and re-hashed so that it checks out on its own: the next record's link breaks.
    await tamper(sessions, "UPDATE audit_log SET actor = 'bank:EBILAEAD' WHERE seal_seq = 3")
    (third,) = await rows(sessions, "seal_seq = 3")
    forged = audit._digest(third["prev_hash"], await _raw(sessions, third["id"]))
    await tamper(sessions, "UPDATE audit_log SET hash = :h WHERE seal_seq = 3", h=forged)
    report = await audit.verify_chain(sessions)
    assert (report.ok, report.first_break["seal_seq"], report.first_break["reason"]) == (False, 4, "prev_hash_mismatch")


async def test_a_deleted_record_is_caught_as_a_gap(own_db):
    sessions = own_db.sessions
    ids = await write(sessions, 5)
    await audit.seal_pending(sessions)
    await tamper(sessions, "DELETE FROM audit_log WHERE seal_seq = 3")
    report = await audit.verify_chain(sessions)
    assert not report.ok and (report.sealed, report.unsealed) == (4, 0)
    assert report.first_break["seal_seq"] == 3 and report.first_break["reason"] == "seal_seq_gap"
    assert str(ids[3]) in report.first_break["detail"]  # the record found where 3 should be


async def test_the_trigger_keeps_the_table_append_only(own_db):
    sessions = own_db.sessions
    (sealed_id,) = await write(sessions, 1)
    await audit.seal_pending(sessions)
    (unsealed_id,) = await write(sessions, 1)
    before = await rows(sessions)

    refused = {
        "update of a sealed record": f"UPDATE audit_log SET result = 'x' WHERE id = {sealed_id}",
        "update of an unsealed record": f"UPDATE audit_log SET details = '{{}}' WHERE id = {unsealed_id}",
        "re-sealing": f"UPDATE audit_log SET hash = repeat('0', 64) WHERE id = {sealed_id}",
        "sealing that changes content": (
            f"UPDATE audit_log SET seal_seq = 2, prev_hash = repeat('a', 64), hash = repeat('b', 64),"
            f" actor = 'someone else' WHERE id = {unsealed_id}"
        ),
        "delete of a sealed record": f"DELETE FROM audit_log WHERE id = {sealed_id}",
        "delete of an unsealed record": f"DELETE FROM audit_log WHERE id = {unsealed_id}",
        "truncate": "TRUNCATE audit_log",
    }
    for what, sql in refused.items():
        with pytest.raises(DBAPIError, match="append-only"):
            async with sessions() as session, session.begin():
                await session.execute(text(sql))
            pytest.fail(f"{what} was allowed")
    with pytest.raises(DBAPIError, match="inserted unsealed"):
        async with sessions() as session, session.begin():
            await session.execute(
                text(
                    "INSERT INTO audit_log (actor, action, result, seal_seq, prev_hash, hash)"
                    " VALUES ('x', 'y', 'z', 2, repeat('a', 64), repeat('b', 64))"
                )
            )

    assert await rows(sessions) == before
    # Sealing itself is the one update allowed.
    assert await audit.seal_pending(sessions) == 1
    report = await audit.verify_chain(sessions)
    assert (report.ok, report.sealed, report.unsealed) == (True, 2, 0)


async def test_records_committed_out_of_id_order_join_one_chain(own_db):
    sessions = own_db.sessions
    async with sessions() as slow:
        await slow.begin()
        slow_id = await audit.record(
            slow, actor="settlement_agent", action="camt054.receive", subject="M-1", result="accepted"
        )
        (fast_id,) = await write(sessions, 1)  # a later id, committed first
        assert slow_id < fast_id

        # The open transaction's row is invisible: the sealer neither waits for it nor skips past it.
        assert await audit.seal_pending(sessions) == 1
        await slow.commit()
    assert await audit.seal_pending(sessions) == 1

    sealed = {r["id"]: r["seal_seq"] for r in await rows(sessions)}
    assert sealed == {fast_id: 1, slow_id: 2}
    report = await audit.verify_chain(sessions)
    assert (report.ok, report.sealed, report.unsealed) == (True, 2, 0)


async def test_concurrent_sealers_make_one_contiguous_chain(own_db):
    sessions = own_db.sessions
    for _ in range(5):
        await write(sessions, 10)
    # Whoever finds the lock busy stops; whoever holds it seals to the end.
    counts = await asyncio.gather(*(audit.seal_pending(sessions, batch_size=7) for _ in range(4)))
    assert sum(counts) == 50
    assert sorted(r["seal_seq"] for r in await rows(sessions)) == list(range(1, 51))
    assert (await audit.verify_chain(sessions, batch_size=8)).ok


async def test_run_sealer_seals_until_stopped(own_db):
    sessions = own_db.sessions
    stop = asyncio.Event()
    sealer = asyncio.create_task(audit.run_sealer(sessions, interval_s=0.05, stop=stop))
    ids = await write(sessions, 3)
    deadline = time.monotonic() + 10
    while await rows(sessions, "id = ANY(:ids) AND seal_seq IS NULL", ids=ids):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(sealer, 5)


@pytest.fixture
def cli_database(own_db, monkeypatch):
    monkeypatch.setenv("DELTRAN_DATABASE_URL", own_db.url)
    get_settings.cache_clear()
    yield own_db
    get_settings.cache_clear()


async def test_the_cli_verifies_and_exits_1_on_a_break(cli_database, capsys):
    sessions = cli_database.sessions
    await write(sessions, 3)

    async def deltran(*argv: str) -> tuple[int, str]:
        code = await asyncio.to_thread(cli.main, list(argv))  # the CLI runs its own loop
        return code, capsys.readouterr().out

    code, out = await deltran("audit", "seal")
    assert code == 0 and "sealed 3" in out
    code, out = await deltran("audit", "verify")
    assert code == 0 and "sealed: 3  unsealed: 0" in out and "OK" in out

    await tamper(sessions, "UPDATE audit_log SET subject = 'forged' WHERE seal_seq = 2")
    code, out = await deltran("audit", "verify")
    assert code == 1 and "BROKEN (hash_mismatch)" in out and "seal_seq 2" in out
