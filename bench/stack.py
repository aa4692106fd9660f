"""A whole DelTran stack of a benchmark's own: durable PostgreSQL, a Temporal dev server
with a db file (so it survives a restart), the worker and the API as child processes,
in a temporary DELTRAN_HOME on free loopback ports. Each part starts, stops and restarts
on its own (`make chaos` kills them; `make bench-gateway` runs the API without a worker)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

from cli.devstack.postgres import LocalPostgres
from cli.devstack.temporal import LocalTemporal
from deltran.config import Settings
from deltran.ports import free_port

READY_TIMEOUT_S = 90.0


class Stack:
    """PostgreSQL, Temporal, worker and API of this run, each restartable. `env`: settings
    for every part (DELTRAN_*), on top of the stack's home and ports."""

    def __init__(self, home: Path, env: dict[str, str] | None = None):
        self.home = home
        self.logs = home / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        ports: set[int] = set()
        while len(ports) < 4:
            ports.add(free_port())
        self.pg_port, self.temporal_port, self.api_port, self.metrics_port = sorted(ports)
        self.env = {
            "DELTRAN_HOME": str(home),
            "DELTRAN_PG_PORT": str(self.pg_port),
            "DELTRAN_TEMPORAL_PORT": str(self.temporal_port),
            "DELTRAN_API_HOST": "127.0.0.1",
            "DELTRAN_API_PORT": str(self.api_port),
            "DELTRAN_WORKER_METRICS_HOST": "127.0.0.1",
            "DELTRAN_WORKER_METRICS_PORT": str(self.metrics_port),
            **(env or {}),
        }
        os.environ.update(self.env)  # Settings() in this process and the children read them
        self.settings = Settings()
        os.environ["DELTRAN_DATABASE_URL"] = self.settings.effective_database_url
        os.environ["DELTRAN_TEMPORAL_ADDRESS"] = self.settings.effective_temporal_address
        self.settings = Settings()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.postgres: LocalPostgres | None = None
        self.temporal: LocalTemporal | None = None
        self.worker: subprocess.Popen | None = None
        self.api: subprocess.Popen | None = None

    def start_servers(self) -> None:
        self.postgres = LocalPostgres(
            self.home / "postgres", self.pg_port, log_path=self.logs / "postgres.log", durable=True
        )
        self.postgres.start()
        self.temporal = LocalTemporal(
            port=self.temporal_port,
            ui_port=None,
            db_file=self.home / "temporal.db",
            log_path=self.logs / "temporal.log",
            headless=True,
        )
        self.temporal.start()

    def prepare(self, *, schedules: bool = True) -> None:
        """Migrations, the demo banks and their keys, and (unless told not to) the
        clearing and reconciliation schedules."""
        from cli.devstack.stack import schedule_clearing, seed
        from deltran.db import migrate

        migrate.upgrade(self.settings.effective_database_url)
        asyncio.run(seed(self.settings))
        if schedules:
            asyncio.run(schedule_clearing(self.settings))

    def _child(self, role: str) -> subprocess.Popen:
        from cli.devstack.stack import start_child

        return start_child(role, self.settings, self.logs, self.settings.effective_database_url)

    def start_worker(self) -> None:
        self.worker = self._child("worker")

    def start_api(self) -> None:
        from cli.devstack.stack import wait_healthy

        self.api = self._child("api")
        wait_healthy(self.api_url, self.api, READY_TIMEOUT_S)  # its log: self.logs / "api.log"

    def kill_worker(self) -> int | None:
        proc = self.worker
        if proc is None or proc.poll() is not None:
            return None
        os.killpg(proc.pid, signal.SIGKILL)  # the worker's own session: it and nothing else
        proc.wait(30)
        return proc.pid

    @staticmethod
    def _terminate(proc: subprocess.Popen | None) -> None:
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(15)

    def stop_all(self, log) -> None:
        for step in (
            lambda: self._terminate(self.api),
            lambda: self._terminate(self.worker),
            lambda: self.temporal and self.temporal.stop(),
            lambda: self.postgres and self.postgres.stop(),
        ):
            try:
                step()
            except Exception as exc:  # noqa: BLE001 -- keep stopping the rest
                log(f"while stopping: {exc!r}")
