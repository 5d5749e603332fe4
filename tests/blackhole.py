"""A TCP proxy on loopback that can turn into a blackhole: while ``dropping``, it keeps
every connection open (and accepts new ones) but forwards nothing either way, as when a
network partition makes packets vanish. Unlike a paused server (``tests/pause.py``), even
a new connection's handshake with the server never happens."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from strangler.embedded import free_port


class Blackhole:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = free_port()
        self.dropping = False
        self._resume = asyncio.Event()
        self._resume.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    def drop(self) -> None:
        """Forward nothing from now on (connections stay open)."""
        self.dropping = True
        self._resume.clear()

    def restore(self) -> None:
        """Forward again; what arrived meanwhile is lost, as on a real partition, so
        connections that were used meanwhile are broken for their clients."""
        self.dropping = False
        self._resume.set()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                if self.dropping:
                    continue  # swallowed
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._resume.wait()  # a new connection during the blackhole goes nowhere
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        for pipe in (self._pipe(reader, up_writer), self._pipe(up_reader, writer)):
            task = asyncio.get_running_loop().create_task(pipe)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Blackhole]:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        try:
            yield self
        finally:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
