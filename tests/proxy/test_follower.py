"""Change capture, forward: writes made straight into MongoDB (an old backend instance, a
script) reach Supabase while MongoDB is authoritative, and are found as bypass writes;
the position survives restarts and takeovers; a lost position is flagged, never skipped.

Real servers throughout: SecantusDB's change stream and embedded PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient

from strangler.backends.mongo import MongoStore
from strangler.backends.postgres import PostgresStageStore, PostgresStore
from strangler.core import ids, origin
from strangler.core.errors import NotFound
from strangler.core.models import ChatSession, Message
from strangler.core.records import PendingWrite
from strangler.proxy import FacadeOptions, Stage
from strangler.proxy.follower import Follower
from strangler.runtime import FollowOptions, Runtime
from tests.pause import paused

FAST = {"settle": 0.2, "lease_seconds": 1.5, "poll": 0.1}


@contextlib.asynccontextmanager
async def running(
    mongo_server: Any,
    mongo_db: str,
    clean_pg: str,
    stage: Stage,
    *,
    pinned: bool = True,
    store_timeout: float = 5.0,
    **follow: Any,
) -> AsyncIterator[Runtime]:
    """Both stores, the facade at ``stage`` (pinned, or in the control table where
    ``controller.set`` moves it), and its followers running."""
    async with (
        MongoStore(mongo_server.uri, database=mongo_db, timeout=store_timeout) as old,
        # As strangler.runtime.new_store opens it: the facade's writes carry their origin.
        PostgresStore(clean_pg, timeout=5.0, session={"strangler.origin": "facade"}) as new,
    ):
        await old.ensure_indexes()
        runtime = Runtime.over(
            old,
            new,
            FacadeOptions(
                stage=stage if pinned else None, replay_interval=0.1, stage_poll_seconds=0.1
            ),
            follow=FollowOptions(**{**FAST, **follow}),
        )
        if not pinned:
            await runtime.facade.controller.set(stage, reason="test", force=True)
        async with runtime.facade:
            for f in runtime.following:
                f.start()
            try:
                yield runtime
            finally:
                for f in runtime.following:
                    await f.stop()


@contextlib.asynccontextmanager
async def legacy_db(mongo_server: Any, mongo_db: str) -> AsyncIterator[Any]:
    """The app's database as an old backend instance sees it (raw PyMongo, legacy shapes)."""
    client: AsyncMongoClient[Any] = AsyncMongoClient(mongo_server.uri)
    try:
        yield client[mongo_db]
    finally:
        await client.close()


def legacy_session(title: str = "written around the facade") -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    return {"_id": ObjectId(), "title": title, "created_at": now, "user_id": "u-legacy"}


def legacy_message(session: dict[str, Any], text: str = "hi") -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    return {
        "_id": ObjectId(),
        "session_id": str(session["_id"]),
        "sender": "user",
        "content": {"type": "conversation", "text": text},
        "timestamp": now,
    }


async def eventually(check: Callable[[], Awaitable[bool]], within: float) -> float:
    """Seconds until ``check`` holds; fails after ``within``."""
    start = time.monotonic()
    while time.monotonic() - start < within:
        if await check():
            return time.monotonic() - start
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {within}s")


async def present(store: Any, table: str, oid: ObjectId) -> bool:
    try:
        if table == "chat_sessions":
            await store.get_session(ids.uuid_from_objectid(oid))
        else:
            await store.get_message(ids.uuid_from_objectid(oid))
    except NotFound:
        return False
    return True


async def all_present(store: Any, table: str, docs: list[dict[str, Any]]) -> bool:
    return all([await present(store, table, d["_id"]) for d in docs])


def leader(runtime: Runtime) -> Follower:
    return runtime.following[0]


def bypass_count(runtime: Runtime, table: str) -> float:
    metric = runtime.metrics.bypass_writes.labels("mongo", table)
    return float(metric._value.get())


@pytest.mark.parametrize("stage", [Stage.DUALWRITE, Stage.SHADOW])
async def test_a_bypass_write_in_mongodb_reaches_supabase_within_2s(
    mongo_server: Any, mongo_db: str, clean_pg: str, stage: Stage
) -> None:
    async with (
        running(mongo_server, mongo_db, clean_pg, stage) as runtime,
        legacy_db(mongo_server, mongo_db) as db,
    ):
        await eventually(lambda: _leading(runtime), 5)
        session = legacy_session()
        messages = [legacy_message(session, f"m{i}") for i in range(5)]
        await db.chat_sessions.insert_one(session)
        await db.messages.insert_many(messages)
        new = runtime.facade.new
        took = await eventually(lambda: all_present(new, "messages", messages), 2.0)
        assert bypass_count(runtime, "messages") == 5
        assert bypass_count(runtime, "chat_sessions") == 1
        rows = await runtime.divergences.divergences(20)
        found = {r["record_id"] for r in rows if r["kind"] == "bypass_write"}
        assert str(ids.uuid_from_objectid(messages[0]["_id"])) in found
        assert took < 2.0


