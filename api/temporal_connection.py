"""The API's one Temporal client, connected at start-up and again on demand if Temporal
was down, so the API starts (and answers /healthz) even while Temporal does not."""

from __future__ import annotations

import asyncio

from temporalio.client import Client

from deltran.config import Settings
from deltran.errors import ServiceUnavailable
from deltran.temporal.client import connect


class TemporalConnection:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: Client | None = None
        self._lock = asyncio.Lock()

    def connected(self) -> Client | None:
        """The client if it is connected, without trying to connect (for answers that can
        do without Temporal)."""
        return self._client

    async def get(self) -> Client:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                try:
                    self._client = await connect(self._settings)
                except Exception as exc:  # connection refused, timeout, TLS…
                    raise ServiceUnavailable("temporal", str(exc)) from exc
        return self._client
