"""strangler's own records in Postgres: the write journal, the shared stage and its history,
and divergence records (tables from ``20261125000100_strangler_control.sql``)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from strangler.backends.postgres import PostgresStore
from strangler.backends.postgres_outbox import PUBLISH_EVENT, EventDraft, MessageOutbox
from strangler.models import Message
from strangler.proxy.journal import PendingWrite
from strangler.proxy.stages import Role, Stage

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
            rows = await conn.fetch(
                "UPDATE strangler.pending_writes SET next_at = now() + make_interval(secs => $3)"
                " WHERE id IN (SELECT id FROM strangler.pending_writes"
                " WHERE target = ANY($1::text[]) AND next_at <= now()"
                " ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)"
                " RETURNING id, target, table_name, record_id, attempts, last_error, created_at",
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


@dataclass(frozen=True)
class StageRecord:
    stage: Stage
    changed_at: dt.datetime
    origin: str
    reason: str | None


class PostgresControl:
    """The stage every instance converges on, its transitions, and divergence records."""

    def __init__(self, store: PostgresStore, *, divergence_retention: int = 10_000) -> None:
        self.store = self._store = store
        self.outbox = MessageOutbox(store)
        self._retention = divergence_retention
        self._since_prune = 0

    async def read_stage(self) -> StageRecord | None:
        async with self._store.connection("read stage") as conn:
            row = await conn.fetchrow(
                "SELECT stage, changed_at, origin, reason FROM strangler.stage_control WHERE id = 1"
            )
        if row is None:
            return None
        return StageRecord(Stage(row[0]), row[1], row[2], row[3])

    async def write_stage(
        self, target: Stage, *, origin: str, reason: str | None, forced: bool, expected: Stage
    ) -> StageRecord:
        """Move the stage from ``expected`` to ``target`` and record the transition.

        Raises ``Conflict`` if another operator changed it first.
        """
        from strangler.errors import Conflict

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
                " forced) VALUES ($1, $2, $3, $4, $5)",
                current.value,
                target.value,
                origin,
                reason,
                forced,
            )
        record = await self.read_stage()
        assert record is not None
        return record

    async def transitions(self, limit: int = 50) -> list[dict[str, Any]]:
        async with self._store.connection("stage history") as conn:
            rows = await conn.fetch(
                "SELECT at, from_stage, to_stage, origin, reason, forced"
                " FROM strangler.stage_transitions ORDER BY id DESC LIMIT $1",
                limit,
            )
        return [dict(r) for r in rows]

    async def record_divergence(
        self, *, stage: Stage, table: str, record_id: str, kind: str, diff: Any
    ) -> None:
        async with self._store.connection("record divergence") as conn:
            await conn.execute(
                "INSERT INTO strangler.divergences (stage, table_name, record_id, kind, diff)"
                " VALUES ($1, $2, $3, $4, $5)",
                stage.value,
                table,
                record_id,
                kind,
                diff,
            )
            self._since_prune += 1
            if self._since_prune >= 100:
                self._since_prune = 0
                await conn.execute(
                    "DELETE FROM strangler.divergences WHERE id <= "
                    "(SELECT max(id) FROM strangler.divergences) - $1",
                    self._retention,
                )

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

    # --- realtime events --------------------------------------------------------------
    async def publish_event(
        self, kind: str, user_id: str, session_id: uuid.UUID, payload: Any
    ) -> int:
        """Append an event and wake every instance's listener; returns its id."""
        async with self._store.connection("publish event") as conn:
            event_id: int = await conn.fetchval(PUBLISH_EVENT, kind, user_id, session_id, payload)
        return event_id

    async def add_message_with(
        self, message: Message, *, park: bool, event: EventDraft | None
    ) -> None:
        """Insert a new message and, in the same statement, its journal entry for MongoDB
        (``park``) and its realtime event (``postgres_outbox``). Errors as
        ``PostgresStore.add_message``."""
        await self.outbox.add(message, park=park, event=event)

    async def events_since(
        self,
        last_id: int,
        *,
        session_id: uuid.UUID | None = None,
        user_id: str | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Events after ``last_id`` (all, or one session's, or one user's), oldest first."""
        where = "id > $1"
        args: list[Any] = [last_id]
        if session_id is not None:
            where += f" AND session_id = ${len(args) + 1}"
            args.append(session_id)
        if user_id is not None:
            where += f" AND user_id = ${len(args) + 1}"
            args.append(user_id)
        async with self._store.connection("read events") as conn:
            rows = await conn.fetch(
                "SELECT id, kind, user_id, session_id, payload FROM strangler.events"
                f" WHERE {where} ORDER BY id LIMIT {int(limit)}",
                *args,
            )
        return [dict(r) for r in rows]

    async def last_event_id(self) -> int:
        async with self._store.connection("read events") as conn:
            n: int = await conn.fetchval("SELECT coalesce(max(id), 0) FROM strangler.events")
        return n

    async def prune_events(self, before: dt.datetime) -> int:
        async with self._store.connection("prune events") as conn:
            status = await conn.execute("DELETE FROM strangler.events WHERE at < $1", before)
        return int(status.rsplit(" ", 1)[-1])

    async def divergences(self, limit: int = 50) -> list[dict[str, Any]]:
        async with self._store.connection("list divergences") as conn:
            rows = await conn.fetch(
                "SELECT id, at, stage, table_name, record_id, kind, diff"
                " FROM strangler.divergences ORDER BY id DESC LIMIT $1",
                limit,
            )
        return [dict(r) for r in rows]