async def test_a_record_the_journal_holds_is_left_to_the_replayer(
    mongo_server: Any, mongo_db: str, clean_pg: str
) -> None:
    """After an outage the journal and the stream name the same records: the follower
    leaves those the journal holds to the replayer (one copy, sessions landed before their
    messages), and they land when it runs."""
    async with (
        running(mongo_server, mongo_db, clean_pg, Stage.DUALWRITE) as runtime,
        legacy_db(mongo_server, mongo_db) as db,
    ):
        await eventually(lambda: _leading(runtime), 5)
        facade = runtime.facade
        await facade.replayer.stop()
        session = legacy_session("journaled")
        await facade.journals["old"].add(
            [
                PendingWrite(
                    target="new",
                    table="chat_sessions",
                    record_id=ids.uuid_from_objectid(session["_id"]),
                )
            ]
        )
        await db.chat_sessions.insert_one(session)
        await asyncio.sleep(1.5)  # settle is 0.2 s: the follower has seen it
        assert not await present(facade.new, "chat_sessions", session["_id"])
        assert bypass_count(runtime, "chat_sessions") == 0  # the journal's: not a bypass
        other = legacy_session("not journaled")
        await db.chat_sessions.insert_one(other)
        await eventually(lambda: present(facade.new, "chat_sessions", other["_id"]), 3)
        facade.replayer.start()
        await eventually(lambda: present(facade.new, "chat_sessions", session["_id"]), 5)
        assert await facade.journals["old"].depth("new") == 0


async def _leading(runtime: Runtime) -> bool:
    """This instance leads and has saved its first position (it follows from then)."""
    if leader(runtime).status.state != "leading":
        return False
    record = await runtime.followers.load("forward")
    return record is not None and record.position is not None and record.leader is not None


async def test_writes_through_the_facade_are_not_bypass_writes(
    mongo_server: Any, mongo_db: str, clean_pg: str
) -> None:
    async with running(mongo_server, mongo_db, clean_pg, Stage.DUALWRITE) as runtime:
        await eventually(lambda: _leading(runtime), 5)
        facade = runtime.facade
        s = await facade.create_session(ChatSession.new(title="t", user_id="u"))
        for i in range(30):
            await facade.add_message(
                Message.new(
                    session_id=s.id, sender="user", content={"type": "conversation", "text": str(i)}
                )
            )
        await facade.rename_session(s.id, "renamed")
        await asyncio.sleep(1.0)  # settle (0.2 s) and apply
        assert bypass_count(runtime, "messages") == 0
        assert bypass_count(runtime, "chat_sessions") == 0
        assert leader(runtime).status.state == "leading"


async def test_a_bypass_delete_is_mirrored_and_tombstoned(
    mongo_server: Any, mongo_db: str, clean_pg: str
) -> None:
    async with (
        running(mongo_server, mongo_db, clean_pg, Stage.DUALWRITE) as runtime,
        legacy_db(mongo_server, mongo_db) as db,
    ):
        await eventually(lambda: _leading(runtime), 5)
        facade = runtime.facade
        s = await facade.create_session(ChatSession.new(title="t", user_id="u"))
        m = await facade.add_message(
            Message.new(session_id=s.id, sender="user", content={"type": "conversation"})
        )
        oid = ids.objectid_from_uuid(m.id)
        await db.messages.delete_one({"_id": oid})
        await eventually(lambda: _absent(facade.new, m), 2.0)
        assert m.id in await runtime.tombstones.tombstoned("messages", [m.id])


async def _absent(store: Any, m: Message) -> bool:
    try:
        await store.get_message(m.id)
    except NotFound:
        return True
    return False


