"""The ChatStore conformance suite: every behaviour specified once, run on every store.

It walks the seed ticket's checklist at the storage level: session creation, sending and
reading messages, attachments, listing and filtering, history pagination, cascade
delete, error handling and consistency.
"""

from __future__ import annotations

import base64
import datetime as dt
import time
import uuid
from typing import Any

import pytest
from bson import ObjectId

from strangler.core import ids
from strangler.core.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    StoreUnavailable,
)
from strangler.core.models import ChatSession, Message
from strangler.core.ports import ChatStore
from strangler.core.records import Keyset, StoreLimits
from tests.conftest import STORE_KINDS, StoreFactory

T0 = dt.datetime(2024, 3, 1, 12, 0, 0, tzinfo=dt.UTC)


def session(title: str = "Trip plans", user: str = "user-1", at: dt.datetime = T0) -> ChatSession:
    return ChatSession.new(title=title, user_id=user, created_at=at)


def message(
    sid: uuid.UUID, text: str = "hello", at: dt.datetime = T0, sender: str = "user", **kw: Any
) -> Message:
    return Message.new(
        session_id=sid,
        sender=sender,
        content={"type": "conversation", "text": text},
        timestamp=at,
        **kw,
    )


# --- session creation ---------------------------------------------------------------


async def test_created_session_reads_back_equal(store: ChatStore) -> None:
    s = session(title="Café ☕ — 東京")
    await store.create_session(s)
    assert await store.get_session(s.id) == s


async def test_session_is_found_by_its_legacy_objectid_form(store: ChatStore) -> None:
    s = await store.create_session(session())
    oid = ids.objectid_from_uuid(s.id)
    assert oid is not None
    assert (await store.get_session(str(oid))).id == s.id
    assert (await store.get_session(str(s.id).upper())).id == s.id


async def test_duplicate_session_id_is_a_conflict(store: ChatStore) -> None:
    s = await store.create_session(session())
    with pytest.raises(Conflict):
        await store.create_session(s)


async def test_rename_changes_only_the_title(store: ChatStore) -> None:
    s = await store.create_session(session())
    renamed = await store.rename_session(s.id, "New name")
    assert renamed == s.model_copy(update={"title": "New name"})
    assert await store.get_session(s.id) == renamed


@pytest.mark.parametrize("op", ["get", "rename", "delete"])
async def test_missing_session_is_not_found(store: ChatStore, op: str) -> None:
    missing = ids.new_id()
    call = {
        "get": lambda: store.get_session(missing),
        "rename": lambda: store.rename_session(missing, "x"),
        "delete": lambda: store.delete_session(missing),
    }[op]
    with pytest.raises(NotFound):
        await call()


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param("not-an-id", id="word"),
        pytest.param("", id="empty"),
        pytest.param("65e1c3405f1137d8f8f58fe", id="23-hex"),
        pytest.param("'; DROP TABLE chat_sessions; --", id="sql"),
        pytest.param("../../etc/passwd", id="path"),
        pytest.param(12345, id="int"),
    ],
)
async def test_invalid_id_is_invalid_input(store: ChatStore, bad: Any) -> None:
    with pytest.raises(InvalidInput, match="expected a UUID"):
        await store.get_session(bad)
    with pytest.raises(InvalidInput):
        await store.get_message(bad)


# --- messages and attachments ---------------------------------------------------------


async def test_sent_message_reads_back_equal(store: ChatStore) -> None:
    s = await store.create_session(session())
    m = await store.add_message(message(s.id, "Привет, мир 👋"))
    assert await store.get_message(m.id) == m
    page = await store.history(s.id)
    assert page.items == [m]
    assert not page.has_more


@pytest.mark.parametrize("kind", ["audio", "image", "pdf"])
async def test_attachments_round_trip(store: ChatStore, kind: str) -> None:
    s = await store.create_session(session())
    blob = bytes(range(256)) * 40
    content: dict[str, Any] = {"type": kind, "text": f"a {kind} file"}
    if kind == "audio":
        content["audioFile"] = base64.b64encode(blob).decode()
    elif kind == "image":
        content["imageFile"] = base64.b64encode(blob).decode()
    else:
        content["pdfUrl"] = "https://files.example.com/report.pdf"
    m = Message.new(
        session_id=s.id,
        sender="assistant",
        content=content,
        **{kind: f"https://cdn.example.com/{kind}/1"},
    )
    await store.add_message(m)
    got = await store.get_message(m.id)
    assert got == m
    assert getattr(got, kind) == f"https://cdn.example.com/{kind}/1"
    if kind != "pdf":
        assert base64.b64decode(got.content[f"{kind}File"]) == blob  # type: ignore[index,call-overload]


