"""Workflow tests: each branch of a workflow, with stub activities registered under the
real activities' names, on Temporal's time-skipping test server (deadlines of days pass
in milliseconds). No PostgreSQL, no HTTP: what is under test is the orchestration."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

import pytest
from temporalio.worker import Worker


@pytest.fixture
def run_worker(skipping_env) -> Callable:
    """`async with run_worker(workflows, activities) as task_queue:` a worker of its own."""

    @asynccontextmanager
    async def running(workflows: Sequence[type], activities: Sequence[Callable]) -> AsyncIterator[str]:
        task_queue = f"workflow-test-{uuid.uuid4()}"
        async with Worker(
            skipping_env.client, task_queue=task_queue, workflows=list(workflows), activities=list(activities)
        ):
            yield task_queue

    return running
