"""The local-servers layer: Postgres keeps data across a restart, and the Temporal dev
server comes up with DelTran's search attributes, also when restarted on its db file."""

import asyncio
import subprocess
import time

from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client

from cli.devstack.postgres import POSTGRES_BIN_PATH, LocalPostgres
from cli.devstack.temporal import LocalTemporal
from deltran.ports import free_port


def _psql(pg: LocalPostgres, sql: str) -> str:
    out = subprocess.run(
        [str(POSTGRES_BIN_PATH / "psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1", "-d", pg.admin_url(), "-c", sql],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def _timed(label: str, fn) -> None:
    t0 = time.monotonic()
    fn()
    print(f"[devstack] {label}: {time.monotonic() - t0:.2f}s")


async def _search_attributes(address: str) -> dict:
    client = await Client.connect(address)
    resp = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace="default"))
    return dict(resp.custom_attributes)


def test_local_servers_start_restart_and_keep_state(tmp_path):
    pg = LocalPostgres(tmp_path / "pg" / "data", free_port(), durable=True)
    try:
        _timed("postgres initdb + start", pg.start)
        assert pg.is_running()
        _psql(pg, "CREATE TABLE t (id int PRIMARY KEY, note text); INSERT INTO t VALUES (1, 'kept')")
        _timed("postgres stop", pg.stop)
        assert not pg.is_running()
        pg.stop()  # idempotent
        _timed("postgres restart", pg.start)
        _timed("postgres start while running", pg.start)
        assert _psql(pg, "SELECT note FROM t WHERE id = 1") == "kept"
        assert _psql(pg, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'deltran'") == "deltran"
    finally:
        pg.stop()

    db_file = tmp_path / "temporal" / "temporal.db"
    temporal = LocalTemporal(
        port=free_port(), ui_port=None, db_file=db_file, headless=True, log_path=tmp_path / "temporal" / "temporal.log"
    )
    try:
        _timed("temporal start (new db)", temporal.start)
        attrs = asyncio.run(_search_attributes(temporal.address))
        assert "EndToEndId" in attrs
        temporal.stop()
        _timed("temporal restart (same db)", temporal.start)
        assert "EndToEndId" in asyncio.run(_search_attributes(temporal.address))
    finally:
        temporal.stop()
    temporal.stop()  # idempotent