async def test_message_for_missing_session_is_not_found(store: ChatStore) -> None:
    with pytest.raises(NotFound):
        await store.add_message(message(ids.new_id()))


async def test_duplicate_message_id_is_a_conflict(store: ChatStore) -> None:
    s = await store.create_session(session())
    m = await store.add_message(message(s.id))
    with pytest.raises(Conflict):
        await store.add_message(m)


async def test_delete_message_removes_only_it(store: ChatStore) -> None:
    s = await store.create_session(session())
    a = await store.add_message(message(s.id, "a"))
    b = await store.add_message(message(s.id, "b", at=T0 + dt.timedelta(seconds=1)))
    await store.delete_message(a.id)
    with pytest.raises(NotFound):
        await store.get_message(a.id)
    with pytest.raises(NotFound):
        await store.delete_message(a.id)
    assert (await store.history(s.id)).items == [b]


async def test_delete_session_cascades_to_messages(store: ChatStore) -> None:
    s = await store.create_session(session())
    other = await store.create_session(session(title="other"))
    msgs = [await store.add_message(message(s.id, str(i))) for i in range(5)]
    kept = await store.add_message(message(other.id, "kept"))
    await store.delete_session(s.id)
    with pytest.raises(NotFound):
        await store.get_session(s.id)
    for m in msgs:
        with pytest.raises(NotFound):
            await store.get_message(m.id)
    assert (await store.history(s.id)).items == []
    assert await store.get_message(kept.id) == kept
    assert await store.count("messages") == 1


# --- bad input -----------------------------------------------------------------------


def _with_nul(field: str, sid: uuid.UUID) -> Any:
    if field == "title":
        return "session", ChatSession.new(title="bad\x00title", user_id="u")
    if field == "user_id":
        return "session", ChatSession.new(title="t", user_id="u\x00")
    if field == "content":
        return "message", message(sid, "te\x00xt")
    if field == "content-key":
        m = message(sid)
        return "message", m.model_copy(update={"content": {"type": "conversation", "k\x00": 1}})
    return "message", message(sid, **{field: "x\x00y"})


@pytest.mark.parametrize(
    "field",
    ["title", "user_id", "content", "content-key", "audio", "image", "pdf"],
)
async def test_nul_character_is_invalid_input(store: ChatStore, field: str) -> None:
    s = await store.create_session(session())
    what, record = _with_nul(field, s.id)
    write = store.create_session if what == "session" else store.add_message
    with pytest.raises(InvalidInput, match="U\\+0000"):
        await write(record)
    with pytest.raises(InvalidInput, match="U\\+0000"):
        await store.rename_session(s.id, "a\x00b")
    assert await store.count("messages") == 0


async def test_sender_outside_user_and_assistant_is_invalid_input(store: ChatStore) -> None:
    s = await store.create_session(session())
    with pytest.raises(InvalidInput, match="sender"):
        message(s.id, sender="User")
    forged = message(s.id).model_copy(update={"sender": "system"})  # bypasses the model
    with pytest.raises(InvalidInput, match="sender"):
        await store.add_message(forged)
    assert await store.count("messages") == 0


@pytest.mark.parametrize("kind", STORE_KINDS)
async def test_content_over_the_size_limit_is_too_large(
    kind: str, make_store: StoreFactory
) -> None:
    async with make_store(kind, StoreLimits(max_content_bytes=1024)) as store:
        s = await store.create_session(session())
        await store.add_message(message(s.id, "x" * 900))
        with pytest.raises(PayloadTooLarge, match="limit is 1024"):
            await store.add_message(message(s.id, "x" * 1100))
        assert await store.count("messages") == 1


async def test_limit_out_of_range_is_invalid_input(store: ChatStore) -> None:
    with pytest.raises(InvalidInput, match="limit"):
        await store.list_sessions("u", limit=0)
    with pytest.raises(InvalidInput, match="limit"):
        await store.history(ids.new_id(), limit=100_000)


# PyMongo's async client sometimes leaves the socket of a refused connection for the
# garbage collector; the per-test collection then reports it here. A driver leak, not ours.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("kind", STORE_KINDS)
async def test_unreachable_server_is_unavailable_within_the_timeout(kind: str) -> None:
    from strangler.backends.mongo import MongoStore
    from strangler.backends.postgres import PostgresStore
    from strangler.embedded import free_port

    port = free_port()  # nothing listens here
    store: Any = (
        MongoStore(f"mongodb://127.0.0.1:{port}/?directConnection=true", timeout=0.5)
        if kind == "mongo"
        else PostgresStore(f"postgresql://postgres@127.0.0.1:{port}/x", timeout=0.5)
    )
    async with store:
        start = time.monotonic()
        with pytest.raises(StoreUnavailable, match=kind):
            await store.create_session(session())
        with pytest.raises(StoreUnavailable):
            await store.ping()
        assert time.monotonic() - start < 5


