"""Read ahead: a task of its own iterates a source (a store's scan, a backfill's chunks)
up to ``depth`` items ahead of the consumer, so the next read is on its way while the
current item is worked on.

The reader is never cancelled: an async MongoDB read must not be (the topology-lock bug
noted in the facade). When the consumer stops, the reader is told to, ends the read in
hand, and closes the source."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TypeVar

T = TypeVar("T")


async def read_ahead(source: AsyncIterator[T], depth: int) -> AsyncGenerator[T, None]:
    """``source``'s items in order, read up to ``depth`` ahead. An error of the source is
    raised to the consumer at the point it happened. Close the generator (``aclosing``)
    to stop the reader promptly."""
    queue: asyncio.Queue[T | BaseException | None] = asyncio.Queue(maxsize=depth)
    stop = False

    async def read() -> None:
        try:
            async for item in source:
                await queue.put(item)
                if stop:
                    return
            await queue.put(None)
        except Exception as exc:  # handed to the consumer, which raises it
            await queue.put(exc)
        finally:
            closing = getattr(source, "aclose", None)
            if closing is not None:
                await closing()

    reader = asyncio.create_task(read())
    try:
        while (item := await queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop = True
        while not reader.done():  # let it end its current read, then stop
            while not queue.empty():
                queue.get_nowait()
            await asyncio.sleep(0.005)
