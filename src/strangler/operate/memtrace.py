"""Memory snapshots for a soak: where a long-running ``strangler serve`` allocates.

With ``STRANGLER_TRACEMALLOC_DIR`` set, ``serve`` starts :mod:`tracemalloc` (8 frames per
allocation) and writes a snapshot to ``<dir>/<pid>-<n>.snap`` every
``STRANGLER_TRACEMALLOC_SECONDS`` and once more when it stops. ``bench/memdiff.py``
compares two of them: which lines of code hold more memory at the end than they did at
the start. Tracing costs CPU time and memory of its own (roughly 2x the Python heap), so
it is for diagnosing a soak, never for production.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

FRAMES = 8


def _snapshot(directory: Path, n: int) -> Path:
    snap = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )
    path = directory / f"{os.getpid()}-{n:03d}.snap"
    snap.dump(str(path))
    return path


@contextlib.asynccontextmanager
async def tracing(directory: Path | None, every: float) -> AsyncIterator[None]:
    """Trace allocations and snapshot them every ``every`` seconds while the block runs;
    nothing at all when ``directory`` is None."""
    if directory is None:
        yield
        return
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    tracemalloc.start(FRAMES)
    log.warning("tracemalloc_on", directory=str(directory), every_seconds=every)
    n = 0

    async def loop() -> None:
        nonlocal n
        while True:
            await asyncio.sleep(every)
            path = await asyncio.to_thread(_snapshot, directory, n)
            size, _peak = tracemalloc.get_traced_memory()
            log.info("tracemalloc_snapshot", path=str(path), traced_mb=round(size / 2**20, 1))
            n += 1

    task = asyncio.get_running_loop().create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await asyncio.to_thread(_snapshot, directory, n)
        tracemalloc.stop()