async def test_a_restart_resumes_from_the_saved_position_with_nothing_lost(
    mongo_server: Any, mongo_db: str, clean_pg: str
) -> None:
    async with legacy_db(mongo_server, mongo_db) as db:
        async with running(mongo_server, mongo_db, clean_pg, Stage.DUALWRITE) as runtime:
            await eventually(lambda: _leading(runtime), 5)
            first = legacy_session("before the restart")
            await db.chat_sessions.insert_one(first)
            await eventually(lambda: present(runtime.facade.new, "chat_sessions", first["_id"]), 2)
        # No follower runs now: these changes wait in the stream.
        missed = [legacy_session(f"while down {i}") for i in range(20)]
        await db.chat_sessions.insert_many(missed)
        async with running(mongo_server, mongo_db, clean_pg, Stage.DUALWRITE) as runtime:
            new = runtime.facade.new
            await eventually(lambda: all_present(new, "chat_sessions", missed), 5)


async def test_one_follower_leads_and_another_takes_over_when_it_dies(
    mongo_server: Any, mongo_db: str, clean_pg: str
) -> None:
    async with (
        running(mongo_server, mongo_db, clean_pg, Stage.DUALWRITE, instance="a") as a,
        running(mongo_server, mongo_db, clean_pg, Stage.DUALWRITE, instance="b") as b,
        legacy_db(mongo_server, mongo_db) as db,
    ):
        await eventually(lambda: _one_leader(a, b), 5)
        await asyncio.sleep(1.0)
        assert await _one_leader(a, b)  # still exactly one after several renewals
        dead, alive = (a, b) if leader(a).status.state == "leading" else (b, a)
        task = leader(dead)._task
        assert task is not None
        task.cancel()  # dies mid-stream: no release, its lease runs out
        await asyncio.gather(task, return_exceptions=True)
        leader(dead)._task = None
        during = [legacy_session(f"during takeover {i}") for i in range(10)]
        await db.chat_sessions.insert_many(during)
        took = await eventually(lambda: _leading(alive), 5)
        new = alive.facade.new
        await eventually(lambda: all_present(new, "chat_sessions", during), 3)
        assert took < 1.5 + 1.0  # the lease, and a renewal period


async def _one_leader(a: Runtime, b: Runtime) -> bool:
    states = sorted([leader(a).status.state, leader(b).status.state])
    return states == ["leading", "standby"]


async def test_a_lost_position_is_flagged_stale_and_never_skipped(
    mongo_server: Any, mongo_db: str, clean_pg: str, capsys: Any
) -> None:
    async with (
        running(mongo_server, mongo_db, clean_pg, Stage.DUALWRITE) as runtime,
        legacy_db(mongo_server, mongo_db) as db,
    ):
        await eventually(lambda: _leading(runtime), 5)
        follower = leader(runtime)
        await follower.stop()
        # A token from another deployment: the stream cannot resume from it.
        await runtime.followers.reset("forward", {"token": '{"_data": "826500"}', "at": None})
        follower.start()
        await eventually(lambda: _is(follower, "stale"), 5)
        record = await runtime.followers.load("forward")
        assert record is not None and record.state == "stale"
        assert "strangler repair" in (record.state_reason or "")
        assert "strangler follow reset forward" in (record.state_reason or "")
        gauge = runtime.metrics.follower_state.labels("forward", "stale")
        assert gauge._value.get() == 1
        # Nothing is skipped: a write now is not copied while the follower is stale.
        doc = legacy_session("while stale")
        await db.chat_sessions.insert_one(doc)
        await asyncio.sleep(1.0)
        assert not await present(runtime.facade.new, "chat_sessions", doc["_id"])
        # The operator resets it (then verifies and repairs what came before): from now.
        position = await runtime.feeds["forward"].position_now()
        await runtime.followers.reset("forward", position)
        await eventually(lambda: _leading(runtime), 5)
        after = legacy_session("after the reset")
        await db.chat_sessions.insert_one(after)
        await eventually(lambda: present(runtime.facade.new, "chat_sessions", after["_id"]), 3)


async def _is(follower: Follower, state: str) -> bool:
    return follower.status.state == state


