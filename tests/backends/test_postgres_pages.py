"""History pages rendered by Postgres (``backends.postgres.pages``) are the API's JSON for
the page ``PostgresStore.history`` gives: same items, order, cursors and ``has_more``."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strangler.api.serialize import page_json
from strangler.backends.postgres import PostgresStore
from strangler.backends.postgres.pages import history_json
from strangler.core.errors import InvalidInput
from strangler.core.models import ChatSession, Message
from strangler.core.records import Keyset

T0 = dt.datetime(2024, 3, 1, 12, 0, tzinfo=dt.UTC)

ODD_CONTENT: list[Any] = [
    {"type": "conversation", "text": "plain"},
    {"type": "conversation", "text": 'quotes " and \\ backslash / slash'},
    {"type": "conversation", "text": "line\nbreak\ttab \u0001 \u001f \u007f"},
    {"type": "conversation", "text": "ünïcödé 中文 🎉 \u2028 \u2029 \ufffd"},
    {"type": "audio", "audioFile": "UklGRiQAAABXQVZF", "text": None},
    {"type": "x", "nested": {"list": [1, 2.5, -0.0, True, False, None, [], {}]}},
    {"type": "x", "big": 12345678901234567, "tiny": 1e-7, "float": 0.1, "e": 1e300},
    {"type": "x", "": "empty key", "key with spaces": 1, "ключ": "v"},
    {"type": "x", "text": "'; DROP TABLE messages; --"},
    "a bare string",
    [1, "two", {"three": 3}],
]


def _msg(sid: uuid.UUID, i: int, **fields: Any) -> Message:
    """A message as the backfill stores legacy ones: any JSON content, no strict check."""
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "session_id": sid,
        "sender": "user" if i % 2 else "assistant",
        "content": {"type": "conversation", "text": f"m{i}"},
        "timestamp": T0 + dt.timedelta(seconds=i),
        **fields,
    }
    return Message.model_validate(values)


async def _add(store: PostgresStore, *messages: Message) -> None:
    assert await store.upsert_messages(messages) == len(messages)


async def _same(
    store: PostgresStore,
    sid: uuid.UUID,
    limit: int,
    after: Keyset | None = None,
    before: Keyset | None = None,
) -> dict[str, Any]:
    page = await store.history(sid, limit=limit, after=after, before=before)
    rendered = await history_json(store, sid, limit=limit, after=after, before=before)
    expected = page_json(page, Keyset.of_message)
    got = orjson.loads(rendered.body())
    assert got == expected
    assert rendered.has_more == page.has_more
    if page.items:
        assert rendered.first == (page.items[0].timestamp, page.items[0].id)
        assert rendered.last == (page.items[-1].timestamp, page.items[-1].id)
    else:
        assert rendered.first is None and rendered.last is None
    return got


async def test_every_page_shape_matches_the_record_path(pg_store: PostgresStore) -> None:
    """First pages, pages after and before a cursor, pages past either end, an empty
    session, and ties on the timestamp (the id breaks them)."""
    s = await pg_store.create_session(ChatSession.new(title="t", user_id="u"))
    empty = await pg_store.create_session(ChatSession.new(title="e", user_id="u"))
    msgs = [_msg(s.id, i) for i in range(12)]
    msgs += [_msg(s.id, 100, timestamp=T0 + dt.timedelta(seconds=5)) for _ in range(4)]
    await _add(pg_store, *msgs)
    ordered = sorted(msgs, key=lambda m: (m.timestamp, m.id))
    for limit in (1, 3, 5, 16, 17, 1000):
        got = await _same(pg_store, s.id, limit)
        assert [x["id"] for x in got["items"]] == [str(m.id) for m in ordered[:limit]]
        assert got["has_more"] is (limit < len(ordered))
        for m in (ordered[0], ordered[5], ordered[6], ordered[-1]):
            at = Keyset.of_message(m)
            await _same(pg_store, s.id, limit, after=at)
            await _same(pg_store, s.id, limit, before=at)
    end = Keyset(dt.datetime(9999, 1, 1, tzinfo=dt.UTC), uuid.UUID(int=0))
    start = Keyset(dt.datetime(1970, 1, 1, tzinfo=dt.UTC), uuid.UUID(int=0))
    newest = await _same(pg_store, s.id, 5, before=end)
    assert [x["id"] for x in newest["items"]] == [str(m.id) for m in ordered[-5:]]
    assert (await _same(pg_store, s.id, 5, after=end))["items"] == []
    assert (await _same(pg_store, s.id, 5, before=start))["items"] == []
    assert (await _same(pg_store, empty.id, 50))["items"] == []


@pytest.mark.parametrize("content", ODD_CONTENT, ids=lambda c: repr(c)[:30])
async def test_odd_content_renders_to_the_same_value(pg_store: PostgresStore, content: Any) -> None:
    s = await pg_store.create_session(ChatSession.new(title="t", user_id="u"))
    await _add(pg_store, _msg(s.id, 1, content=content))
    await _same(pg_store, s.id, 10)


async def test_attachments_senders_and_timestamps(pg_store: PostgresStore) -> None:
    """Attachment columns and null ones, and timestamps at the edges of what
    both paths print: whole seconds, .999 ms, and the years 1970 and 9999."""
    s = await pg_store.create_session(ChatSession.new(title="t", user_id="u"))
    edge = [
        dt.datetime(1970, 1, 1, tzinfo=dt.UTC),
        dt.datetime(2024, 1, 1, 0, 0, 0, 999000, tzinfo=dt.UTC),
        dt.datetime(2024, 1, 1, 0, 0, 1, tzinfo=dt.UTC),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=dt.UTC),
    ]
    for i, at in enumerate(edge):
        await _add(
            pg_store,
            _msg(
                s.id,
                i,
                timestamp=at,
                audio="data:audio/wav;base64,AAAA" if i % 2 else None,
                image="data:image/png;base64,iVBORw0KGgo=" if i == 2 else None,
                pdf="data:application/pdf;base64,JVBERi0=" if i == 3 else None,
            ),
        )
    got = await _same(pg_store, s.id, 10)
    assert [x["timestamp"] for x in got["items"]] == [
        "1970-01-01T00:00:00.000Z",
        "2024-01-01T00:00:00.999Z",
        "2024-01-01T00:00:01.000Z",
        "9999-12-31T23:59:59.999Z",
    ]


async def test_microseconds_in_stored_rows_are_truncated_like_the_record_path(
    pg_store: PostgresStore,
) -> None:
    """Rows written outside strangler may hold microseconds; both paths cut them to ms."""
    s = await pg_store.create_session(ChatSession.new(title="t", user_id="u"))
    m = _msg(s.id, 1)
    await _add(pg_store, m)
    async with pg_store.connection("test") as conn:
        await conn.execute(
            "UPDATE messages SET timestamp = $1 WHERE id = $2",
            dt.datetime(2024, 5, 5, 1, 2, 3, 456789, tzinfo=dt.UTC),
            m.id,
        )
    got = await _same(pg_store, s.id, 10)
    assert got["items"][0]["timestamp"] == "2024-05-05T01:02:03.456Z"


#: Text Postgres can hold (no U+0000; the API refuses it and the backfill replaces it).
texts = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | texts
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=12,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(content=st.dictionaries(texts, json_values, max_size=5))
async def test_any_json_content_renders_to_the_same_value(
    pg_store: PostgresStore, content: dict[str, Any]
) -> None:
    s = await pg_store.create_session(ChatSession.new(title="t", user_id="u"))
    await _add(pg_store, _msg(s.id, 1, content={"type": "x", **content}))
    await _same(pg_store, s.id, 10)


async def test_bad_arguments_are_refused_like_history(pg_store: PostgresStore) -> None:
    at = Keyset(T0, uuid.uuid4())
    with pytest.raises(InvalidInput):
        await history_json(pg_store, uuid.uuid4(), limit=0)
    with pytest.raises(InvalidInput):
        await history_json(pg_store, uuid.uuid4(), after=at, before=at)
    with pytest.raises(InvalidInput):
        await history_json(pg_store, "not-an-id")


async def test_works_without_a_prepared_statement_cache(clean_pg: str) -> None:
    """Behind Supavisor's transaction pooler the store runs with statement_cache_size=0."""
    async with PostgresStore(clean_pg, statement_cache_size=0) as store:
        s = await store.create_session(ChatSession.new(title="t", user_id="u"))
        await _add(store, *(_msg(s.id, i) for i in range(3)))
        for _ in range(2):
            await _same(store, s.id, 2)
            newest = await history_json(
                store, s.id, limit=2, before=Keyset(T0.replace(year=2999), uuid.UUID(int=0))
            )
            assert newest.has_more and newest.first is not None
            assert (await _same(store, s.id, 2, before=Keyset(*newest.first)))["items"]
