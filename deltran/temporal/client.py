"""The one way every DelTran process connects to Temporal: same address, namespace,
data converter (pydantic, which round-trips Decimal and datetime exactly) and tracing."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime

from deltran.config import Settings
from deltran.observability.tracing import temporal_interceptors


async def connect(settings: Settings, runtime: Runtime | None = None) -> Client:
    """With tracing: a span for each workflow start and signal, carried into the
    workflow and its activities (for workers built on this client too)."""
    return await Client.connect(
        settings.effective_temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
        interceptors=temporal_interceptors(),
        runtime=runtime,
    )
