"""Followers in Postgres (``strangler.followers``): each change follower's durable
position, its lease, and its state.

The lease is a row, not an advisory lock, so it works through Supavisor's transaction
pooler as well: an instance holds follower ``name`` while ``lease_until`` is in the future
and renews it well before then; when it dies, another takes over once the lease ends.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson

from strangler.backends.postgres.store import PostgresStore
from strangler.core.records import FeedPosition, FollowerRecord

_COLUMNS = (
    "name, position::text, position_at, state, state_reason, leader, lease_until, applied,"
    " bypass, reported, updated_at"
)


def _record(row: Any) -> FollowerRecord:
    return FollowerRecord(
        name=row[0],
        position=None if row[1] is None else orjson.loads(row[1]),
        position_at=row[2],
        state=row[3],
        state_reason=row[4],
        leader=row[5],
        lease_until=row[6],
        applied=row[7],
        bypass=row[8],
        reported=row[9],
        updated_at=row[10],
    )


class PostgresFollowerState:
    """``FollowerState`` over a Postgres store."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    async def claim(self, name: str, instance: str, lease_seconds: float) -> bool:
        async with self._store.connection("claim follower") as conn:
            leader = await conn.fetchval(
                "INSERT INTO strangler.followers (name, leader, lease_until)"
                " VALUES ($1, $2, now() + make_interval(secs => $3))"
                " ON CONFLICT (name) DO UPDATE SET leader = $2,"
                " lease_until = now() + make_interval(secs => $3)"
                " WHERE strangler.followers.leader IS NULL"
                " OR strangler.followers.leader = $2"
                " OR strangler.followers.lease_until < now()"
                " RETURNING leader",
                name,
                instance,
                lease_seconds,
            )
        return bool(leader == instance)

    async def release(self, name: str, instance: str) -> None:
        async with self._store.connection("release follower") as conn:
            await conn.execute(
                "UPDATE strangler.followers SET leader = NULL, lease_until = NULL"
                " WHERE name = $1 AND leader = $2",
                name,
                instance,
            )

    async def load(self, name: str) -> FollowerRecord | None:
        async with self._store.connection("read follower") as conn:
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM strangler.followers WHERE name = $1", name
            )
        return None if row is None else _record(row)

    async def advance(
        self,
        name: str,
        instance: str,
        position: FeedPosition,
        at: dt.datetime | None,
        *,
        applied: int = 0,
        bypass: int = 0,
        reported: int = 0,
        lag_seconds: float | None = None,
    ) -> bool:
        async with self._store.connection("advance follower") as conn:
            status: str = await conn.execute(
                "UPDATE strangler.followers SET position = $3::text::jsonb,"
                " position_at = coalesce($4, position_at), applied = applied + $5,"
                " bypass = bypass + $6, reported = reported + $7, updated_at = now(),"
                " lag_seconds = coalesce($8, lag_seconds)"
                " WHERE name = $1 AND leader = $2 AND lease_until > now()",
                name,
                instance,
                orjson.dumps(position).decode(),
                at,
                applied,
                bypass,
                reported,
                lag_seconds,
            )
        return status.endswith(" 1")

    async def mark(self, name: str, state: str, reason: str | None) -> None:
        async with self._store.connection("mark follower") as conn:
            await conn.execute(
                "INSERT INTO strangler.followers (name, state, state_reason) VALUES ($1, $2, $3)"
                " ON CONFLICT (name) DO UPDATE SET state = $2, state_reason = $3,"
                " updated_at = now()",
                name,
                state,
                reason,
            )

    async def reset(self, name: str, position: FeedPosition | None) -> None:
        async with self._store.connection("reset follower") as conn:
            await conn.execute(
                "INSERT INTO strangler.followers (name, position, state)"
                " VALUES ($1, $2::text::jsonb, 'running')"
                " ON CONFLICT (name) DO UPDATE SET position = $2::text::jsonb,"
                " position_at = NULL, state = 'running', state_reason = NULL,"
                " updated_at = now()",
                name,
                None if position is None else orjson.dumps(position).decode(),
            )
