"""What the benchmarks that start their own PostgreSQL share: the server's life cycle,
progress lines, the printed table and the results file."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from cli.devstack.postgres import LocalPostgres
from deltran.db import migrate
from deltran.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
# The figures the docs quote live in the tracked bench-results/; an ordinary run writes
# beside the local stack's state (.deltran/, ignored), so benchmarking leaves the tree
# clean. DELTRAN_BENCH_RECORD=1 records into bench-results/.
RECORD = os.environ.get("DELTRAN_BENCH_RECORD", "").lower() in ("1", "true", "yes")
RESULTS_DIR = ROOT / "bench-results" if RECORD else ROOT / ".deltran" / "bench-results"


def results_path(name: str) -> Path:
    """Where the benchmark `name` writes `<name>.json`."""
    return RESULTS_DIR / f"{name}.json"


def logger(name: str):
    def log(message: str) -> None:
        print(f"[{name} {time.strftime('%H:%M:%S')}] {message}", flush=True)

    return log


@contextmanager
def embedded_postgres(name: str) -> Iterator[LocalPostgres]:
    """A durable embedded PostgreSQL, migrated, in a temporary directory that goes away
    with it."""
    log = logger(name)
    home = Path(tempfile.mkdtemp(prefix=f"deltran-{name}-"))
    pg = LocalPostgres(home / "data", free_port(), durable=True)
    try:
        log(f"starting PostgreSQL on 127.0.0.1:{pg.port} in {home} (durable)")
        pg.start()
        migrate.upgrade(pg.url)
        yield pg
    finally:
        log("stopping PostgreSQL")
        pg.stop()
        shutil.rmtree(home, ignore_errors=True)


_TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float, float] | None:
    """(parent pid, own CPU s, reaped children's CPU s) of a process; None once it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return int(fields[1]), (utime + stime) * _TICK_S, (cutime + cstime) * _TICK_S


def process_tree_cpu_s(root: int) -> float:
    """CPU seconds of a server process and its children, live or exited: for PostgreSQL,
    the postmaster, its backends, checkpointer, WAL writer... and every child it reaped."""
    total = 0.0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        stat = _stat(int(name))
        if stat is None:
            continue
        parent, own, reaped = stat
        if int(name) == root:
            total += own + reaped
        elif parent == root:
            total += own
    return total


def postmaster_pid(pg: LocalPostgres) -> int:
    return int((pg.data_dir / "postmaster.pid").read_text().split()[0])


def print_table(header: tuple[str, ...], rows: list[tuple[str, ...]], *, label_first: bool = False) -> None:
    """A plain text table, numbers right-aligned (and the first column left-aligned when
    it labels the row)."""
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]

    def line(cells) -> str:
        return " | ".join(
            c.ljust(w) if label_first and i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    print()
    print(line(header))
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        print(line(row))
    print(flush=True)


def write_json(name: str, data) -> Path:
    """`results_path(name)`, written whole or not at all."""
    path = results_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.tmp")
    partial.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(partial, path)
    return path


_BANKS = text(
    """
    INSERT INTO participants (id, bic, name, country)
    SELECT gen_random_uuid(),
           -- e.g. BAAKAE22, BABKIN22, ...: 4-letter bank code, country, location; unique per i.
           :letter || chr(65 + i / 26) || chr(65 + i % 26) || 'K' || (ARRAY['AE','IN','US','DE'])[i % 4 + 1] || '22',
           :name || ' ' || i,
           (ARRAY['AE','IN','US','DE'])[i % 4 + 1]
    FROM generate_series(0, :banks - 1) AS i
    """
)


async def insert_banks(conn: AsyncConnection, count: int, *, letter: str, name: str) -> None:
    """`count` participants across AE, IN, US and DE, BICs starting with `letter`."""
    await conn.execute(_BANKS, {"banks": count, "letter": letter, "name": name})