async def test_bad_documents_are_reported_and_never_block_the_stream(
    mongo_server: Any, mongo_db: str, clean_pg: str
) -> None:
    async with (
        running(mongo_server, mongo_db, clean_pg, Stage.DUALWRITE) as runtime,
        legacy_db(mongo_server, mongo_db) as db,
    ):
        await eventually(lambda: _leading(runtime), 5)
        good = legacy_session("good")
        one_way = {**legacy_session("string id"), "_id": "custom-id-1"}
        bad_sender = {**legacy_message(good), "sender": "robot"}
        await db.chat_sessions.insert_one(good)
        await db.chat_sessions.insert_one(one_way)
        await db.messages.insert_one(bad_sender)
        after = legacy_message(good, "after the bad ones")
        await db.messages.insert_one(after)
        new = runtime.facade.new
        await eventually(lambda: present(new, "messages", after["_id"]), 3)
        rows = await runtime.divergences.divergences(50)
        reported = {r["record_id"]: r["diff"] for r in rows if r["kind"] == "stream_quarantined"}
        bad_id = str(ids.uuid_from_objectid(bad_sender["_id"]))
        assert bad_id in reported
        # A one-way _id is copied under its uuid5 once strangler.legacy_ids keeps the
        # original (MongoDB's store can then find it by that UUID), not reported.
        assert "custom-id-1" not in reported
        copied = await new.get_session(ids.legacy_to_uuid("custom-id-1"))
        assert copied.title == "string id"
        assert leader(runtime).status.reported == 1
        # Its later changes follow it: a rename, then a delete, made in MongoDB alone.
        one_way_id = ids.legacy_to_uuid("custom-id-1")

        async def title_is(title: str) -> bool:
            return (await new.get_session(one_way_id)).title == title

        async def gone() -> bool:
            try:
                await new.get_session(one_way_id)
            except NotFound:
                return True
            return False

        await db.chat_sessions.update_one({"_id": "custom-id-1"}, {"$set": {"title": "later"}})
        await eventually(lambda: title_is("later"), 3)
        await db.chat_sessions.delete_one({"_id": "custom-id-1"})
        await eventually(gone, 3)


async def test_the_follower_is_idle_where_supabase_is_authoritative(
    mongo_server: Any, mongo_db: str, clean_pg: str
) -> None:
    async with running(mongo_server, mongo_db, clean_pg, Stage.LIVE) as runtime:
        await asyncio.sleep(0.5)
        assert leader(runtime).status.state == "idle"
        assert await runtime.followers.load("forward") is None  # it never claimed a lease


async def test_changes_made_before_a_move_are_applied_after_it(
    mongo_server: Any, mongo_db: str, clean_pg: str
) -> None:
    """Writes made around the facade just before the stage leaves ``shadow`` were made
    while MongoDB was authoritative: the follower applies them after the move, then goes
    idle, instead of dropping the batch in hand."""
    async with (
        running(mongo_server, mongo_db, clean_pg, Stage.SHADOW, pinned=False) as runtime,
        legacy_db(mongo_server, mongo_db) as db,
    ):
        await eventually(lambda: _leading(runtime), 5)
        docs = [legacy_session(f"just before live {i}") for i in range(20)]
        await db.chat_sessions.insert_many(docs)
        await runtime.facade.controller.set(Stage.LIVE, reason="test")
        new = runtime.facade.new
        await eventually(lambda: all_present(new, "chat_sessions", docs), 2.0)
        await eventually(lambda: _is(leader(runtime), "idle"), 3.0)
        late = legacy_session("made at live")
        await db.chat_sessions.insert_one(late)
        await asyncio.sleep(1.0)
        assert not await present(new, "chat_sessions", late["_id"])  # the next stage's


@pytest.mark.filterwarnings("ignore::ResourceWarning")
async def test_history_rolled_past_the_position_makes_the_follower_stale(
    tmp_path: Any, clean_pg: str
) -> None:
    """The real thing, not a forged token: a server that keeps 300 changes (it prunes every
    1,000), 2,500 written
    while the follower is down. It must stop as stale, not resume from whatever is left."""
    from strangler.embedded import EmbeddedMongo

    server = EmbeddedMongo(tmp_path / "small-oplog", oplog_max_entries=300)
    server.start()
    try:
        async with (
            running(server, "chat", clean_pg, Stage.DUALWRITE) as runtime,
            legacy_db(server, "chat") as db,
        ):
            await eventually(lambda: _leading(runtime), 5)
            follower = leader(runtime)
            await follower.stop()
            await db.chat_sessions.insert_many([legacy_session(f"lost {i}") for i in range(2500)])
            follower.start()
            await eventually(lambda: _is(follower, "stale"), 10)
            record = await runtime.followers.load("forward")
            assert record is not None and record.state == "stale"
            assert "cannot resume" in (record.state_reason or "")
            assert await runtime.facade.new.count("chat_sessions") == 0  # nothing skipped to
    finally:
        server.stop()


# --- reverse: Supabase -> MongoDB ----------------------------------------------------------


