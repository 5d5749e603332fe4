"""Job runs as the dashboard sees them: ``recorded`` keeps a run's record up to date while
a backfill, verify or repair runs, and never lets a failed record stop the job."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import structlog

from strangler.core.errors import StranglerError
from strangler.core.ports import JobKind, JobRuns, JobStatus

log = structlog.get_logger(__name__)


@dataclass
class RunHandle:
    """What a running job shares with its record: mutate ``progress`` and set ``result``."""

    id: int | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None


@contextlib.asynccontextmanager
async def recorded(
    runs: JobRuns | None, kind: JobKind, params: dict[str, Any], *, every: float = 2.0
) -> AsyncIterator[RunHandle]:
    """Record a job run in ``strangler.job_runs`` while the block runs: progress every
    ``every`` seconds, then ``done``, ``failed`` or ``interrupted`` (Ctrl-C, cancel) with the
    result. With no ``runs`` (over REST, or a dry run), and when recording fails, the job
    runs unrecorded: a dashboard record never stops a backfill."""
    handle = RunHandle()
    if runs is None:
        yield handle
        return
    try:
        handle.id = await runs.start(kind, params)
    except StranglerError as exc:
        log.warning("job_run_not_recorded", kind=kind, error=str(exc))
        yield handle
        return
    stop = asyncio.Event()

    async def flush() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
            if stop.is_set():
                return
            try:
                await runs.update(handle.id, progress=handle.progress)  # type: ignore[arg-type]
            except StranglerError as exc:
                log.warning("job_run_progress_not_recorded", kind=kind, error=str(exc))

    flusher = asyncio.create_task(flush())
    status: JobStatus = "failed"
    try:
        yield handle
        status = "done"
    except (KeyboardInterrupt, asyncio.CancelledError):
        status = "interrupted"
        raise
    finally:
        stop.set()
        await flusher
        try:
            await asyncio.shield(
                runs.update(
                    handle.id, progress=handle.progress, status=status, result=handle.result
                )
            )
        except (StranglerError, asyncio.CancelledError) as exc:
            log.warning("job_run_not_finished", kind=kind, status=status, error=str(exc))
