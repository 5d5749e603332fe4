"""The originals of one-way legacy ids, in Postgres (``strangler.legacy_ids``)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import orjson

from strangler.backends.postgres.store import PostgresStore
from strangler.core.records import Table


class PostgresLegacyIds:
    """``LegacyIds`` over the direct store. Each original is kept as JSON (a string, or an
    integer, which ``jsonb`` holds exactly)."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    async def remember(self, table: Table, pairs: Sequence[tuple[uuid.UUID, str | int]]) -> None:
        if not pairs:
            return
        async with self._store.connection("remember legacy ids") as conn:
            await conn.execute(
                "INSERT INTO strangler.legacy_ids (table_name, id, legacy)"
                " SELECT $1, u, l::jsonb FROM unnest($2::uuid[], $3::text[]) AS t(u, l)"
                " ON CONFLICT (table_name, id) DO NOTHING",
                table,
                [record_id for record_id, _ in pairs],
                [orjson.dumps(legacy).decode() for _, legacy in pairs],
            )

    async def originals(
        self, table: Table, record_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, str | int]:
        if not record_ids:
            return {}
        async with self._store.connection("read legacy ids") as conn:
            rows = await conn.fetch(
                "SELECT id, legacy::text FROM strangler.legacy_ids"
                " WHERE table_name = $1 AND id = ANY($2::uuid[])",
                table,
                list(record_ids),
            )
        out: dict[uuid.UUID, str | int] = {}
        for record_id, text in rows:
            value = orjson.loads(text)
            if isinstance(value, str | int) and not isinstance(value, bool):
                out[record_id] = value
        return out
