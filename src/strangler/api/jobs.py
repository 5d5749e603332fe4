"""Background verify jobs for ``POST /admin/verify``: started, polled, stopped cleanly.

A job runs ``migrate.verify.diff_stores`` from the authoritative store to the other and
keeps its progress; it lives in this instance's memory (poll the instance that started
it). Stopping never cancels a store call halfway: the job stops at its next progress
point, between rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import structlog

from strangler.core.errors import StranglerError
from strangler.core.ports import JobRuns
from strangler.core.records import Table
from strangler.migrate.runs import recorded
from strangler.migrate.verify import diff_stores
from strangler.proxy.facade import DualWriteStore

log = structlog.get_logger(__name__)


class _Stopped(Exception):
    pass


@dataclass
class VerifyJob:
    id: str
    stage: str
    started: float = field(default_factory=time.time)
    status: str = "running"
    progress: dict[str, int] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    error: str | None = None
    stop: bool = False
    task: asyncio.Task[None] | None = None

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "stage": self.stage,
            "started_at": self.started,
            "progress": self.progress,
            "result": self.result,
            "error": self.error,
        }


class VerifyJobs:
    def __init__(self, keep: int = 20) -> None:
        self.jobs: dict[str, VerifyJob] = {}
        self.keep = keep

    def start(self, facade: DualWriteStore, runs: JobRuns | None) -> VerifyJob:
        """Start a verify over the facade's two stores, recorded in ``runs``."""
        job = VerifyJob(secrets.token_hex(8), facade.stage.value)
        job.task = asyncio.create_task(self._run(job, facade, runs), name=f"verify-{job.id}")
        self.jobs[job.id] = job
        for old in list(self.jobs.values())[: -self.keep]:  # forget the oldest finished ones
            if old.status != "running":
                del self.jobs[old.id]
        return job

    async def _run(self, job: VerifyJob, facade: DualWriteStore, runs: JobRuns | None) -> None:
        def progress(table: Table, compared: int) -> None:
            if job.stop:
                raise _Stopped
            job.progress[table] = compared

        auth, other = facade.store("old"), facade.store("new")
        if facade.stage.authoritative == "new":
            auth, other = other, auth
        params = {"stage": job.stage, "origin": "api", "job": job.id}
        try:
            async with recorded(runs, "verify", params) as run:
                run.progress = job.progress
                diffs = await diff_stores(auth, other, keep=100, progress=progress)
                job.progress = {t: d.compared for t, d in diffs.items()}
                job.result = run.result = {
                    "equal": all(d.equal for d in diffs.values()),
                    "tables": [d.summary() for d in diffs.values()],
                }
        except _Stopped:
            job.status, job.error = "failed", "stopped: the instance shut down"
            return
        except StranglerError as exc:
            job.status, job.error = "failed", str(exc)
            log.warning("verify_job_failed", job=job.id, error=str(exc))
            return
        job.status = "done"

    async def stop_all(self) -> None:
        for job in self.jobs.values():
            job.stop = True
        for job in self.jobs.values():
            if job.task is not None:
                with contextlib.suppress(Exception):
                    await job.task
