"""PostgresStore specifics: behind Supavisor's transaction pooler there is no statement cache."""

from __future__ import annotations

import datetime as dt

from strangler.backends.postgres import PostgresStore
from strangler.models import ChatSession, Message


async def test_works_without_a_prepared_statement_cache(clean_pg: str) -> None:
    async with PostgresStore(clean_pg, statement_cache_size=0) as store:
        s = await store.create_session(ChatSession.new(title="pooler", user_id="u"))
        msgs = [
            Message.new(
                session_id=s.id,
                sender="user",
                content={"type": "conversation", "text": str(i)},
                timestamp=dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=i),
            )
            for i in range(20)
        ]
        for _ in range(2):  # the COPY staging table is reused within a session
            assert await store.upsert_messages(msgs) == 20
        assert (await store.history(s.id, limit=50)).items == msgs
        assert [x.id for x in (await store.list_sessions("u")).items] == [s.id]
