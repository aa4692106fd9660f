"""While PostgreSQL is down the API answers 503 with Retry-After (not 500, not a hang),
accepts nothing it cannot record, and /healthz names the dependency; once PostgreSQL is
back, requests go through again by themselves."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import uvicorn

from api.main import create_app
from cli.devstack.postgres import LocalPostgres
from deltran.db import migrate
from deltran.db.engine import make_engine, make_session_factory
from deltran.participants import seed_demo
from deltran.ports import free_port
from tests.support.payments import auth, payment_body, wait_for_status
from tests.support.tcp_proxy import CuttableProxy


@asynccontextmanager
async def api_of_its_own(settings) -> AsyncIterator[httpx.AsyncClient]:
    """An API process's app on a free port with these settings, and a client for it."""
    port = free_port()
    api = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(api.serve())
    while not api.started:
        await asyncio.sleep(0.05)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            yield http
    finally:
        api.should_exit = True
        await task


@pytest.fixture
async def own_database(tmp_path, settings):
    """A PostgreSQL of this test's own, so stopping it disturbs no other test."""
    server = LocalPostgres(tmp_path / "pg", free_port(), durable=False)
    await asyncio.to_thread(server.start)
    await asyncio.to_thread(migrate.upgrade, server.url)
    engine = make_engine(server.url, pool_size=2)
    credentials = await seed_demo(make_session_factory(engine), tmp_path / "credentials.json")
    await engine.dispose()
    yield server, settings.model_copy(update={"database_url": server.url}), credentials
    await asyncio.to_thread(server.stop)


async def test_postgres_down_is_503_with_retry_after_and_recovers(own_database, worker):
    server, settings, credentials = own_database
    bank = auth(credentials["banks"]["EBILAEAD"])
    async with api_of_its_own(settings) as http:
        assert (
            await http.post("/v1/payments", json=payment_body(f"UP-{uuid.uuid4().hex[:12]}"), headers=bank)
        ).status_code == 202

        await asyncio.to_thread(server.stop)
        down = await http.post("/v1/payments", json=payment_body(f"DOWN-{uuid.uuid4().hex[:12]}"), headers=bank)
        assert down.status_code == 503, down.text
        assert int(down.headers["Retry-After"]) >= 1
        assert down.headers["content-type"] == "application/problem+json"
        health = await http.get("/healthz")
        assert health.status_code == 503
        assert health.json()["database"].startswith("down") and health.json()["temporal"] == "ok"

        await asyncio.to_thread(server.start)
        back = await http.post("/v1/payments", json=payment_body(f"BACK-{uuid.uuid4().hex[:12]}"), headers=bank)
        assert back.status_code == 202, back.text
        assert (await http.get("/healthz")).status_code == 200


async def test_temporal_down_is_503_and_stores_nothing(settings, credentials, sessions):
    from sqlalchemy import func, select

    from deltran.db.tables import Payment

    unreachable = settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})
    e2e = f"NOTEMPORAL-{uuid.uuid4().hex[:10]}"
    async with api_of_its_own(unreachable) as http:
        down = await http.post("/v1/payments", json=payment_body(e2e), headers=auth(credentials["banks"]["EBILAEAD"]))
        assert down.status_code == 503 and int(down.headers["Retry-After"]) >= 1
        health = (await http.get("/healthz")).json()
        assert health["temporal"].startswith("down") and health["database"] == "ok"
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Payment).where(Payment.end_to_end_id == e2e)) == 0


async def test_a_payment_in_flight_still_reads_at_once_while_temporal_is_unreachable(settings, credentials, worker):
    """GET /v1/payments/{id} asks Temporal which step a payment in flight is retrying;
    with Temporal gone after the API connected, it answers from PostgreSQL at once,
    without the step, and holds no database connection while it tries."""
    target_host, _, target_port = settings.effective_temporal_address.rpartition(":")
    proxy = CuttableProxy(target_host, int(target_port))
    await proxy.start()
    through_proxy = settings.model_copy(update={"temporal_address": f"127.0.0.1:{proxy.port}"})
    bank = auth(credentials["banks"]["EBILAEAD"])
    try:
        async with api_of_its_own(through_proxy) as http:
            accepted = await http.post(
                "/v1/payments", json=payment_body(f"NOTEMP-{uuid.uuid4().hex[:10]}"), headers=bank
            )
            assert accepted.status_code == 202, accepted.text
            payment_id = accepted.json()["payment_id"]
            # In flight: its workflow started and waits for the bank's camt.054 (nothing
            # left for the API to start, so its shutdown does not wait out the cut).
            await wait_for_status(http, payment_id, bank, {"AWAITING_SETTLEMENT"})
            await proxy.cut()
            # More concurrent reads than the API has database connections (20 + 10).
            started = time.monotonic()
            answers = await asyncio.gather(*(http.get(f"/v1/payments/{payment_id}", headers=bank) for _ in range(40)))
            took = time.monotonic() - started
            assert {a.status_code for a in answers} == {200}
            assert {(a.json()["step"], a.json()["attempt"]) for a in answers} == {(None, None)}
            assert took < 10, f"40 reads took {took:.1f} s with Temporal unreachable"
    finally:
        await proxy.stop()


async def test_after_a_postgres_restart_the_first_request_goes_through(own_database, worker):
    """The pool's connections died with the restart; none of them is handed to a request
    (deltran/db/engine.py checks each as it leaves the pool, without a round trip)."""
    server, settings, credentials = own_database
    bank = auth(credentials["banks"]["EBILAEAD"])
    async with api_of_its_own(settings) as http:
        # Several connections in the pool, all idle.
        before = await asyncio.gather(
            *(
                http.post("/v1/payments", json=payment_body(f"PRE-{uuid.uuid4().hex[:12]}"), headers=bank)
                for _ in range(5)
            )
        )
        assert {r.status_code for r in before} == {202}
        await asyncio.to_thread(server.stop)
        await asyncio.to_thread(server.start)
        await asyncio.sleep(0.2)  # the event loop sees the closed sockets
        after = await asyncio.gather(
            *(
                http.post("/v1/payments", json=payment_body(f"POST-{uuid.uuid4().hex[:12]}"), headers=bank)
                for _ in range(5)
            )
        )
        assert [r.status_code for r in after] == [202] * 5, [r.text for r in after]
