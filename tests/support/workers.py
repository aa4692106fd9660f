"""A `deltran worker` process (the production entry point) against the suite's servers
(tests/system/test_crash_points.py, test_two_workers.py)."""

from __future__ import annotations

import os
import subprocess
import sys

from deltran.ports import free_port


def worker_process(settings, **env: str) -> subprocess.Popen:
    """A worker polling `settings.task_queue`, with its own metrics port; `env` adds to
    (or overrides) its DELTRAN_* settings."""
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", "worker"],
        env={
            **os.environ,
            "DELTRAN_DATABASE_URL": settings.effective_database_url,
            "DELTRAN_TEMPORAL_ADDRESS": settings.effective_temporal_address,
            "DELTRAN_TASK_QUEUE": settings.task_queue,
            "DELTRAN_WORKER_METRICS_PORT": str(free_port()),
            "DELTRAN_LOG_LEVEL": "WARNING",
            **env,
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
