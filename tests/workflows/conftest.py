"""Workflow tests: each branch of a workflow, with stub activities registered under the
real activities' names, on Temporal's time-skipping test server (deadlines of days pass
in milliseconds). No PostgreSQL, no HTTP: what is under test is the orchestration."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from deltran.temporal import search_attributes
from tests.conftest import binary


@pytest.fixture(scope="session")
async def skipping_env() -> AsyncIterator[WorkflowEnvironment]:
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
