"""SupabaseRestStore at the HTTP boundary: the exact requests it sends to PostgREST (method,
path, query operators, Prefer and Range headers, body), and how it handles PostgREST's
answers and failures. No PostgREST can run here; ``httpx.MockTransport`` stands at the
transport supabase-py uses, answering as PostgREST documents."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from strangler.backends.supabase_rest import SupabaseRestStore
from strangler.core.errors import Conflict, InvalidInput, NotFound, StoreError, StoreUnavailable
from strangler.core.models import ChatSession, Message
from strangler.core.pgcopy import RowWriter
from strangler.core.records import Keyset

URL = "https://project.supabase.co"
AT = dt.datetime(2026, 11, 25, 9, 0, 0, 123000, tzinfo=dt.UTC)


class PostgREST:
    """Records requests; answers each with the next queued response (or ``[]``)."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.answers: list[Callable[[httpx.Request], httpx.Response]] = []

    def answer(self, status: int = 200, body: Any = None, **headers: str) -> None:
        def make(req: httpx.Request) -> httpx.Response:
            content = body if isinstance(body, bytes) else json.dumps(body).encode()
            if body is None:
                content = b"" if status in (201, 204) else b"[]"
            return httpx.Response(status, content=content, headers=headers)

        self.answers.append(make)

    def fail(self, exc: Exception) -> None:
        def raise_(req: httpx.Request) -> httpx.Response:
            raise exc

        self.answers.append(raise_)

    def __call__(self, req: httpx.Request) -> httpx.Response:
        self.requests.append(req)
        if self.answers:
            return self.answers.pop(0)(req)
        return httpx.Response(200, json=[])

    def query(self, i: int = -1) -> list[tuple[str, str]]:
        return parse_qsl(self.requests[i].url.query.decode(), keep_blank_values=True)


@pytest.fixture
async def rest() -> Any:
    server = PostgREST()
    store = SupabaseRestStore(URL, "service-role-key", transport=httpx.MockTransport(server))
    async with store:
        yield store, server
    assert store._http is None  # closed on exit


def _session_row(**over: Any) -> dict[str, Any]:
    return {
        "id": "65e1c340-5f11-8000-8000-37d8f8f58fea",
        "title": "Trip",
        "created_at": "2026-11-25T09:00:00.123+00:00",
        "user_id": "u1",
        **over,
    }


async def test_create_session_posts_the_row_and_asks_for_no_body(rest: Any) -> None:
    store, server = rest
    server.answer(201)
    s = ChatSession.new(title="Trip", user_id="u1", created_at=AT)
    await store.create_session(s)
    req = server.requests[0]
    assert req.method == "POST" and req.url.path == "/rest/v1/chat_sessions"
    assert "return=minimal" in req.headers["prefer"]
    assert "missing=default" not in req.headers["prefer"]  # default_to_null: explicit nulls
    assert json.loads(req.content) == {
        "id": str(s.id),
        "title": "Trip",
        "created_at": "2026-11-25T09:00:00.123Z",
        "user_id": "u1",
    }
    assert req.headers["apikey"] == "service-role-key"


async def test_get_session_filters_by_id_and_maps_an_empty_answer_to_not_found(
    rest: Any,
) -> None:
    store, server = rest
    server.answer(200, [_session_row()])
    s = await store.get_session("65e1c3405f1137d8f8f58fea")  # the legacy form works too
    assert s.title == "Trip" and s.created_at == AT
    assert server.requests[0].method == "GET"
    assert ("id", "eq.65e1c340-5f11-8000-8000-37d8f8f58fea") in server.query(0)
    assert ("select", "id,title,created_at,user_id") in server.query(0)
    server.answer(200, [])
    with pytest.raises(NotFound):
        await store.get_session(uuid.uuid4())