async def _pg(clean_pg: str, sql: str, *args: Any) -> Any:
    import asyncpg

    conn = await asyncpg.connect(clean_pg)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


def reverse(runtime: Runtime) -> Follower:
    return runtime.following[1]


async def _reverse_leading(runtime: Runtime) -> bool:
    return reverse(runtime).status.state == "leading"


@pytest.mark.parametrize("stage", [Stage.LIVE, Stage.COMPLETE])
async def test_a_write_straight_into_postgres_reaches_mongodb_within_2s(
    mongo_server: Any, mongo_db: str, clean_pg: str, stage: Stage
) -> None:
    async with (
        running(mongo_server, mongo_db, clean_pg, stage) as runtime,
        legacy_db(mongo_server, mongo_db) as db,
    ):
        await eventually(lambda: _reverse_leading(runtime), 5)
        oid = ObjectId()
        sid = ids.uuid_from_objectid(oid)
        # The SQL editor, an Edge Function: nothing of strangler's.
        await _pg(
            clean_pg,
            "INSERT INTO chat_sessions (id, title, created_at, user_id)"
            " VALUES ($1, 'from the SQL editor', now(), 'u-sql')",
            sid,
        )
        await eventually(lambda: _in_mongo(db, "chat_sessions", oid), 2.0)
        doc = await db.chat_sessions.find_one({"_id": oid})
        assert doc["title"] == "from the SQL editor"  # the legacy shape: an ObjectId _id
        assert runtime.metrics.bypass_writes.labels("postgres", "chat_sessions")._value.get() == 1
        await _pg(clean_pg, "DELETE FROM chat_sessions WHERE id = $1", sid)
        await eventually(lambda: _gone_from_mongo(db, "chat_sessions", oid), 2.0)
        await eventually(lambda: _log_empty(clean_pg), 2.0)  # applied changes are pruned


async def test_facade_writes_at_live_and_complete_are_not_bypass_writes(
    mongo_server: Any, mongo_db: str, clean_pg: str
) -> None:
    for stage in (Stage.LIVE, Stage.COMPLETE):
        async with running(mongo_server, mongo_db, clean_pg, stage) as runtime:
            await eventually(lambda runtime=runtime: _reverse_leading(runtime), 5)
            facade = runtime.facade
            s = await facade.create_session(ChatSession.new(title="t", user_id="u"))
            for i in range(10):
                await facade.add_message(
                    Message.new(
                        session_id=s.id,
                        sender="user",
                        content={"type": "conversation", "text": str(i)},
                    )
                )
            await facade.rename_session(s.id, "renamed")
            await eventually(lambda: _log_empty(clean_pg), 5.0)
            metric = runtime.metrics.bypass_writes
            assert metric.labels("postgres", "messages")._value.get() == 0
            assert metric.labels("postgres", "chat_sessions")._value.get() == 0
            # At complete the facade writes Supabase alone; the follower brings MongoDB along.
            assert (await facade.old.get_session(s.id)).title == "renamed"


async def test_changes_made_where_mongodb_leads_are_pruned_not_copied(
    mongo_server: Any, mongo_db: str, clean_pg: str
) -> None:
    async with running(mongo_server, mongo_db, clean_pg, Stage.DUALWRITE) as runtime:
        facade = runtime.facade
        await facade.create_session(ChatSession.new(title="t", user_id="u"))
        await eventually(lambda: _log_empty(clean_pg), 12.0)  # the idle reverse follower
        assert reverse(runtime).status.state == "idle"


async def _in_mongo(db: Any, coll: str, oid: ObjectId) -> bool:
    return await db[coll].find_one({"_id": oid}) is not None


async def _gone_from_mongo(db: Any, coll: str, oid: ObjectId) -> bool:
    return await db[coll].find_one({"_id": oid}) is None


async def _log_empty(clean_pg: str) -> bool:
    rows = await _pg(clean_pg, "SELECT count(*) FROM strangler.changes")
    return bool(rows[0][0] == 0)


