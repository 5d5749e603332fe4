"""The realtime event log in Postgres (``strangler.events``), announced with
``NOTIFY strangler_events`` so every instance's listener wakes."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from strangler.backends.postgres.outbox import PUBLISH_EVENT
from strangler.backends.postgres.store import PostgresStore

CHANNEL = "strangler_events"


class PostgresEventLog:
    """Appends, reads and prunes events; ``listen`` holds a LISTEN connection."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    async def publish_event(
        self, kind: str, user_id: str, session_id: uuid.UUID, payload: Any
    ) -> int:
        """Append an event and wake every instance's listener; returns its id."""
        async with self._store.connection("publish event") as conn:
            event_id: int = await conn.fetchval(PUBLISH_EVENT, kind, user_id, session_id, payload)
        return event_id

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

    @asynccontextmanager
    async def listen(self, notified: Callable[[], None]) -> AsyncIterator[asyncio.Event]:
        """Call ``notified`` on every NOTIFY while the block runs; the yielded event is set
        when the connection is lost. Errors (``StranglerError``) as the store's."""
        closed = asyncio.Event()

        def on_notify(*_: Any) -> None:
            notified()

        async with self._store.connection("listen for events", bounded=False) as conn:
            conn.add_termination_listener(lambda _: closed.set())
            await conn.add_listener(CHANNEL, on_notify)
            try:
                yield closed
            finally:
                if not conn.is_closed():
                    await conn.remove_listener(CHANNEL, on_notify)
