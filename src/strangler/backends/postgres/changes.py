"""The change log in Postgres (``strangler.changes``, kept by triggers) as a
``ChangeFeed``: every change to ``chat_sessions`` and ``messages``, whoever made it.

The log is a queue, not a stream: applied changes are deleted (``applied``), so what is in
it is what is still to copy, and nothing grows without bound. Ids come from a sequence and
a transaction can commit after a later one, so besides reading past the last id it handed
out, the feed picks up any older row that appeared late (a straggler).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

from strangler.backends.postgres.store import PostgresStore
from strangler.core import origin
from strangler.core.records import Change, ChangeBatch, FeedPosition, Table

TABLES: dict[str, Table] = {"chat_sessions": "chat_sessions", "messages": "messages"}
#: The stages whose changes the reverse follower copies; others' are pruned when idle.
REVERSE_STAGES = ("live", "rampdown", "complete")
_COLUMNS = "id, at, table_name, record_id, op, origin"


class PostgresChangeFeed:
    """``ChangeFeed`` over a Postgres store's change log."""

    name = "postgres"

    def __init__(self, store: PostgresStore, *, batch: int = 500, poll: float = 0.1) -> None:
        self._store = store
        self._batch = batch
        self._poll = poll
        self._inflight: set[int] = set()

    async def position_now(self) -> FeedPosition:
        return {"ids": [], "at": dt.datetime.now(dt.UTC).isoformat()}

    async def depth(self, *, facade_writes: bool = True) -> int:
        """Changes MongoDB does not have yet: never the forward follower's (copied from
        MongoDB, ``core.origin``). With ``facade_writes=False`` (at ``live`` and
        ``rampdown``) the facade's own writes are left out too where they reached MongoDB
        inline (or its journal has them): all but those made at ``complete``, where it
        writes Supabase alone. Under steady traffic that is 0, not the few changes in
        flight."""
        where = " WHERE (origin IS NULL OR left(origin, $1) <> $2)"
        if not facade_writes:
            where += " AND (origin IS DISTINCT FROM $3 OR stage = 'complete')"
        args = [len(origin.FOLLOWER_PREFIX), origin.FOLLOWER_PREFIX]
        if not facade_writes:
            args.append(origin.FACADE)
        async with self._store.connection("change log depth") as conn:
            n: int = await conn.fetchval(f"SELECT count(*) FROM strangler.changes{where}", *args)
        return n

    async def backlog(self) -> int | None:
        """The log's depth: every change in it is still to copy."""
        return await self.depth()

    async def batches(self, after: FeedPosition | None) -> AsyncIterator[ChangeBatch]:
        # The log itself is the position: whatever is in it is still to apply.
        last = 0
        self._inflight.clear()
        while True:
            async with self._store.connection("read change log") as conn:
                rows = await conn.fetch(
                    f"SELECT {_COLUMNS} FROM strangler.changes WHERE id > $1 ORDER BY id LIMIT $2",
                    last,
                    self._batch,
                )
                if not rows:  # stragglers: committed after a later id was handed out
                    rows = await conn.fetch(
                        f"SELECT {_COLUMNS} FROM strangler.changes WHERE id <= $1"
                        " AND id <> ALL($2::bigint[]) ORDER BY id LIMIT $3",
                        last,
                        list(self._inflight),
                        self._batch,
                    )
            if not rows:
                yield ChangeBatch([], {"ids": []}, None)
                await asyncio.sleep(self._poll)
                continue
            ids = [r[0] for r in rows]
            last = max(last, *ids)
            self._inflight.update(ids)
            changes = [_change(r) for r in rows]
            at = max(r[1] for r in rows)
            yield ChangeBatch(changes, {"ids": ids, "at": at.isoformat()}, at)

    async def applied(self, position: FeedPosition) -> None:
        """Forget the changes of a batch once they are copied."""
        ids = list(position.get("ids") or [])
        if not ids:
            return
        async with self._store.connection("prune change log") as conn:
            await conn.execute("DELETE FROM strangler.changes WHERE id = ANY($1::bigint[])", ids)
        self._inflight.difference_update(ids)

    async def prune_idle(self) -> int:
        """Drop changes made while no reverse stage was in effect (the facade's second
        writes at ``dualwrite``): they are not for MongoDB, and would only pile up."""
        async with self._store.connection("prune change log") as conn:
            status: str = await conn.execute(
                "DELETE FROM strangler.changes WHERE stage IS NULL OR stage <> ALL($1::text[])",
                list(REVERSE_STAGES),
            )
        return int(status.rsplit(" ", 1)[-1])


def _change(row: Any) -> Change:
    return Change(
        table=TABLES[row[2]],
        record_id=row[3],
        op=row[4],
        at=row[1],
        legacy_id=row[3],
        origin=row[5],
    )
