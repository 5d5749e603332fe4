"""Tombstones in Postgres (``strangler.tombstones``): deletes made through the facade,
which a backfill must not undo."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

from strangler.backends.postgres.store import PostgresStore


class PostgresTombstones:
    """Deletes recorded before they reach the new store."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    async def tombstone(self, table: str, record_ids: Sequence[uuid.UUID]) -> None:
        """Record that these rows were deleted (before the delete reaches this database)."""
        async with self._store.connection("write tombstone") as conn:
            await conn.executemany(
                "INSERT INTO strangler.tombstones (table_name, record_id) VALUES ($1, $2)"
                " ON CONFLICT (table_name, record_id) DO UPDATE SET deleted_at = now()",
                [(table, i) for i in record_ids],
            )

    async def prune_tombstones(self, before: dt.datetime, *, dry_run: bool = False) -> int:
        """Forget deletes made before ``before``; returns how many (would be) pruned.

        A tombstone protects a delete from a backfill whose source is older than the
        delete. Once no backfill will run from a source older than ``before``, the older
        tombstones are dead weight."""
        async with self._store.connection("prune tombstones") as conn:
            if dry_run:
                n: int = await conn.fetchval(
                    "SELECT count(*) FROM strangler.tombstones WHERE deleted_at < $1", before
                )
                return n
            status = await conn.execute(
                "DELETE FROM strangler.tombstones WHERE deleted_at < $1", before
            )
        return int(status.rsplit(" ", 1)[-1])

    async def any_tombstones(self, table: str) -> bool:
        """Whether any delete of ``table`` was recorded (a cheap check before a lookup)."""
        async with self._store.connection("read tombstones") as conn:
            found: bool = await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM strangler.tombstones WHERE table_name = $1)", table
            )
        return found

    async def tombstoned(self, table: str, record_ids: Sequence[uuid.UUID | str]) -> set[uuid.UUID]:
        """Which of ``record_ids`` were deleted through the facade."""
        if not record_ids:
            return set()
        async with self._store.connection("read tombstones") as conn:
            rows = await conn.fetch(
                "SELECT record_id FROM strangler.tombstones"
                " WHERE table_name = $1 AND record_id = ANY($2::uuid[])",
                table,
                list(record_ids),
            )
        return {r[0] for r in rows}
