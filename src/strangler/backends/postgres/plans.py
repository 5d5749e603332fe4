"""Partition plans in Postgres (``strangler.partition_plans``) and a sample of a table's
ids to make one from: the first process of a partitioned job stores its split points, the
others read the same ones."""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from strangler.backends.postgres.store import PostgresStore
from strangler.core.errors import InvalidInput
from strangler.core.records import TABLES, Table


class PostgresPartitionPlans:
    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    async def plan(self, scope: str, partitions: int) -> list[Any] | None:
        async with self._store.connection("read partition plan") as conn:
            text = await conn.fetchval(
                "SELECT points::text FROM strangler.partition_plans"
                " WHERE scope = $1 AND partitions = $2",
                scope,
                partitions,
            )
        return None if text is None else list(orjson.loads(text))

    async def propose(
        self, scope: str, partitions: int, points: list[Any], sampled: int
    ) -> list[Any]:
        async with self._store.connection("store partition plan") as conn:
            await conn.execute(
                "INSERT INTO strangler.partition_plans (scope, partitions, points, sampled)"
                " VALUES ($1, $2, $3::text::jsonb, $4) ON CONFLICT (scope, partitions) DO NOTHING",
                scope,
                partitions,
                orjson.dumps(points).decode(),
                sampled,
            )
        stored = await self.plan(scope, partitions)
        assert stored is not None  # inserted above, or by the process that won the race
        return stored

    async def plans(self) -> list[dict[str, Any]]:
        async with self._store.connection("list partition plans") as conn:
            rows = await conn.fetch(
                "SELECT scope, partitions, jsonb_array_length(points) AS points, sampled,"
                " created_at FROM strangler.partition_plans ORDER BY scope, partitions"
            )
        return [
            {
                "scope": r["scope"],
                "partitions": r["partitions"],
                "points": r["points"],
                "sampled": r["sampled"],
                "created_at": r["created_at"].isoformat(),
            }
            for r in rows
        ]

    async def forget(self, scope: str | None = None, partitions: int | None = None) -> int:
        async with self._store.connection("forget partition plans") as conn:
            status: str = await conn.execute(
                "DELETE FROM strangler.partition_plans"
                " WHERE ($1::text IS NULL OR scope = $1) AND ($2::int IS NULL OR partitions = $2)",
                scope,
                partitions,
            )
        return int(status.rsplit(" ", 1)[-1])


class PostgresIdSampler:
    """``TABLESAMPLE SYSTEM`` (whole pages at random) sized from the planner's row
    estimate; a small or unanalysed table is read whole."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    async def sample_uuids(self, table: Table, size: int) -> list[uuid.UUID]:
        if table not in TABLES:
            raise InvalidInput(f"unknown table {table!r}")
        async with self._store.connection(f"sample {table}") as conn:
            estimate = await conn.fetchval(
                "SELECT reltuples::bigint FROM pg_class WHERE oid = $1::regclass", table
            )
            if estimate is None or estimate < size * 4:
                rows = await conn.fetch(f"SELECT id FROM {table} ORDER BY random() LIMIT $1", size)
            else:
                share = min(100.0, 100.0 * size * 2 / estimate)
                rows = await conn.fetch(
                    f"SELECT id FROM {table} TABLESAMPLE SYSTEM ($1) LIMIT $2", share, size * 2
                )
        return [r[0] for r in rows]
