"""A loopback TCP proxy that a test can cut and restore: what a process connecting
through it sees of a server that stops (open connections dropped, new ones refused) and
comes back, while other processes still reach the server directly."""

from __future__ import annotations

import asyncio
import contextlib

from deltran.ports import free_port


class CuttableProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        """Accept connections again (first start, or after a cut)."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def cut(self) -> None:
        """Stop listening (new connections are refused) and drop every open one."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._pipes):
            writer.transport.abort()
        self._pipes.clear()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*self._target)
        except OSError:
            client_writer.transport.abort()
            return
        self._pipes |= {client_writer, server_writer}
        await asyncio.gather(
            self._pump(client_reader, server_writer), self._pump(server_reader, client_writer), return_exceptions=True
        )
        for writer in (client_writer, server_writer):
            self._pipes.discard(writer)
            writer.transport.abort()

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
