"""Temporal's visibility (list_workflows) as tests read it."""

from __future__ import annotations

import asyncio
import time

from temporalio.client import Client, WorkflowExecution


async def listed(client: Client, query: str, timeout_s: float = 10) -> list[WorkflowExecution]:
    """What `query` lists, once it lists anything (or empty after `timeout_s`): visibility
    is written after the workflow's own state, so a workflow started a moment ago can be
    missing from it for a moment."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = [wf async for wf in client.list_workflows(query)]
        if found or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.1)
