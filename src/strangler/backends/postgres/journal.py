"""The write journal in Postgres (``strangler.pending_writes``): secondary writes that
still have to land, claimed by one replayer at a time with a lease."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from strangler.backends.postgres.store import PostgresStore
from strangler.core.records import PendingWrite, Table
from strangler.core.stages import Role

#: How long a replayer holds the journal entries it took (``PostgresJournal.due``).
LEASE_SECONDS = 30.0


class PostgresJournal:
    """Pending secondary writes, in ``strangler.pending_writes``."""

    name = "postgres"

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    async def add(self, entries: Sequence[PendingWrite]) -> None:
        if not entries:
            return
        async with self._store.connection("journal add") as conn:
            # One statement for any number of entries: one round trip.
            await conn.execute(
                "INSERT INTO strangler.pending_writes (target, table_name, record_id, created_at)"
                " SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::timestamptz[])",
                [e.target for e in entries],
                [e.table for e in entries],
                [e.record_id for e in entries],
                [e.created_at for e in entries],
            )

    async def due(self, targets: Sequence[Role], limit: int) -> list[PendingWrite]:
        async with self._store.connection("journal due") as conn:
            # Claimed for LEASE_SECONDS: another instance's replayer skips them, and if this
            # one dies they are due again when the lease ends.
            # The claim is a MATERIALIZED CTE: as ``id IN (SELECT ... LIMIT ...)`` the
            # planner may run the subquery more than once, and a batch of 500 came back
            # with 1,091 entries.
            rows = await conn.fetch(
                "WITH claim AS MATERIALIZED (SELECT id FROM strangler.pending_writes"
                " WHERE target = ANY($1::text[]) AND next_at <= now()"
                " ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)"
                " UPDATE strangler.pending_writes p"
                " SET next_at = now() + make_interval(secs => $3)"
                " FROM claim WHERE p.id = claim.id"
                " RETURNING p.id, p.target, p.table_name, p.record_id, p.attempts,"
                " p.last_error, p.created_at",
                list(targets),
                limit,
                LEASE_SECONDS,
            )
            rows = sorted(rows, key=lambda r: r[0])
        return [
            PendingWrite(
                target=r[1],
                table=r[2],
                record_id=r[3],
                key=r[0],
                attempts=r[4],
                last_error=r[5],
                created_at=r[6],
            )
            for r in rows
        ]

    async def done(self, entries: Sequence[PendingWrite]) -> None:
        if entries:
            async with self._store.connection("journal done") as conn:
                await conn.execute(
                    "DELETE FROM strangler.pending_writes WHERE id = ANY($1::bigint[])",
                    [e.key for e in entries],
                )

    async def retry_later(self, entry: PendingWrite, error: str, delay: float) -> None:
        async with self._store.connection("journal retry") as conn:
            await conn.execute(
                "UPDATE strangler.pending_writes SET attempts = attempts + 1, last_error = $2,"
                " next_at = now() + make_interval(secs => $3) WHERE id = $1",
                entry.key,
                error[:500],
                delay,
            )

    async def depth(self, target: Role | None = None) -> int:
        async with self._store.connection("journal depth") as conn:
            if target is None:
                n: int = await conn.fetchval("SELECT count(*) FROM strangler.pending_writes")
            else:
                n = await conn.fetchval(
                    "SELECT count(*) FROM strangler.pending_writes WHERE target = $1", target
                )
        return n

    async def depths(self) -> dict[Role, int]:
        async with self._store.connection("journal depth") as conn:
            rows = await conn.fetch(
                "SELECT target, count(*) FROM strangler.pending_writes GROUP BY target"
            )
        out: dict[Role, int] = {"old": 0, "new": 0}
        for target, n in rows:
            if target in out:
                out[target] = int(n)
        return out

    async def hurry(self, target: Role) -> None:
        async with self._store.connection("journal hurry") as conn:
            await conn.execute(
                "UPDATE strangler.pending_writes SET next_at = now()"
                " WHERE target = $1 AND next_at > now()",
                target,
            )

    async def discard(self, target: Role) -> int:
        async with self._store.connection("journal discard") as conn:
            status: str = await conn.execute(
                "DELETE FROM strangler.pending_writes WHERE target = $1", target
            )
        return int(status.rsplit(" ", 1)[-1])

    async def pending_ids(
        self, target: Role, table: Table, record_ids: Sequence[uuid.UUID]
    ) -> set[uuid.UUID]:
        if not record_ids:
            return set()
        async with self._store.connection("journal lookup") as conn:
            rows = await conn.fetch(
                "SELECT DISTINCT record_id FROM strangler.pending_writes"
                " WHERE target = $1 AND table_name = $2 AND record_id = ANY($3::uuid[])",
                target,
                table,
                list(record_ids),
            )
        return {r[0] for r in rows}