# --- listing and filtering ------------------------------------------------------------


async def test_list_is_newest_first_and_only_the_users(store: ChatStore) -> None:
    mine = [
        await store.create_session(session(f"s{i}", at=T0 + dt.timedelta(minutes=i)))
        for i in range(4)
    ]
    await store.create_session(session("theirs", user="user-2"))
    page = await store.list_sessions("user-1")
    assert page.items == list(reversed(mine))
    assert not page.has_more


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param("trip", {"Trip to Rome", "Road TRIP"}, id="case-insensitive"),
        pytest.param("100%", {"100% done"}, id="percent-literal"),
        pytest.param("a_b", {"a_b notes"}, id="underscore-literal"),
        pytest.param("(.*)", {"regex (.*) chars"}, id="regex-literal"),
        pytest.param("東京", {"東京の旅"}, id="non-latin"),
    ],
)
async def test_title_search_matches_literal_substrings(
    store: ChatStore, query: str, expected: set[str]
) -> None:
    for title in [
        "Trip to Rome",
        "Road TRIP",
        "100% done",
        "1000 done",
        "a_b notes",
        "axb notes",
        "regex (.*) chars",
        "東京の旅",
        "Groceries",
    ]:
        await store.create_session(session(title))
    page = await store.list_sessions("user-1", search=query)
    assert {s.title for s in page.items} == expected


async def test_created_range_is_inclusive_from_exclusive_to(store: ChatStore) -> None:
    made = [
        await store.create_session(session(f"d{i}", at=T0 + dt.timedelta(days=i))) for i in range(5)
    ]
    page = await store.list_sessions(
        "user-1", created_from=T0 + dt.timedelta(days=1), created_to=T0 + dt.timedelta(days=3)
    )
    assert [s.id for s in page.items] == [made[2].id, made[1].id]


