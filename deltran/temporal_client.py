"""The one way every DelTran process connects to Temporal: same address, namespace and
data converter (pydantic, which round-trips Decimal and datetime exactly)."""
from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from deltran.config import Settings


async def connect(settings: Settings) -> Client:
    return await Client.connect(
        settings.effective_temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
    )
