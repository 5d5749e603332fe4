"""A new message with its realtime event and its journal entry for MongoDB, in one statement
(``DualWriteStore.send_message``), and realtime events that commit in id order."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from strangler.backends.postgres import PostgresEventLog, PostgresStore
from strangler.backends.postgres.outbox import PUBLISH_EVENT, MessageOutbox
from strangler.core.errors import NotFound
from strangler.core.models import ChatSession, Message
from strangler.core.records import EventDraft
from strangler.proxy import DualWriteStore
from tests.conftest import StoreFactory


def _message(session_id: uuid.UUID, text: str = "hi") -> Message:
    return Message.new(
        session_id=session_id, sender="user", content={"type": "conversation", "text": text}
    )


def _draft(m: Message) -> EventDraft:
    return EventDraft("message.created", "u", m.session_id, {"id": str(m.id), "text": "hi"})


async def _events(f: DualWriteStore, session_id: uuid.UUID) -> list[tuple[str, object]]:
    rows = await PostgresEventLog(f.new).events_since(0, session_id=session_id)  # type: ignore[arg-type]
    return [(r["kind"], r["payload"]) for r in rows]


async def _parked(f: DualWriteStore) -> set[tuple[str, uuid.UUID]]:
    entries = await f.journals["new"].due(["old"], 1000)
    return {(e.table, e.record_id) for e in entries}


async def test_complete_stores_the_message_its_event_and_its_entry_for_mongodb(
    make_store: StoreFactory,
) -> None:
    async with make_store("facade:complete") as f:
        s = await f.create_session(ChatSession.new(title="t", user_id="u"))
        m = _message(s.id)
        stored, published = await f.send_message(m, _draft(m))
        assert (stored, published) == (m, True)
        assert await f.new.get_message(m.id) == m
        assert await _events(f, s.id) == [("message.created", {"id": str(m.id), "text": "hi"})]
        entries = await f.journals["new"].due(["old"], 1000)
        assert [e.table for e in entries if e.record_id == m.id] == ["messages"]  # once
        with pytest.raises(NotFound):  # MongoDB is not written at complete
            await f.old.get_message(m.id)


async def test_a_message_that_fails_leaves_no_event_and_no_entry(
    make_store: StoreFactory,
) -> None:
    async with make_store("facade:complete") as f:
        m = _message(uuid.uuid4())  # no such session
        with pytest.raises(NotFound, match="referenced session does not exist"):
            await f.send_message(m, _draft(m))
        assert await _events(f, m.session_id) == []
        assert ("messages", m.id) not in await _parked(f)


async def test_rampdown_carries_the_event_and_still_writes_mongodb(
    make_store: StoreFactory,
) -> None:
    async with make_store("facade:rampdown") as f:
        s = await f.create_session(ChatSession.new(title="t", user_id="u"))
        m = _message(s.id)
        assert (await f.send_message(m, _draft(m)))[1] is True
        assert await f.old.get_message(m.id) == m
        assert [k for k, _ in await _events(f, s.id)] == ["message.created"]
        assert await _parked(f) == set()


@pytest.mark.parametrize("stage", ["off", "dualwrite", "shadow"])
async def test_while_mongodb_is_authoritative_the_caller_publishes(
    make_store: StoreFactory, stage: str
) -> None:
    async with make_store(f"facade:{stage}") as f:
        s = await f.create_session(ChatSession.new(title="t", user_id="u"))
        m = _message(s.id)
        stored, published = await f.send_message(m, _draft(m))
        assert published is False
        assert await f.old.get_message(m.id) == stored
        assert await _events(f, s.id) == []


async def test_an_event_id_never_shows_before_a_smaller_one_commits(
    pg_store: PostgresStore,
) -> None:
    """Ids are drawn under a lock held to commit: a reader that has seen id N can never miss
    a smaller id committing later (without the lock, the second append would commit first
    and a reader at ``id > second`` would skip the first for good)."""
    control = PostgresEventLog(pg_store)
    sid = uuid.uuid4()
    async with pg_store.connection("an append in flight") as conn, conn.transaction():
        first = await conn.fetchval(PUBLISH_EVENT, "first", "u", sid, {})
        second = asyncio.create_task(control.publish_event("second", "u", sid, {}))
        await asyncio.sleep(0.3)
        assert not second.done()
        assert await control.events_since(0, session_id=sid) == []
    assert await second > first
    assert [e["kind"] for e in await control.events_since(0, session_id=sid)] == ["first", "second"]


async def test_concurrent_sends_share_statements_and_each_gets_its_own_answer(
    make_store: StoreFactory,
) -> None:
    async with make_store("facade:complete") as f:
        s = await f.create_session(ChatSession.new(title="t", user_id="u"))
        good = [_message(s.id, str(i)) for i in range(40)]
        orphan = _message(uuid.uuid4())  # its session does not exist
        sends = [*good[:20], orphan, *good[20:]]
        results = await asyncio.gather(
            *(f.send_message(m, _draft(m)) for m in sends), return_exceptions=True
        )
        assert isinstance(results[20], NotFound)
        assert [r for i, r in enumerate(results) if i != 20] == [(m, True) for m in good]
        outbox = f.sender
        assert isinstance(outbox, MessageOutbox)
        assert outbox.statements < outbox.messages  # batched, not one statement each
        stored = await f.new.history(s.id, limit=100)
        assert {m.id for m in stored.items} == {m.id for m in good}
        events = await _events(f, s.id)
        assert sorted(p["id"] for _, p in events) == sorted(str(m.id) for m in good)  # type: ignore[index]
        parked = await _parked(f)
        assert {("messages", m.id) for m in good} <= parked
        assert ("messages", orphan.id) not in parked
