"""A `deltran worker` process (the production entry point, `cli.main worker`) against the
suite's servers (tests/system/test_crash_points.py, test_two_workers.py).

Each is forked from a server process that has imported the worker's modules once
(multiprocessing's forkserver, itself a fresh interpreter that never ran an event loop or
a thread), instead of a new interpreter importing them again: about a second of CPU less
for each of the suite's worker processes. The child runs the entry point with this
process's environment plus the worker's settings, to its exit code; unlike an exec'd
process it runs no atexit handlers at its end (the worker registers none). Its first start
waits for the forkserver's imports: call it off the event loop (`asyncio.to_thread`)."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys

from deltran.ports import free_port

_FORKSERVER = multiprocessing.get_context("forkserver")
_FORKSERVER.set_forkserver_preload(["cli.main", "worker.main"])


def _run_worker(env: dict[str, str]) -> None:
    """In the forked child: the worker's environment, no output, then `deltran worker`."""
    os.environ.update(env)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    from cli.main import main

    sys.exit(main(["worker"]))


class WorkerProcess:
    """The subprocess.Popen calls the tests make, on a forked worker."""

    def __init__(self, env: dict[str, str]) -> None:
        self._process = _FORKSERVER.Process(target=_run_worker, args=(env,), daemon=True)
        self._process.start()

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired("deltran worker", timeout or 0)
        return self._process.exitcode

    # The forkserver reaps its children at once: a pid is signalled only while it is ours.
    def terminate(self) -> None:
        if self.poll() is None:
            self._process.terminate()

    def kill(self) -> None:
        if self.poll() is None:
            self._process.kill()


def worker_process(settings, **env: str) -> WorkerProcess:
    """A worker polling `settings.task_queue`, with its own metrics port; `env` adds to
    (or overrides) its DELTRAN_* settings."""
    return WorkerProcess(
        {
            **os.environ,
            "DELTRAN_DATABASE_URL": settings.effective_database_url,
            "DELTRAN_TEMPORAL_ADDRESS": settings.effective_temporal_address,
            "DELTRAN_TASK_QUEUE": settings.task_queue,
            "DELTRAN_WORKER_METRICS_PORT": str(free_port()),
            "DELTRAN_LOG_LEVEL": "WARNING",
            **env,
        }
    )
