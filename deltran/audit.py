"""The audit log: who did what, when, with what result, for every state-changing call.

Writing: `record()` INSERTs one row in the caller's own transaction, so the record
commits or rolls back with the change it describes (no change unaudited, no audit of a
change that never happened). It takes no lock: intake stays as fast as one extra INSERT.

Sealing: `seal_pending()` (run every second by `run_sealer` in the worker, or by
`deltran audit seal`) links committed, unsealed rows into a hash chain, in `id` order,
batch by batch. The chain order is the seal order (`seal_seq` 1, 2, 3, ...): a row whose
transaction commits late is simply sealed in a later batch, so nothing ever has to be
inserted "before" an already sealed row. A PostgreSQL advisory lock keeps it to one
sealer at a time across processes.

    hash = sha256(prev_hash + canonical_json([seal_seq, id, recorded_at, actor, action,
                                               subject, result, details]))

prev_hash of seal_seq 1 is 64 zeros. canonical_json: no whitespace, object keys sorted,
strings as JSON with non-ASCII kept as UTF-8, numbers in plain normalised decimal
notation ("100", "0.1", never "1E+2" or "0.10"); recorded_at is ISO 8601 in UTC with
microseconds ("2026-01-02T03:04:05.678901+00:00"). Both the sealer and the verifier
hash what they read back from PostgreSQL (JSONB reorders keys and rewrites numbers), so
the digest never depends on how the writer spelled its details.

Verifying: `verify_chain()` streams the sealed rows in seal_seq order and reports the
first break: a record whose content no longer matches its hash, a record that does not
link to the one before it, or a missing seal_seq (a deleted record). The database trigger
from migration 0002 refuses DELETE, TRUNCATE and every UPDATE except sealing an unsealed
row; the chain catches whoever bypasses it. Truncating the tail of the chain is only
visible against a head (seal_seq, hash) noted elsewhere: the report carries the head.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from deltran.db.tables import AuditLog, table_of
from deltran.periodic import run_every

log = logging.getLogger("deltran.audit")

GENESIS_HASH = "0" * 64
# pg_try_advisory_xact_lock key: "audit" in ASCII. One sealer at a time, cluster-wide.
SEALER_LOCK_KEY = 0x6175646974

_COLUMNS = "seal_seq, id, recorded_at, actor, action, subject, result, details::text AS details"


# -- writing -----------------------------------------------------------------------------


async def record(
    session: AsyncSession | AsyncConnection,
    *,
    actor: str,
    action: str,
    result: str,
    subject: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> int:
    """Append one audit record in the caller's transaction; returns its id. Commit (or
    roll back) together with the change it records."""
    row = await session.execute(
        _INSERT,
        {"actor": actor, "action": action, "subject": subject, "result": result, "details": _jsonable(details or {})},
    )
    return row.scalar_one()


# One statement, values bound at execution: SQLAlchemy compiles and caches it once (a
# statement built with .values() per call is keyed and looked up anew every time).
_INSERT = insert(table_of(AuditLog)).returning(AuditLog.id)


def _jsonable(details: Mapping[str, Any]) -> dict:
    # Callers hold Decimals, UUIDs and datetimes: store them as strings (a Decimal amount
    # as a JSON number would be at the mercy of float rounding). NaN/Infinity are not JSON.
    def default(value: Any) -> Any:
        if isinstance(value, (Decimal, uuid.UUID)):
            return str(value)
        if isinstance(value, (datetime, date)):
            return value.isoformat()
        if isinstance(value, Enum):
            return value.value
        if isinstance(value, (set, frozenset, tuple)):
            return list(value)
        raise TypeError(f"audit details: {type(value).__name__} is not JSON-serialisable")

    return json.loads(json.dumps(dict(details), default=default, allow_nan=False))


# -- the digest ----------------------------------------------------------------------------


def _canonical(value: Any) -> str:
    if isinstance(value, dict):
        items = sorted(value.items())
        return "{" + ",".join(f"{_canonical(k)}:{_canonical(v)}" for k, v in items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_canonical(v) for v in value) + "]"
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (int, Decimal)):
        number = Decimal(value)
        return "0" if number == 0 else format(number.normalize(), "f")
    raise TypeError(f"not canonical JSON: {type(value).__name__}")


def _digest(prev_hash: str, row: Mapping[str, Any]) -> str:
    """The hash of one sealed row, from the row as read back from PostgreSQL (details as
    JSONB text, parsed with exact decimals so no digit is lost to float rounding)."""
    recorded_at: datetime = row["recorded_at"]
    body = [
        row["seal_seq"],
        row["id"],
        recorded_at.astimezone(UTC).isoformat(timespec="microseconds"),
        row["actor"],
        row["action"],
        row["subject"],
        row["result"],
        json.loads(row["details"], parse_float=Decimal, parse_int=Decimal),
    ]
    return hashlib.sha256((prev_hash + _canonical(body)).encode("utf-8")).hexdigest()


# -- sealing -------------------------------------------------------------------------------


async def _seal_batch(sessions: async_sessionmaker, batch_size: int) -> int | None:
    """Seal up to batch_size committed rows in one transaction; None when another sealer
    holds the lock."""
    async with sessions() as session, session.begin():
        # Transaction-scoped: released by the commit, or by the rollback if we die here.
        if not await session.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": SEALER_LOCK_KEY}):
            return None
        # Read after taking the lock (READ COMMITTED: a fresh snapshot per statement), so
        # we see the previous sealer's last commit.
        head = (
            await session.execute(
                text("SELECT seal_seq, hash FROM audit_log WHERE seal_seq IS NOT NULL ORDER BY seal_seq DESC LIMIT 1")
            )
        ).first()
        seq, prev = (head.seal_seq, head.hash) if head else (0, GENESIS_HASH)
        # Rows of transactions still open are invisible here: they get a later batch.
        rows = (
            (
                await session.execute(
                    text(f"SELECT {_COLUMNS} FROM audit_log WHERE seal_seq IS NULL ORDER BY id LIMIT :n"),
                    {"n": batch_size},
                )
            )
            .mappings()
            .all()
        )
        if not rows:
            return 0
        ids, seqs, prevs, hashes = [], [], [], []
        for row in rows:
            seq += 1
            digest = _digest(prev, {**row, "seal_seq": seq})
            ids.append(row["id"])
            seqs.append(seq)
            prevs.append(prev)
            hashes.append(digest)
            prev = digest
        # One statement for the whole batch; `seal_seq IS NULL` (and the trigger) make a
        # row sealed twice impossible, the unique seal_seq makes a forked chain impossible.
        updated = await session.execute(
            text(
                "UPDATE audit_log AS a SET seal_seq = v.seal_seq, prev_hash = v.prev_hash, hash = v.hash"
                " FROM unnest(CAST(:ids AS bigint[]), CAST(:seqs AS bigint[]),"
                " CAST(:prevs AS text[]), CAST(:hashes AS text[])) AS v(id, seal_seq, prev_hash, hash)"
                " WHERE a.id = v.id AND a.seal_seq IS NULL"
            ),
            {"ids": ids, "seqs": seqs, "prevs": prevs, "hashes": hashes},
        )
        if updated.rowcount != len(ids):
            raise RuntimeError(f"audit sealer: sealed {updated.rowcount} of {len(ids)} rows; rolled back")
        return len(ids)


async def seal_pending(sessions: async_sessionmaker, batch_size: int = 1000) -> int:
    """Seal every committed, unsealed record now; returns how many were sealed. Stops
    early (returning what it sealed) when another sealer holds the lock."""
    total = 0
    while True:
        sealed = await _seal_batch(sessions, batch_size)
        if sealed is None:
            return total
        total += sealed
        if sealed < batch_size:
            return total


async def run_sealer(sessions: async_sessionmaker, interval_s: float = 1.0, stop: asyncio.Event | None = None) -> None:
    """Seal pending records every interval_s until stop is set (or the task is
    cancelled). A failure (PostgreSQL restarting) is logged and retried next round:
    unsealed rows simply wait, nothing is lost."""

    async def seal_round() -> None:
        if sealed := await seal_pending(sessions):
            log.debug("sealed %d audit record(s)", sealed)

    await run_every(interval_s, stop or asyncio.Event(), seal_round, log, "audit sealer: sealing")


# -- verifying -----------------------------------------------------------------------------


@dataclass
class VerifyReport:
    ok: bool
    sealed: int
    unsealed: int
    # {"seal_seq", "id", "reason": "hash_mismatch" | "prev_hash_mismatch" | "seal_seq_gap",
    #  "detail"}; None when the chain is unbroken.
    first_break: dict | None = None
    # The last sealed record: note it elsewhere to detect a truncated tail later.
    head_seal_seq: int | None = None
    head_hash: str | None = None


async def verify_chain(sessions: async_sessionmaker, batch_size: int = 5000) -> VerifyReport:
    """Recompute the chain from seal_seq 1 and report the first break. Streams the rows
    through a server-side cursor, so memory stays flat on millions of records."""
    async with sessions() as session:
        # One snapshot for the counts and the walk, even while a sealer keeps appending.
        conn = await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        unsealed = await conn.scalar(text("SELECT count(*) FROM audit_log WHERE seal_seq IS NULL"))
        stream = await conn.stream(
            text(
                f"SELECT {_COLUMNS}, prev_hash, hash FROM audit_log WHERE seal_seq IS NOT NULL ORDER BY seal_seq"
            ).execution_options(yield_per=batch_size)
        )
        sealed, expected_prev, first_break = 0, GENESIS_HASH, None
        head_seq = head_hash = None
        async for row in stream.mappings():
            sealed += 1
            head_seq, head_hash = row["seal_seq"], row["hash"]
            if first_break is not None:
                continue  # keep counting only
            first_break = _check(row, sealed, expected_prev)
            expected_prev = row["hash"]
        await stream.close()
    return VerifyReport(
        ok=first_break is None,
        sealed=sealed,
        unsealed=unsealed,
        first_break=first_break,
        head_seal_seq=head_seq,
        head_hash=head_hash,
    )


def _check(row: Mapping[str, Any], expected_seq: int, expected_prev: str) -> dict | None:
    seq, row_id = row["seal_seq"], row["id"]
    if seq != expected_seq:
        return {
            "seal_seq": expected_seq,
            "id": None,
            "reason": "seal_seq_gap",
            "detail": f"seal_seq {expected_seq} is missing (next is {seq}, id {row_id}): a sealed record was deleted",
        }
    if row["prev_hash"] != expected_prev:
        return {
            "seal_seq": seq,
            "id": row_id,
            "reason": "prev_hash_mismatch",
            "detail": f"seal_seq {seq} (id {row_id}) does not link to seal_seq {seq - 1}:"
            " one of the two was replaced or re-hashed",
        }
    if _digest(row["prev_hash"], row) != row["hash"]:
        return {
            "seal_seq": seq,
            "id": row_id,
            "reason": "hash_mismatch",
            "detail": f"seal_seq {seq} (id {row_id}): content does not match its hash (altered)",
        }
    return None
