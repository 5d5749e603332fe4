"""PostgresStore specifics: no statement cache behind Supavisor's transaction pooler, and the
backfill's bulk load."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from strangler.backends.postgres import PostgresStore
from strangler.core.errors import NotFound
from strangler.core.models import ChatSession, Message
from strangler.core.pgcopy import CopyRows, RowWriter


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


def _row(sid: uuid.UUID, text: str) -> tuple[object, ...]:
    at = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    return (
        str(uuid.uuid4()),
        str(sid),
        "user",
        f'{{"text": "{text}"}}'.encode(),
        at,
        None,
        None,
        None,
    )


def _encoded(rows: list[tuple[object, ...]]) -> CopyRows:
    writer = RowWriter("messages")
    for row in rows:
        writer.row(row)
    return writer.done()


async def test_bulk_load_never_overwrites_and_survives_conflicts(clean_pg: str) -> None:
    """Straight COPY while nothing conflicts; a batch that meets an existing row (here one
    the facade wrote, with a newer value) is merged instead, keeping the existing row."""
    async with PostgresStore(clean_pg) as store:
        s = await store.create_session(ChatSession.new(title="t", user_id="u"))
        first = [_row(s.id, f"a{i}") for i in range(50)]
        assert await store.insert_rows("messages", _encoded(first)) == 50
        newer = await store.get_message(first[0][0])
        await store.upsert_messages([newer.model_copy(update={"content": {"text": "newer"}})])
        mixed = [(*first[0][:3], b'{"text": "legacy"}', *first[0][4:]), _row(s.id, "b")]
        assert await store.insert_rows("messages", _encoded(mixed)) == 1
        assert (await store.get_message(first[0][0])).content == {"text": "newer"}
        assert await store.insert_rows("messages", _encoded([_row(s.id, "c")])) == 1
        assert await store.count("messages") == 52
        with pytest.raises(NotFound):  # a message whose session is gone
            await store.insert_rows("messages", _encoded([_row(uuid.uuid4(), "orphan")]))
