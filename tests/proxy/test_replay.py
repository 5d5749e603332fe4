"""The replayer: bulk mirroring of journaled writes, and journals that hand each due
entry to one replayer at a time (two instances never replay the same entries at once)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections import Counter

import pytest

from strangler.backends.mongo import codec
from strangler.backends.mongo.journal import LEASES, MongoJournal
from strangler.backends.postgres.journal import PostgresJournal
from strangler.core.errors import NotFound
from strangler.core.models import ChatSession, Message
from strangler.core.records import PendingWrite
from strangler.proxy.mirror import mirror, mirror_many
from tests.conftest import StoreFactory, assert_stores_equal


def _message(session_id: uuid.UUID, text: str) -> Message:
    return Message.new(
        session_id=session_id, sender="user", content={"type": "conversation", "text": text}
    )


async def test_postgres_hands_each_due_entry_to_one_replayer(make_store: StoreFactory) -> None:
    async with make_store("postgres") as store:
        journal = PostgresJournal(store)
        ids = [uuid.uuid4() for _ in range(50)]
        await journal.add([PendingWrite(target="new", table="messages", record_id=i) for i in ids])
        # Two replayers (two instances) ask at the same moment.
        a, b = await asyncio.gather(journal.due(["new"], 30), journal.due(["new"], 30))
        got_a, got_b = {e.record_id for e in a}, {e.record_id for e in b}
        assert not got_a & got_b, "two replayers were handed the same entries"
        assert len(a) + len(b) >= 30
        rest = await journal.due(["new"], 100)
        assert got_a | got_b | {e.record_id for e in rest} == set(ids)
        # Everything is claimed now: nothing is due until the leases end or work is done.
        assert await journal.due(["new"], 100) == []
        assert await journal.depth("new") == 50
        await journal.done([*a, *b, *rest])
        assert await journal.depth("new") == 0


async def test_mongo_leases_its_journal_to_one_replayer_at_a_time(
    make_store: StoreFactory,
) -> None:
    """Two instances' replayers over one MongoDB journal: one holds the lease and is handed
    the entries; the other gets nothing until the lease lapses (its holder died), then
    takes over."""
    async with make_store("mongo") as store:
        first, second = MongoJournal(store), MongoJournal(store)
        ids = [uuid.uuid4() for _ in range(50)]
        await first.add([PendingWrite(target="new", table="messages", record_id=i) for i in ids])
        a, b = await asyncio.gather(first.due(["new"], 30), second.due(["new"], 30))
        assert sorted([len(a), len(b)]) == [0, 30], "both replayers were handed entries"
        holder, other = (first, second) if a else (second, first)
        await holder.done(a or b)
        assert await other.due(["new"], 100) == []  # renewed by the holder: still its
        rest = await holder.due(["new"], 100)
        assert {e.record_id for e in [*a, *b, *rest]} == set(ids)
        # The holder dies: once its lease lapses, the other takes the journal over.
        await store.collection(LEASES).update_one(
            {}, {"$set": {"until": dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)}}
        )
        taken = await other.due(["new"], 100)
        assert {e.record_id for e in taken} == {e.record_id for e in rest}
        assert await holder.due(["new"], 100) == []
        await other.done(taken)
        assert await other.depth("new") == 0


@pytest.mark.parametrize("kind", ["mongo", "postgres"])
async def test_done_forgets_only_the_entries_it_is_given(
    make_store: StoreFactory, kind: str
) -> None:
    """A batch ends with ``done`` for what landed; what was retried, what was never handed
    out, and a new entry for the same record all stay (each journal forgets entries by
    their ids)."""
    async with make_store(kind) as store:
        journal = MongoJournal(store) if kind == "mongo" else PostgresJournal(store)
        ids = [uuid.uuid4() for _ in range(12)]
        await journal.add([PendingWrite(target="new", table="messages", record_id=i) for i in ids])
        batch = await journal.due(["new"], 10)
        assert len(batch) == 10
        await journal.add([PendingWrite(target="new", table="messages", record_id=ids[0])])
        await journal.retry_later(batch[1], "refused", 60)
        await journal.done([batch[0], *batch[2:]])  # every entry of the batch but one
        left = await journal.depth("new")
        assert left == 12 - 9 + 1, left  # the retried one, the two not handed out, the new
        second = await journal.due(["new"], 10)
        assert sorted(e.record_id for e in second) == sorted([ids[0], ids[10], ids[11]])
        await journal.done(second[:1])  # part of a batch
        assert await journal.depth("new") == 3
        await journal.done(second[1:])
        assert await journal.depth("new") == 1  # the retried one, hidden for a minute


@pytest.mark.parametrize("kind", ["mongo", "postgres"])
async def test_a_journal_counts_both_targets_and_finds_held_records(
    make_store: StoreFactory, kind: str
) -> None:
    """``depths`` counts each store's entries in one query (what the status page asks);
    ``pending_ids`` answers by record id, for the target and table asked only."""
    async with make_store(kind) as store:
        journal = MongoJournal(store) if kind == "mongo" else PostgresJournal(store)
        assert await journal.depths() == {"old": 0, "new": 0}
        ids = [uuid.uuid4() for _ in range(5)]
        await journal.add(
            [PendingWrite(target="new", table="messages", record_id=i) for i in ids[:3]]
            + [PendingWrite(target="old", table="messages", record_id=ids[3])]
            + [PendingWrite(target="new", table="chat_sessions", record_id=ids[4])]
        )
        assert await journal.depths() == {"old": 1, "new": 4}
        assert await journal.depths() == {
            "old": await journal.depth("old"),
            "new": await journal.depth("new"),
        }
        assert await journal.pending_ids("new", "messages", ids) == set(ids[:3])
        assert await journal.pending_ids("old", "messages", ids) == {ids[3]}
        assert await journal.pending_ids("new", "chat_sessions", ids) == {ids[4]}


async def test_postgres_never_hands_out_more_than_the_limit(make_store: StoreFactory) -> None:
    """A long journal after an outage: each batch is at most the limit asked for."""
    async with make_store("postgres") as store:
        journal = PostgresJournal(store)
        await journal.add(
            [
                PendingWrite(target="new", table="messages", record_id=uuid.uuid4())
                for _ in range(1600)
            ]
        )
        async with store.connection("analyze") as conn:
            await conn.execute("ANALYZE strangler.pending_writes")
        sizes = []
        while batch := await journal.due(["new"], 500):  # each batch leased, so not again
            sizes.append(len(batch))
        assert sizes == [500, 500, 500, 100]


async def test_the_replayer_drains_a_long_journal_batch_after_batch(
    make_store: StoreFactory,
) -> None:
    """Woken once, the replayer keeps going while batches come back full: every entry
    lands, and the journal ends empty."""
    async with make_store("facade:dualwrite") as f:
        await f.replayer.stop()
        f.replayer.batch = 10
        s = ChatSession.new(title="t", user_id="u")
        await f.old.create_session(s)
        ms = [_message(s.id, f"m{i}") for i in range(45)]
        await f.old.upsert_messages(ms)
        await f.journals["old"].add(
            [PendingWrite(target="new", table="chat_sessions", record_id=s.id)]
            + [PendingWrite(target="new", table="messages", record_id=m.id) for m in ms]
        )
        f.replayer.start()
        f.replayer.wake()
        for _ in range(100):
            if await f.journals["old"].depth() == 0:
                break
            await asyncio.sleep(0.1)
        assert await f.journals["old"].depth() == 0
        assert [await f.new.get_message(m.id) for m in ms] == ms
        await assert_stores_equal(f)


async def test_bulk_replay_lands_new_changed_and_deleted_records(
    make_store: StoreFactory,
) -> None:
    async with make_store("facade:dualwrite") as f:
        kept = await f.create_session(ChatSession.new(title="kept", user_id="u"))
        gone = await f.create_session(ChatSession.new(title="gone", user_id="u"))
        old_message = _message(kept.id, "before")
        await f.add_message(old_message)
        # Writes that reached MongoDB only (the secondary write failed): a new session
        # with messages, a rename, a deleted session, a deleted message.
        fresh = ChatSession.new(title="fresh", user_id="u")
        await f.old.create_session(fresh)
        messages = [_message(fresh.id, f"m{i}") for i in range(40)]
        for m in messages:
            await f.old.add_message(m)
        await f.old.rename_session(kept.id, "renamed")
        await f.old.delete_session(gone.id)
        await f.old.delete_message(old_message.id)
        entries = [
            PendingWrite(target="new", table="messages", record_id=m.id) for m in messages
        ] + [
            PendingWrite(target="new", table="chat_sessions", record_id=i)
            for i in (fresh.id, kept.id, gone.id)
        ]
        entries.append(PendingWrite(target="new", table="messages", record_id=old_message.id))
        await f.journals["old"].add(entries)
        # One pass: messages before their session in the journal, sessions go first.
        landed = await f.replayer.run_once()
        assert landed == len(entries)
        assert await f.journals["old"].depth("new") == 0
        assert (await f.new.get_session(kept.id)).title == "renamed"
        with pytest.raises(NotFound):
            await f.new.get_session(gone.id)
        with pytest.raises(NotFound):
            await f.new.get_message(old_message.id)
        await assert_stores_equal(f)


async def test_mirror_many_leaves_what_it_cannot_settle(make_store: StoreFactory) -> None:
    """Messages whose session the target lacks: the batch is refused, the sessions are
    brought over in bulk and the messages written again. An id the source does not hold
    is a delete, done in bulk. A message whose session the source does not hold (a true
    orphan, or one deleted with its session since it was read) is left for one-by-one
    mirroring, and only it: the rest of its batch is written in bulk."""
    async with make_store("mongo") as old, make_store("postgres") as new:
        s = ChatSession.new(title="t", user_id="u")
        await old.create_session(s)
        ms = [_message(s.id, f"m{i}") for i in range(3)]
        for m in ms:
            await old.add_message(m)
        absent = uuid.uuid4()
        ids_ = [m.id for m in ms] + [absent]
        assert await mirror_many(old, new, "messages", ids_, deleter=new) == []
        assert await new.get_session(s.id) == s
        assert [await new.get_message(m.id) for m in ms] == ms
        orphan = _message(uuid.uuid4(), "alone")
        await old.collection("messages").insert_one(codec.encode_message(orphan))
        more = [_message(s.id, f"n{i}") for i in range(2)]
        await old.upsert_messages(more)
        batch = [orphan.id] + [m.id for m in more]
        why: Counter[str] = Counter()
        left = await mirror_many(old, new, "messages", batch, deleter=new, why=why)
        assert left == [orphan.id]
        assert [await new.get_message(m.id) for m in more] == more
        assert +why == {"session_gone": 1}


@pytest.mark.parametrize("direction", ["to postgres", "to mongo"])
async def test_mirror_many_deletes_in_bulk(make_store: StoreFactory, direction: str) -> None:
    """Sessions and messages the source no longer holds are deleted from the target in
    one go, a session's messages with it, whichever store is the target."""
    async with make_store("mongo") as mongo, make_store("postgres") as pg:
        source, target = (mongo, pg) if direction == "to postgres" else (pg, mongo)
        sessions = [ChatSession.new(title=f"s{i}", user_id="u") for i in range(3)]
        messages = [_message(s.id, f"{s.title} m{j}") for s in sessions for j in range(4)]
        for store in (source, target):
            await store.upsert_sessions(sessions)
            await store.upsert_messages(messages)
        await source.delete_session(sessions[0].id)  # and its four messages
        await source.delete_message(messages[4].id)  # one of the second session's
        ids_ = [s.id for s in sessions]
        assert await mirror_many(source, target, "chat_sessions", ids_, deleter=target) == []
        every = [m.id for m in messages]
        assert await mirror_many(source, target, "messages", every, deleter=target) == []
        for m in messages[:5]:
            with pytest.raises(NotFound):
                await target.get_message(m.id)
        with pytest.raises(NotFound):
            await target.get_session(sessions[0].id)
        assert [await target.get_message(m.id) for m in messages[5:]] == messages[5:]
        assert await target.get_session(sessions[2].id) == sessions[2]


async def test_a_message_deleted_with_its_session_since_it_was_read_is_no_orphan(
    make_store: StoreFactory,
) -> None:
    """A change stream hands the follower a message's state; by the time it is copied the
    user has deleted the session (and with it the message). That is a delete to copy, not
    a corrupt record to report."""
    async with make_store("mongo") as old, make_store("postgres") as new:
        s = ChatSession.new(title="t", user_id="u")
        await old.create_session(s)
        m = await old.add_message(_message(s.id, "hello"))
        await old.delete_session(s.id)
        await mirror(old, new, "messages", m.id, known=m)
        with pytest.raises(NotFound):
            await new.get_message(m.id)
        with pytest.raises(NotFound):
            await new.get_session(s.id)
        # (A true orphan, a message there whose session is not, is still refused:
        # test_faults' test_an_orphan_in_the_source_is_dead_lettered_not_retried_forever.)