async def test_session_pages_never_skip_or_repeat_with_equal_times(store: ChatStore) -> None:
    made = []
    for i in range(23):
        made.append(
            await store.create_session(session(f"s{i}", at=T0 + dt.timedelta(seconds=i // 5)))
        )  # runs of five equal created_at values
    seen: list[ChatSession] = []
    after = None
    while True:
        page = await store.list_sessions("user-1", limit=4, after=after)
        seen.extend(page.items)
        if not page.has_more:
            break
        after = Keyset.of_session(page.items[-1])
    assert len(seen) == len({s.id for s in seen}) == 23
    assert seen == sorted(made, key=lambda s: (s.created_at, s.id), reverse=True)


# --- history --------------------------------------------------------------------------


async def test_history_pages_both_ways_without_skipping_or_repeating(store: ChatStore) -> None:
    s = await store.create_session(session())
    other = await store.create_session(session("other"))
    made = []
    for i in range(37):  # runs of four equal timestamps
        made.append(
            await store.add_message(
                message(s.id, str(i), at=T0 + dt.timedelta(milliseconds=i // 4))
            )
        )
    await store.add_message(message(other.id, "elsewhere"))
    expected = sorted(made, key=lambda m: (m.timestamp, m.id))

    forward: list[Message] = []
    after = None
    while True:
        page = await store.history(s.id, limit=5, after=after)
        forward.extend(page.items)
        if not page.has_more:
            break
        after = Keyset.of_message(page.items[-1])
    assert forward == expected

    backward: list[Message] = []
    before = Keyset.of_message(expected[-1])
    backward = [expected[-1]]
    while True:
        page = await store.history(s.id, limit=5, before=before)
        assert page.items == sorted(page.items, key=lambda m: (m.timestamp, m.id))
        backward = page.items + backward
        if not page.has_more:
            break
        before = Keyset.of_message(page.items[0])
    assert backward == expected


async def test_history_of_a_missing_session_is_empty(store: ChatStore) -> None:
    page = await store.history(ids.new_id())
    assert page.items == []
    assert not page.has_more


async def test_history_refuses_both_directions_at_once(store: ChatStore) -> None:
    k = Keyset(T0, ids.new_id())
    with pytest.raises(InvalidInput):
        await store.history(ids.new_id(), after=k, before=k)


# --- bulk upserts and scans -------------------------------------------------------------


async def test_upserts_are_idempotent_and_overwrite(store: ChatStore) -> None:
    sessions = [session(f"s{i}") for i in range(30)]
    messages = [
        message(s.id, f"m{j}", at=T0 + dt.timedelta(seconds=j))
        for s in sessions[:10]
        for j in range(3)
    ]
    for _ in range(2):
        assert await store.upsert_sessions(sessions) == 30
        assert await store.upsert_messages(messages) == 30
    assert await store.count("chat_sessions") == 30
    assert await store.count("messages") == 30
    changed = sessions[0].model_copy(update={"title": "changed"})
    changed_msg = messages[0].model_copy(update={"content": "now a plain string"})
    await store.upsert_sessions([changed])
    await store.upsert_messages([changed_msg])
    assert await store.get_session(changed.id) == changed
    assert await store.get_message(changed_msg.id) == changed_msg
    assert await store.count("chat_sessions") == 30


async def test_upsert_of_messages_for_a_missing_session_is_not_found(store: ChatStore) -> None:
    with pytest.raises(NotFound):
        await store.upsert_messages([message(ids.new_id())])
    assert await store.count("messages") == 0


async def test_scans_cover_everything_in_id_order_in_chunks(store: ChatStore) -> None:
    sessions = [session(f"s{i}") for i in range(25)]
    # A few ids that were not born from ObjectIds (legacy UUID ids) sort among the rest.
    sessions += [
        ChatSession(id=uuid.uuid4(), title=f"u{i}", created_at=T0, user_id="u") for i in range(5)
    ]
    await store.upsert_sessions(sessions)
    chunks = [chunk async for chunk in store.scan_sessions(batch_size=7)]
    assert all(1 <= len(c) <= 7 for c in chunks)
    flat = [s for c in chunks for s in c]
    assert flat == sorted(sessions, key=lambda s: s.id)
    pivot = flat[11].id
    rest = [s async for c in store.scan_sessions(batch_size=4, after=pivot) for s in c]
    assert rest == flat[12:]

    msgs = [message(sessions[i % 30].id, str(i)) for i in range(40)]
    await store.upsert_messages(msgs)
    scanned = [m async for c in store.scan_messages(batch_size=9) for m in c]
    assert scanned == sorted(msgs, key=lambda m: m.id)


# --- consistency ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        pytest.param("a plain legacy string", id="plain-string"),
        pytest.param(
            {
                "type": "conversation",
                "text": "hi",
                "legacyFlag": True,
                "nested": {"list": [1, 2.5, None, "x"]},
            },
            id="extra-keys",
        ),
        pytest.param(["list", "content"], id="list"),
        pytest.param({"text": "x" * 200_000}, id="200k-chars"),
        pytest.param({"type": "conversation", "text": "\ufffd replaced nul"}, id="fffd"),
    ],
)
async def test_stored_legacy_content_round_trips_unchanged(store: ChatStore, content: Any) -> None:
    s = await store.create_session(session())
    m = Message(id=ids.new_id(), session_id=s.id, sender="user", content=content, timestamp=T0)
    await store.upsert_messages([m])
    assert (await store.get_message(m.id)).content == content


async def test_ping_reports_latency(store: ChatStore) -> None:
    latency = await store.ping()
    assert 0 < latency < 5


async def test_objectid_born_record_keeps_one_identity(store: ChatStore) -> None:
    oid = ObjectId()
    s = ChatSession(id=str(oid), title="t", created_at=T0, user_id="u")
    await store.create_session(s)
    assert s.id == ids.uuid_from_objectid(oid)
    assert (await store.get_session(oid)).id == s.id


async def test_upsert_without_overwrite_keeps_existing_rows(store: ChatStore) -> None:
    s = await store.create_session(session("current title"))
    stale = s.model_copy(update={"title": "stale legacy title"})
    fresh = session("brand new")
    assert await store.upsert_sessions([stale, fresh], overwrite=False) == 1
    assert (await store.get_session(s.id)).title == "current title"
    assert await store.get_session(fresh.id) == fresh
    m = await store.add_message(message(s.id, "current"))
    old = m.model_copy(update={"content": "stale"})
    assert await store.upsert_messages([old], overwrite=False) == 0
    assert (await store.get_message(m.id)).content == m.content


async def test_bulk_writes_of_existing_data_ignore_new_input_limits(store: ChatStore) -> None:
    """Legacy data over the limits for new input still loads; only what no store can hold
    (U+0000) is refused."""
    long = ChatSession(id=ids.new_id(), title="t" * 5000, created_at=T0, user_id="u")
    assert await store.upsert_sessions([long]) == 1
    assert (await store.get_session(long.id)).title == "t" * 5000
    with pytest.raises(InvalidInput, match="title"):
        await store.create_session(ChatSession.new(title="t" * 5000, user_id="u"))
