"""The shared stage in Postgres (``strangler.stage_control``) and its history
(``strangler.stage_transitions``)."""

from __future__ import annotations

from typing import Any

import orjson

from strangler.backends.postgres.store import PostgresStore
from strangler.core.errors import Conflict
from strangler.core.stages import Stage, StageRecord


class PostgresStageStore:
    """The stage every instance converges on, and its transitions."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    async def read_stage(self) -> StageRecord | None:
        async with self._store.connection("read stage") as conn:
            row = await conn.fetchrow(
                "SELECT stage, changed_at, origin, reason FROM strangler.stage_control WHERE id = 1"
            )
        if row is None:
            return None
        return StageRecord(Stage(row[0]), row[1], row[2], row[3])

    async def write_stage(
        self,
        target: Stage,
        *,
        origin: str,
        reason: str | None,
        forced: bool,
        expected: Stage,
        missing: list[dict[str, Any]] | None = None,
    ) -> StageRecord:
        """Move the stage from ``expected`` to ``target`` and record the transition.

        Raises ``Conflict`` if another operator changed it first.
        """
        async with self._store.connection("write stage") as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT stage FROM strangler.stage_control WHERE id = 1 FOR UPDATE"
            )
            current = Stage(row[0]) if row else Stage.OFF
            if current != expected:
                raise Conflict(f"the stage changed to {current} meanwhile; check and try again")
            await conn.execute(
                "INSERT INTO strangler.stage_control (id, stage, changed_at, origin, reason)"
                " VALUES (1, $1, now(), $2, $3) ON CONFLICT (id) DO UPDATE SET stage = $1,"
                " changed_at = now(), origin = $2, reason = $3",
                target.value,
                origin,
                reason,
            )
            await conn.execute(
                "INSERT INTO strangler.stage_transitions (from_stage, to_stage, origin, reason,"
                " forced, missing) VALUES ($1, $2, $3, $4, $5, $6::text::jsonb)",
                current.value,
                target.value,
                origin,
                reason,
                forced,
                None if not missing else orjson.dumps(missing).decode(),
            )
        record = await self.read_stage()
        assert record is not None
        return record

    async def transitions(self, limit: int = 50) -> list[dict[str, Any]]:
        async with self._store.connection("stage history") as conn:
            rows = await conn.fetch(
                "SELECT at, from_stage, to_stage, origin, reason, forced, missing::text"
                " FROM strangler.stage_transitions ORDER BY id DESC LIMIT $1",
                limit,
            )
        out = []
        for r in rows:
            row = dict(r.items())  # an asyncpg Record iterates over its values, not its keys
            missing = row.pop("missing")
            out.append({**row, "missing": None if missing is None else orjson.loads(missing)})
        return out
