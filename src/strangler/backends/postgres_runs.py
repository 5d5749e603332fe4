"""Job runs and quotas, read from and written to Postgres for the dashboard.

``JobRuns`` records backfill, verify and repair runs in ``strangler.job_runs`` (progress
while they run, the result at the end), whichever process runs them. ``quotas`` reads what
a Supabase plan limits: connections, database and table sizes, and row counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
import structlog

from strangler.backends.postgres import PostgresStore
from strangler.errors import StranglerError

log = structlog.get_logger(__name__)

JobKind = Literal["backfill", "verify", "repair"]
JobStatus = Literal["running", "done", "failed", "interrupted"]


def origin() -> str:
    """Who runs a job: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


class JobRuns:
    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    async def start(self, kind: JobKind, params: dict[str, Any]) -> int:
        async with self._store.connection("start job run") as conn:
            run_id: int = await conn.fetchval(
                "INSERT INTO strangler.job_runs (kind, origin, status, params)"
                " VALUES ($1, $2, 'running', $3::text::jsonb) RETURNING id",
                kind,
                origin(),
                orjson.dumps(params).decode(),
            )
        return run_id

    async def update(
        self,
        run_id: int,
        *,
        progress: dict[str, Any] | None = None,
        status: JobStatus = "running",
        result: dict[str, Any] | None = None,
    ) -> None:
        async with self._store.connection("update job run") as conn:
            await conn.execute(
                "UPDATE strangler.job_runs SET updated_at = now(), status = $2,"
                " progress = coalesce($3::text::jsonb, progress), result = $4::text::jsonb"
                " WHERE id = $1",
                run_id,
                status,
                None if progress is None else orjson.dumps(progress).decode(),
                None if result is None else orjson.dumps(result).decode(),
            )

    async def latest(self, kind: JobKind) -> dict[str, Any] | None:
        async with self._store.connection("latest job run") as conn:
            row = await conn.fetchrow(
                "SELECT id, kind, origin, started_at, updated_at, status,"
                " params::text, progress::text, result::text"
                " FROM strangler.job_runs WHERE kind = $1 ORDER BY id DESC LIMIT 1",
                kind,
            )
        if row is None:
            return None
        return {
            "id": row["id"],
            "kind": row["kind"],
            "origin": row["origin"],
            "started_at": _iso(row["started_at"]),
            "updated_at": _iso(row["updated_at"]),
            "status": row["status"],
            "params": orjson.loads(row["params"]),
            "progress": orjson.loads(row["progress"]),
            "result": None if row["result"] is None else orjson.loads(row["result"]),
        }


@dataclass
class RunHandle:
    """What a running job shares with its record: mutate ``progress`` and set ``result``."""

    id: int | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None


@contextlib.asynccontextmanager
async def recorded(
    store: object, kind: JobKind, params: dict[str, Any], *, every: float = 2.0
) -> AsyncIterator[RunHandle]:
    """Record a job run in ``strangler.job_runs`` while the block runs: progress every
    ``every`` seconds, then ``done``, ``failed`` or ``interrupted`` (Ctrl-C, cancel) with the
    result. Only on the direct Postgres store; elsewhere, and when recording fails, the job
    runs unrecorded: a dashboard record never stops a backfill."""
    handle = RunHandle()
    if not isinstance(store, PostgresStore):
        yield handle
        return
    runs = JobRuns(store)
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


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat()


@dataclass(frozen=True)
class QuotaPlan:
    db_bytes: int
    max_rows: int | None
    warn_ratio: float


def _item(name: str, used: int, limit: int | None, warn: float, unit: str) -> dict[str, Any]:
    ratio = None if not limit else used / limit
    return {
        "name": name,
        "used": used,
        "limit": limit,
        "unit": unit,
        "ratio": ratio,
        "warn": ratio is not None and ratio >= warn,
    }


async def quotas(store: PostgresStore, plan: QuotaPlan) -> dict[str, Any]:
    """What the Supabase plan limits, used against its limit, each flagged at ``warn_ratio``.

    Row counts are the planner's estimates (``pg_class.reltuples``), exact counts only for
    tables never analysed: ``count(*)`` on a large table is a scan, and this runs every few
    seconds while the dashboard is open.
    """
    async with store.connection("quotas") as conn:
        in_use: int = await conn.fetchval("SELECT count(*) FROM pg_stat_activity")
        max_conn = int(await conn.fetchval("SHOW max_connections"))
        reserved = int(await conn.fetchval("SHOW superuser_reserved_connections"))
        db_size: int = await conn.fetchval("SELECT pg_database_size(current_database())")
        tables = await conn.fetch(
            "SELECT c.relname, pg_total_relation_size(c.oid) AS bytes, c.reltuples::bigint AS est"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relname IN ('chat_sessions', 'messages')"
            " ORDER BY c.relname"
        )
        rows = {}
        for t in tables:
            est = int(t["est"])
            if est < 0:  # never analysed
                est = await conn.fetchval(f'SELECT count(*) FROM public."{t["relname"]}"')
            rows[t["relname"]] = est
    warn = plan.warn_ratio
    items = [
        _item("connections", in_use, max_conn - reserved, warn, "connections"),
        _item("database size", db_size, plan.db_bytes, warn, "bytes"),
    ]
    items += [
        _item(f"{t['relname']} size", int(t["bytes"]), plan.db_bytes, warn, "bytes") for t in tables
    ]
    items += [_item(f"{name} rows", n, plan.max_rows, warn, "rows") for name, n in rows.items()]
    return {"warn_ratio": warn, "items": items}
