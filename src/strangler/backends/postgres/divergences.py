"""Divergence records in Postgres (``strangler.divergences``), pruned to the latest
``retention``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from strangler.backends.postgres.store import PostgresStore
from strangler.core.stages import Stage


class PostgresDivergenceLog:
    """Where shadow reads record what they found different."""

    def __init__(self, store: PostgresStore, *, retention: int = 10_000) -> None:
        self._store = store
        self._retention = retention
        self._since_prune = 0

    async def record_divergence(
        self, *, stage: Stage, table: str, record_id: str, kind: str, diff: Any
    ) -> None:
        await self.record_many(stage=stage, rows=[(table, record_id, kind, diff)])

    async def record_many(self, *, stage: Stage, rows: Sequence[tuple[str, str, str, Any]]) -> None:
        if not rows:
            return
        async with self._store.connection("record divergences") as conn:
            await conn.executemany(
                "INSERT INTO strangler.divergences (stage, table_name, record_id, kind, diff)"
                " VALUES ($1, $2, $3, $4, $5)",
                [(stage.value, *row) for row in rows],
            )
            self._since_prune += len(rows)
            if self._since_prune >= 100:
                self._since_prune = 0
                await conn.execute(
                    "DELETE FROM strangler.divergences WHERE id <= "
                    "(SELECT max(id) FROM strangler.divergences) - $1",
                    self._retention,
                )

    async def divergences(self, limit: int = 50) -> list[dict[str, Any]]:
        async with self._store.connection("list divergences") as conn:
            rows = await conn.fetch(
                "SELECT id, at, stage, table_name, record_id, kind, diff"
                " FROM strangler.divergences ORDER BY id DESC LIMIT $1",
                limit,
            )
        return [dict(r) for r in rows]
