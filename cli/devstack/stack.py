"""`deltran up`: the whole local stack in one command.

Starts (unless pointed at external ones) an embedded PostgreSQL and a Temporal dev server
with its Web UI, both persisting under $DELTRAN_HOME; applies the migrations; seeds the
demo banks and writes their keys; starts the worker and the API as child processes;
prints where everything is; and on Ctrl-C stops it all in reverse order.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from cli.devstack.postgres import LocalPostgres
from cli.devstack.temporal import LocalTemporal
from deltran.config import Settings
from deltran.db import migrate
from deltran.db.engine import make_engine, make_session_factory
from deltran.participants import seed_demo
from deltran.temporal.client import connect
from worker.schedules import ensure_reconciliation_schedules, ensure_schedules

READY_TIMEOUT_S = 60


def start_child(role: str, settings: Settings, log_dir: Path, database_url: str) -> subprocess.Popen:
    """`deltran <role>` (worker or api) in its own session, its output appended to
    `<log_dir>/<role>.log`."""
    env = dict(os.environ)
    env["DELTRAN_DATABASE_URL"] = database_url
    env["DELTRAN_TEMPORAL_ADDRESS"] = settings.effective_temporal_address
    # The demo's webhook receiver runs on this machine.
    env.setdefault("DELTRAN_WEBHOOK_ALLOW_PRIVATE", "true")
    log = open(log_dir / f"{role}.log", "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", role],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        # Its own session: Ctrl-C reaches only `deltran up`, which stops the children
        # in order (API first, worker next, servers last).
        start_new_session=True,
    )


def wait_healthy(url: str, api: subprocess.Popen, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Until the API process at `url` answers /healthz with 200 (or exits, or time runs out)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if api.poll() is not None:
            raise RuntimeError("the API exited during start-up; see its log")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the API at {url} did not become healthy in {timeout_s:g}s")


def _stop(proc: subprocess.Popen, timeout_s: float = 15) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_stack(settings: Settings) -> int:
    home = settings.resolved_home
    logs = home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stopping = False

    def on_signal(signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    postgres = temporal = None
    children: list[subprocess.Popen] = []
    try:
        if settings.database_url is None:
            print(f"starting PostgreSQL on 127.0.0.1:{settings.pg_port} (data in {home / 'postgres'})")
            postgres = LocalPostgres(home / "postgres", settings.pg_port, log_path=logs / "postgres.log")
            postgres.start()
        if settings.temporal_address is None:
            print(f"starting Temporal on 127.0.0.1:{settings.temporal_port} (history in {home / 'temporal.db'})")
            temporal = LocalTemporal(
                port=settings.temporal_port,
                ui_port=settings.temporal_ui_port,
                db_file=home / "temporal.db",
                log_path=logs / "temporal.log",
                namespace=settings.temporal_namespace,
            )
            temporal.start()
        print("applying migrations")
        migrate.upgrade(settings.effective_database_url)
        asyncio.run(seed(settings))
        schedules = asyncio.run(schedule_clearing(settings))
        print(f"schedules: {', '.join(schedules)}")
        # The worker and the API reach the embedded PostgreSQL over its Unix socket.
        database_url = postgres.socket_url if postgres is not None else settings.effective_database_url
        children.append(start_child("worker", settings, logs, database_url))
        api = start_child("api", settings, logs, database_url)
        children.append(api)
        api_url = f"http://{settings.api_host}:{settings.api_port}"
        wait_healthy(api_url, api)
        _banner(settings, api_url, temporal, logs)
        while not stopping:
            for proc in children:
                if proc.poll() is not None:
                    print(f"a DelTran process exited with code {proc.returncode}; stopping (see {logs})")
                    return 1
            time.sleep(0.5)
        return 0
    finally:
        print("\nstopping DelTran…")
        for proc in reversed(children):
            _stop(proc)
        if temporal is not None:
            temporal.stop()
        if postgres is not None:
            postgres.stop()
        print("stopped")


async def seed(settings: Settings) -> None:
    engine = make_engine(settings.effective_database_url, pool_size=2)
    try:
        await seed_demo(make_session_factory(engine), settings.credentials_path)
    finally:
        await engine.dispose()


async def schedule_clearing(settings: Settings) -> list[str]:
    """One clearing schedule per currency (idempotent), each with an open window, and
    the account monitor's reconciliation schedules."""
    engine = make_engine(settings.effective_database_url, pool_size=2)
    try:
        client = await connect(settings)
        clearing = await ensure_schedules(client, make_session_factory(engine), settings)
        return clearing + await ensure_reconciliation_schedules(client, settings)
    finally:
        await engine.dispose()


def _banner(settings: Settings, api_url: str, temporal: LocalTemporal | None, logs: Path) -> None:
    ui = temporal.ui_url if temporal else f"(external Temporal at {settings.effective_temporal_address})"
    print(
        "\nDelTran is up.\n"
        f"  API docs     {api_url}/docs\n"
        f"  Health       {api_url}/healthz\n"
        f"  Temporal UI  {ui}\n"
        f"  Credentials  {settings.credentials_path}  (demo bank, settlement-agent and admin keys)\n"
        f"  Logs         {logs}\n"
        "Press Ctrl-C to stop everything.",
        flush=True,
    )