async def test_at_complete_the_change_log_replaces_parking_and_holds_back_a_rollback(
    mongo_server: Any, mongo_db: str, clean_pg: str
) -> None:
    """With the followers on, a write at complete parks nothing on the request path; the
    change log carries it to MongoDB, and until it has, it counts as pending for MongoDB,
    so the stage controller refuses to hand MongoDB the reads."""
    async with running(mongo_server, mongo_db, clean_pg, Stage.COMPLETE) as runtime:
        facade = runtime.facade
        assert facade.park_at_complete is False
        await reverse(runtime).stop()  # nothing copies now: the change log keeps it
        s = await facade.create_session(ChatSession.new(title="at complete", user_id="u"))
        rows = await _pg(clean_pg, "SELECT count(*) FROM strangler.pending_writes")
        assert rows[0][0] == 0  # not parked
        assert await facade.pending("old") == 1  # but pending for MongoDB, in the log
        reverse(runtime).start()
        await eventually(lambda: _log_empty(clean_pg), 5.0)
        assert await facade.pending("old") == 0
        assert (await facade.old.get_session(s.id)).title == "at complete"


async def test_a_position_replaced_while_idle_is_flagged_stale_when_its_stage_returns(
    mongo_server: Any, mongo_db: str, clean_pg: str
) -> None:
    """The chaos harness's fault: a restore (or a hand edit) leaves the idle follower a
    token from another deployment; when the stage comes back to MongoDB's, it goes stale."""
    async with running(mongo_server, mongo_db, clean_pg, Stage.SHADOW, pinned=False) as runtime:
        await eventually(lambda: _leading(runtime), 5)
        await runtime.facade.controller.set(Stage.LIVE, reason="test")
        await eventually(lambda: _is(leader(runtime), "idle"), 3.0)
        await _pg(
            clean_pg,
            "UPDATE strangler.followers SET position = $1::jsonb WHERE name = 'forward'",
            '{"token": "{\\"_data\\": \\"826500\\"}", "at": null}',
        )
        await runtime.facade.controller.set(Stage.SHADOW, reason="test")
        await eventually(lambda: _is(leader(runtime), "stale"), 5.0)


async def test_cli_status_exits_1_for_a_stale_follower_and_reset_clears_it(
    mongo_server: Any, mongo_db: str, clean_pg: str
) -> None:
    """``strangler follow status`` (text and ``--json``) exits 1 while a follower is stale, so
    a script can alert on it; ``strangler follow reset`` makes it follow from now."""
    import json
    import os
    import subprocess

    from strangler.backends.postgres import PostgresFollowerState
    from tests.cli import strangler

    env = {
        **os.environ,
        "MONGO_URI": mongo_server.uri,
        "MONGO_DB": mongo_db,
        "SUPABASE_DB_URL": clean_pg,
        "STRANGLER_LOG_FORMAT": "json",
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return strangler(env, "follow", *args)

    async with PostgresStore(clean_pg) as pg:
        await PostgresFollowerState(pg).mark("forward", "stale", "the token was rejected")
    text = await asyncio.to_thread(cli, "status")
    assert text.returncode == 1, text.stderr
    assert "forward: stale (the token was rejected)" in text.stdout
    as_json = await asyncio.to_thread(cli, "status", "--json")
    assert as_json.returncode == 1, as_json.stderr
    assert json.loads(as_json.stdout)["forward"]["state"] == "stale"
    reset = await asyncio.to_thread(cli, "reset", "forward")
    assert reset.returncode == 0, reset.stderr
    assert "now follows from" in reset.stdout
    after = await asyncio.to_thread(cli, "status", "--json")
    assert after.returncode == 0 and json.loads(after.stdout)["forward"]["state"] == "running"


async def test_the_lag_in_changes_is_the_change_logs_depth(
    mongo_server: Any, mongo_db: str, clean_pg: str
) -> None:
    """Operators see how many changes are still to copy: for the reverse follower, exactly
    the change log's depth; it goes back to 0 once they are copied."""
    async with running(mongo_server, mongo_db, clean_pg, Stage.LIVE) as runtime:
        follower = reverse(runtime)
        await eventually(lambda: _reverse_leading(runtime), 5)
        await follower.stop()
        for i in range(30):
            await _pg(
                clean_pg,
                "INSERT INTO chat_sessions (id, title, created_at, user_id)"
                " VALUES (gen_random_uuid(), $1, now(), 'u-sql')",
                f"backlog {i}",
            )
        seen: list[int] = []

        async def watch() -> bool:
            seen.append(follower.status.lag_changes)
            return bool(seen[-1] == 0 and max(seen) > 0)

        follower.start()
        await eventually(watch, 5.0)
        assert max(seen) == 30 and follower.status.lag_changes_exact, seen
        gauge = runtime.metrics.follower_lag_changes.labels("reverse")
        assert gauge._value.get() == 0
        status = follower.status.json()
        assert status["lag_changes"] == 0
        assert status["applied_per_s"] == 3.0  # 30 changes in the last 10 s


async def test_the_settle_delay_stretches_to_the_facades_slowest_second_write(
    mongo_server: Any, mongo_db: str, clean_pg: str
) -> None:
    """Under load the facade's second write trails its first by more than the settle delay;
    deciding then would take it for a bypass write. The delay follows the slowest second
    write of the last minute, up to the secondary timeout and a margin."""
    async with running(mongo_server, mongo_db, clean_pg, Stage.DUALWRITE) as runtime:
        follower = leader(runtime)
        assert follower.settle_now() == FAST["settle"]  # no second write seen yet
        runtime.metrics.observe_trail(0.05)
        assert follower.settle_now() == FAST["settle"]  # fast ones change nothing
        runtime.metrics.observe_trail(1.0)
        assert follower.settle_now() == pytest.approx(1.3)
        runtime.metrics.observe_late(2.0)  # journaled after the 2 s secondary timeout
        assert follower.settle_now() == pytest.approx(2.5)
        runtime.metrics.observe_late(30.0)
        assert follower.settle_now() == pytest.approx(3.0)  # at most the timeout + 1 s


@pytest.mark.parametrize("follow", [True, False])
async def test_without_the_followers_the_facade_writes_are_not_captured(
    clean_pg: str, follow: bool
) -> None:
    """``STRANGLER_FOLLOW=false``: nothing would copy or prune the change log, so the
    facade's connections do not write to it (it parks for MongoDB at complete instead)."""
    from strangler.config import Settings
    from strangler.runtime import new_store

    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, supabase_db_url=clean_pg, follow=follow
    )
    async with new_store(settings) as store:
        await store.create_session(ChatSession.new(title="t", user_id="u"))
    rows = await _pg(clean_pg, "SELECT origin FROM strangler.changes")
    assert [r[0] for r in rows] == (["facade"] if follow else [])