async def test_list_sessions_escapes_search_and_pages_with_a_keyset(rest: Any) -> None:
    store, server = rest
    after = Keyset(AT, uuid.UUID("65e1c340-5f11-8000-8000-37d8f8f58fea"))
    await store.list_sessions("u1", search="50%_off\\", limit=20, after=after)
    q = dict(server.query())
    assert q["user_id"] == "eq.u1"
    assert q["title"] == "ilike.%50\\%\\_off\\\\%"
    assert q["order"] == "created_at.desc,id.desc"
    assert q["or"] == (
        '(created_at.lt."2026-11-25T09:00:00.123Z",'
        'and(created_at.eq."2026-11-25T09:00:00.123Z",id.lt.65e1c340-5f11-8000-8000-37d8f8f58fea))'
    )
    assert (q["offset"], q["limit"]) == ("0", "21")  # limit + 1, to know has_more


async def test_reads_page_past_the_1000_row_cap_instead_of_truncating(rest: Any) -> None:
    store, server = rest
    rows = [_session_row(id=str(uuid.uuid4()), title=f"s{i}") for i in range(1001)]
    server.answer(200, rows[:1000])
    server.answer(200, rows[1000:])
    page = await store.list_sessions("u1", limit=1000)
    assert len(page.items) == 1000 and page.has_more
    pages = [(dict(server.query(i))["offset"], dict(server.query(i))["limit"]) for i in (0, 1)]
    assert pages == [("0", "1000"), ("1000", "1")]


async def test_history_asks_for_rows_after_or_before_a_cursor(rest: Any) -> None:
    store, server = rest
    cursor = Keyset(AT, uuid.UUID(int=5))
    await store.history(uuid.UUID(int=1), limit=10, after=cursor)
    q = dict(server.query())
    assert q["session_id"] == f"eq.{uuid.UUID(int=1)}"
    assert q["order"] == "timestamp.asc,id.asc"
    assert q["or"].startswith('(timestamp.gt."2026-11-25T09:00:00.123Z",')
    await store.history(uuid.UUID(int=1), limit=10, before=cursor)
    q = dict(server.query())
    assert q["order"] == "timestamp.desc,id.desc"
    assert q["or"].startswith('(timestamp.lt."2026-11-25T09:00:00.123Z",')
    with pytest.raises(InvalidInput):
        await store.history(uuid.UUID(int=1), after=cursor, before=cursor)


async def test_bulk_upserts_are_chunked_and_say_what_a_conflict_does(rest: Any) -> None:
    store, server = rest
    sessions = [ChatSession.new(title=f"s{i}", user_id="u", created_at=AT) for i in range(1200)]
    for n in (500, 500, 200):
        server.answer(201, None, **{"content-range": f"*/{n}"})
    assert await store.upsert_sessions(sessions, overwrite=False) == 1200
    assert [len(json.loads(r.content)) for r in server.requests] == [500, 500, 200]
    req = server.requests[0]
    assert req.method == "POST" and ("on_conflict", "id") in server.query(0)
    assert "resolution=ignore-duplicates" in req.headers["prefer"]
    assert "count=exact" in req.headers["prefer"]
    server.answer(201, None, **{"content-range": "*/1"})
    await store.upsert_sessions(sessions[:1], overwrite=True)
    assert "resolution=merge-duplicates" in server.requests[-1].headers["prefer"]


async def test_backfill_rows_encoded_for_copy_are_posted_as_json_without_overwriting(
    rest: Any,
) -> None:
    """The backfill hands every store rows encoded for ``COPY``; over REST they are read back
    and sent as ignore-duplicates upserts, values intact."""
    store, server = rest
    sid, mid = uuid.uuid4(), uuid.uuid4()
    sessions = RowWriter("chat_sessions")
    sessions.session(str(sid), "Trip", AT, "u1")
    messages = RowWriter("messages")
    messages.message(str(mid), str(sid), "user", b'{"text": "hi"}', AT, None, "aW1n", None)
    server.answer(201, None, **{"content-range": "*/1"})
    server.answer(201, None, **{"content-range": "*/1"})
    assert await store.insert_rows("chat_sessions", sessions.done()) == 1
    assert await store.insert_rows("messages", messages.done()) == 1
    assert json.loads(server.requests[0].content) == [
        {"id": str(sid), "title": "Trip", "created_at": "2026-11-25T09:00:00.123Z", "user_id": "u1"}
    ]
    assert json.loads(server.requests[1].content) == [
        {
            "id": str(mid),
            "session_id": str(sid),
            "sender": "user",
            "content": {"text": "hi"},
            "timestamp": "2026-11-25T09:00:00.123Z",
            "audio": None,
            "image": "aW1n",
            "pdf": None,
        }
    ]
    assert all("resolution=ignore-duplicates" in r.headers["prefer"] for r in server.requests)


