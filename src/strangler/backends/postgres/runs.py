"""Job runs in Postgres (``strangler.job_runs``): backfill, verify and repair runs with
their progress while they run and their result at the end, whichever process runs them."""

from __future__ import annotations

import datetime as dt
import os
import socket
from typing import Any

import orjson

from strangler.backends.postgres.store import PostgresStore
from strangler.core.ports import JobKind, JobStatus


def origin() -> str:
    """Who runs a job: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


class PostgresJobRuns:
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

    async def latest(
        self, kind: JobKind, *, partition: dict[str, int] | None = None, exact: bool = False
    ) -> dict[str, Any] | None:
        where = "kind = $1"
        args: list[Any] = [kind]
        if exact:
            where += " AND params->'partition' IS NOT DISTINCT FROM $2::text::jsonb"
            args.append(None if partition is None else orjson.dumps(partition).decode())
        async with self._store.connection("latest job run") as conn:
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM strangler.job_runs WHERE {where} ORDER BY id DESC LIMIT 1",
                *args,
            )
        return None if row is None else _run(row)

    async def partitions(self, kind: JobKind) -> list[dict[str, Any]]:
        async with self._store.connection("partitioned job runs") as conn:
            rows = await conn.fetch(_PARTITIONS, kind)
        return [_run(r) for r in rows]


_COLUMNS = (
    "id, kind, origin, started_at, updated_at, status, params::text, progress::text, result::text"
)


def partitions_sql(columns: str, *, done: bool = False) -> str:
    """The latest run (``done``: the latest finished one) of each partition of the latest
    partitioned run of kind ``$1`` (of its N), by K."""
    finished = " AND status = 'done'" if done else ""
    return f"""
WITH last AS (
    SELECT params->'partition'->'n' AS n FROM strangler.job_runs
    WHERE kind = $1 AND params ? 'partition' ORDER BY id DESC LIMIT 1
)
SELECT DISTINCT ON ((params->'partition'->>'k')::int) {columns}
FROM strangler.job_runs, last
WHERE kind = $1 AND params->'partition'->'n' = last.n{finished}
ORDER BY (params->'partition'->>'k')::int, id DESC
"""


_PARTITIONS = partitions_sql(_COLUMNS)


def _run(row: Any) -> dict[str, Any]:
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


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat()