async def test_nothing_is_captured_while_the_control_table_says_mongodb_leads(
    clean_pg: str,
) -> None:
    """At off, dualwrite and shadow nothing in Postgres is for MongoDB: the triggers skip,
    which saves an insert per statement on the request path and on every forward copy."""
    async with PostgresStore(clean_pg, session={"strangler.origin": "facade"}) as store:
        stages = PostgresStageStore(store)
        current = Stage.OFF
        for stage, captured in [
            (Stage.DUALWRITE, 0),
            (Stage.SHADOW, 0),
            (Stage.LIVE, 1),
            (Stage.RAMPDOWN, 1),
            (Stage.COMPLETE, 1),
            (Stage.OFF, 0),
        ]:
            await stages.write_stage(
                stage, origin="test", reason=None, forced=True, expected=current
            )
            current = stage
            await _pg(clean_pg, "DELETE FROM strangler.changes")
            await store.create_session(ChatSession.new(title=stage.value, user_id="u"))
            rows = await _pg(clean_pg, "SELECT stage FROM strangler.changes")
            assert [r[0] for r in rows] == [stage.value] * captured, stage


async def test_a_flood_of_bypass_writes_is_recorded_in_few_rows_and_every_id_kept(
    mongo_server: Any, mongo_db: str, clean_pg: str
) -> None:
    """A script that writes thousands of documents around the facade: every one is counted
    and copied, the first 50 of each batch get a row each, and the rest of the batch one
    row that lists their ids (each id is in the log line too)."""
    async with (
        running(mongo_server, mongo_db, clean_pg, Stage.DUALWRITE) as runtime,
        legacy_db(mongo_server, mongo_db) as db,
    ):
        await eventually(lambda: _leading(runtime), 5)
        await leader(runtime).stop()
        docs = [legacy_session(f"flood {i}") for i in range(300)]
        await db.chat_sessions.insert_many(docs)
        leader(runtime).start()
        await eventually(lambda: all_present(runtime.facade.new, "chat_sessions", docs), 10)
        rows = [
            r for r in await runtime.divergences.divergences(1000) if r["kind"] == "bypass_write"
        ]
        listed = {r["record_id"] for r in rows if "count" not in r["diff"]}
        for r in rows:
            listed.update(r["diff"].get("ids", []))
        assert listed == {str(ids.uuid_from_objectid(d["_id"])) for d in docs}
        assert len(rows) < 300
        assert bypass_count(runtime, "chat_sessions") == 300