async def test_big_rows_split_a_chunk_by_bytes(rest: Any) -> None:
    store, server = rest
    s = ChatSession.new(title="s", user_id="u", created_at=AT)
    big = [
        Message.new(
            session_id=s.id,
            sender="user",
            content={"type": "conversation", "text": "x" * 1_500_000},
            timestamp=AT,
        )
        for _ in range(5)
    ]
    for _ in range(3):
        server.answer(201, None, **{"content-range": "*/2"})
    await store.upsert_messages(big)
    assert [len(json.loads(r.content)) for r in server.requests] == [2, 2, 1]


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (409, {"code": "23505", "message": "duplicate key"}, Conflict),
        (409, {"code": "23503", "message": "violates foreign key"}, NotFound),
        (400, {"code": "22P02", "message": "invalid input syntax"}, InvalidInput),
        # A request PostgREST cannot answer is a failure, not an outage: retrying will not
        # help (the shared error policy, backends/errors.py).
        (406, {"code": "PGRST116", "message": "JSON object requested"}, StoreError),
        (500, b"<html>Internal Server Error</html>", StoreUnavailable),
        (502, b"Bad gateway", StoreUnavailable),
    ],
)
async def test_postgrest_errors_map_onto_the_errors_tree(
    rest: Any, status: int, body: Any, error: type[Exception]
) -> None:
    store, server = rest
    server.answer(status, body)
    s = ChatSession.new(title="t", user_id="u", created_at=AT)
    m = Message.new(session_id=s.id, sender="user", content={"type": "conversation"}, timestamp=AT)
    with pytest.raises(error):
        await store.add_message(m)
    assert len(server.requests) == 1  # a write is never retried


@pytest.mark.parametrize(
    "exc", [httpx.ReadTimeout("slow"), httpx.ConnectError("refused")], ids=["timeout", "connect"]
)
async def test_transport_failures_are_store_unavailable(rest: Any, exc: Exception) -> None:
    store, server = rest
    for _ in range(5):
        server.fail(exc)
    with pytest.raises(StoreUnavailable, match="unreachable"):
        await store.get_session(uuid.uuid4())


async def test_reads_are_retried_on_503_but_writes_are_not(rest: Any) -> None:
    store, server = rest
    server.answer(503, {"code": "PGRST000", "message": "busy"})
    server.answer(200, [_session_row()])
    assert (await store.get_session(uuid.uuid4())).title == "Trip"
    assert [r.method for r in server.requests] == ["GET", "GET"]
    server.requests.clear()
    server.answer(503, {"code": "PGRST000", "message": "busy"})
    with pytest.raises(StoreUnavailable):
        await store.create_session(ChatSession.new(title="t", user_id="u", created_at=AT))
    assert [r.method for r in server.requests] == ["POST"]


async def test_count_and_scans(rest: Any) -> None:
    store, server = rest
    server.answer(200, None, **{"content-range": "0-0/12345"})
    assert await store.count("messages") == 12345
    assert server.requests[-1].method == "HEAD"
    assert "count=exact" in server.requests[-1].headers["prefer"]
    server.requests.clear()
    rows = [_session_row(id=str(uuid.UUID(int=i))) for i in (1, 2, 3)]
    server.answer(200, rows[:2])
    server.answer(200, rows[2:])
    chunks = [c async for c in store.scan_sessions(batch_size=2)]
    assert [len(c) for c in chunks] == [2, 1]
    assert ("id", f"gt.{uuid.UUID(int=2)}") in server.query(1)
    assert ("order", "id.asc") in server.query(1)