async def test_a_followers_writes_are_recorded_as_its_own_in_the_change_log(
    clean_pg: str,
) -> None:
    """Writes made inside a follower's block carry its origin in the change log, whatever
    the connection's session says; the facade's keep theirs. Every kind of write."""
    async with PostgresStore(clean_pg, session={"strangler.origin": "facade"}) as store:
        await PostgresStageStore(store).write_stage(
            Stage.LIVE, origin="test", reason=None, forced=True, expected=Stage.OFF
        )
        facades = ChatSession.new(title="the facade's", user_id="u")
        await store.create_session(facades)
        forward = origin.follower("forward")
        with origin.writing_as(forward):
            s = ChatSession.new(title="copied", user_id="u")
            await store.upsert_sessions([s])
            m = Message.new(
                session_id=s.id, sender="user", content={"type": "conversation", "text": "x"}
            )
            await store.upsert_messages([m])
            await store.rename_session(s.id, "renamed")
            await store.delete_many("messages", [m.id])
            await store.delete_session(s.id)
        await store.rename_session(facades.id, "the facade's, renamed")
        rows = await _pg(
            clean_pg, "SELECT record_id, op, origin FROM strangler.changes ORDER BY id"
        )
    assert [(r[0], r[1], r[2]) for r in rows] == [
        (facades.id, "insert", "facade"),
        (s.id, "insert", forward),
        (m.id, "insert", forward),
        (s.id, "update", forward),
        (m.id, "delete", forward),
        (s.id, "delete", forward),
        (facades.id, "update", "facade"),
    ]


async def test_the_forward_followers_copy_is_never_copied_back_over_a_newer_state(
    mongo_server: Any, mongo_db: str, clean_pg: str
) -> None:
    """A session written around the facade at shadow, renamed just before the move to
    live: the forward follower, behind, copies its insert into Supabase at live (the older
    title). The reverse follower, which copies Supabase's changes at live, must not copy
    that one back: MongoDB's newer title would be lost, in both stores (two chaos runs
    lost a rename this way)."""
    async with (
        running(mongo_server, mongo_db, clean_pg, Stage.LIVE) as runtime,
        legacy_db(mongo_server, mongo_db) as db,
    ):
        await eventually(lambda: _reverse_leading(runtime), 5)
        doc = legacy_session("the newer title")
        await db.chat_sessions.insert_one(doc)
        sid = ids.uuid_from_objectid(doc["_id"])
        older = ChatSession(
            id=sid, title="the older title", created_at=doc["created_at"], user_id="u-legacy"
        )
        with origin.writing_as(origin.follower("forward")):  # as the forward follower does
            await runtime.facade.new.upsert_sessions([older])
        await eventually(lambda: _log_empty(clean_pg), 5.0)  # the reverse follower saw it
        assert (await db.chat_sessions.find_one({"_id": doc["_id"]}))["title"] == "the newer title"
        # Not a bypass write either: nothing of it was counted.
        assert runtime.metrics.bypass_writes.labels("postgres", "chat_sessions")._value.get() == 0


async def test_a_drain_a_failing_store_interrupts_still_lands_what_came_before_the_move(
    mongo_server: Any, mongo_db: str, clean_pg: str
) -> None:
    """Writes around the facade just before the move from shadow to live, and MongoDB
    stopping to answer as the follower applies them: the follower must finish its drain
    once MongoDB answers again, not go idle with them unapplied until the walk comes back
    (Supabase, authoritative by then, would lack them; two chaos runs lost a rename so)."""
    async with (
        # A short timeout: MongoDB's hang fails the follower's calls quickly.
        running(
            mongo_server,
            mongo_db,
            clean_pg,
            Stage.SHADOW,
            pinned=False,
            store_timeout=0.5,
            settle=1.0,
        ) as runtime,
        legacy_db(mongo_server, mongo_db) as db,
    ):
        await eventually(lambda: _leading(runtime), 5)
        docs = [legacy_session(f"just before live {i}") for i in range(10)]
        await db.chat_sessions.insert_many(docs)
        await asyncio.sleep(0.3)  # read by the follower, waiting out its settle delay
        await runtime.facade.controller.set(Stage.LIVE, reason="test", force=True)
        with paused(mongo_server):
            await asyncio.sleep(1.5)  # the batch fails (the journal is asked in MongoDB)
        new = runtime.facade.new
        await eventually(lambda: all_present(new, "chat_sessions", docs), 8.0)
        await eventually(lambda: _is(leader(runtime), "idle"), 10.0)
