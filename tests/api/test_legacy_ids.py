"""Records whose MongoDB ``_id`` was a string or an integer (stored under a UUID that cannot
give it back) stay reachable by that old id in API paths, at every stage: where Supabase
serves reads through the UUID, where MongoDB does through ``strangler.legacy_ids``, which
keeps each original, and written back to MongoDB under the old ``_id``."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient

from strangler.backends.mongo import MongoStore
from strangler.backends.mongo.store import LEGACY_LOOKUP_SECONDS
from strangler.backends.postgres import PostgresLegacyIds, PostgresStore
from strangler.core import ids
from strangler.core.errors import NotFound
from strangler.migrate.backfill import Backfill
from strangler.migrate.report import Report
from strangler.migrate.sources import MongoSource
from tests.api.conftest import ApiFactory, as_user

AT = dt.datetime(2024, 1, 1)


async def seed(uri: str, db_name: str) -> None:
    client_: AsyncMongoClient[Any] = AsyncMongoClient(uri)
    db = client_[db_name]
    await db.chat_sessions.insert_many(
        [
            {"_id": "trip-2019", "title": "string id", "created_at": AT, "user_id": "u1"},
            {"_id": 42, "title": "integer id", "created_at": AT, "user_id": "u1"},
            {"_id": "42", "title": "the string 42", "created_at": AT, "user_id": "u1"},
            {"_id": 7, "title": "integer only", "created_at": AT, "user_id": "u1"},
        ]
    )
    message = {
        "_id": "m-1",
        "session_id": "trip-2019",
        "sender": "user",
        "content": {"type": "conversation", "text": "hi"},
        "timestamp": AT,
    }
    await db.messages.insert_one(message)
    await client_.close()


async def backfill(uri: str, db_name: str, pg_url: str, tmp_path: Path) -> None:
    async with (
        MongoStore(uri, database=db_name, timeout=60) as mongo,
        PostgresStore(pg_url) as pg,
    ):
        with Report(tmp_path / "report.jsonl") as report:
            result = await Backfill(
                MongoSource(mongo), pg, report, legacy_ids=PostgresLegacyIds(pg)
            ).run()
    assert result.counts["chat_sessions"].repaired == 4  # id_one_way, reported


async def kept(pg_url: str) -> set[tuple[str, Any]]:
    conn = await asyncpg.connect(pg_url)
    try:
        rows = await conn.fetch("SELECT table_name, legacy::text FROM strangler.legacy_ids")
    finally:
        await conn.close()
    return {(r[0], json.loads(r[1])) for r in rows}


async def test_legacy_string_and_integer_ids_resolve_in_paths(
    make_api: ApiFactory, mongo_server: Any, mongo_db: str, clean_pg: str, tmp_path: Path
) -> None:
    await seed(mongo_server.uri, mongo_db)
    await backfill(mongo_server.uri, mongo_db, clean_pg, tmp_path)
    assert await kept(clean_pg) == {
        ("chat_sessions", "trip-2019"),
        ("chat_sessions", 42),
        ("chat_sessions", "42"),
        ("chat_sessions", 7),
        ("messages", "m-1"),
    }
    client = await make_api("live", follow=False, guard=False)
    u1 = as_user("u1")
    for path, title in [
        ("/sessions/trip-2019", "string id"),
        ("/sessions/42", "the string 42"),  # the string reading comes first
        ("/sessions/7", "integer only"),  # then the integer's
    ]:
        resp = await client.get(path, headers=u1)
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["title"] == title
    page = await client.get("/sessions/trip-2019/messages", headers=u1)
    assert page.status == 200
    assert [m["content"]["text"] for m in (await page.json())["items"]] == ["hi"]
    # Someone else's legacy id is as absent as a wrong one.
    other = await client.get("/sessions/trip-2019", headers=as_user("u2"))
    assert other.status == 404
    assert (await client.get(f"/sessions/{ObjectId()}", headers=u1)).status == 404
    assert (await client.get("/sessions/no-such-legacy-id", headers=u1)).status == 404


@pytest.mark.parametrize("stage", ["dualwrite", "live"])
async def test_one_way_ids_are_read_and_written_in_place_at_every_stage(
    stage: str,
    make_api: ApiFactory,
    mongo_server: Any,
    mongo_db: str,
    clean_pg: str,
    tmp_path: Path,
) -> None:
    """At ``dualwrite`` MongoDB serves reads and is written first; at ``live`` it is the
    secondary. Either way the old documents are found and changed where they are: no copy
    under the UUID appears beside them, and a new message refers to its session as the
    legacy app did."""
    await seed(mongo_server.uri, mongo_db)
    await backfill(mongo_server.uri, mongo_db, clean_pg, tmp_path)
    client = await make_api(stage, follow=False, guard=False)
    u1 = as_user("u1")
    resp = await client.get("/sessions/trip-2019", headers=u1)
    assert resp.status == 200, await resp.text()
    sid = (await resp.json())["id"]
    page = await client.get("/sessions/trip-2019/messages", headers=u1)
    assert [m["content"]["text"] for m in (await page.json())["items"]] == ["hi"]
    resp = await client.patch("/sessions/trip-2019", json={"title": "renamed"}, headers=u1)
    assert resp.status == 200, await resp.text()
    body = {"sender": "user", "content": {"type": "conversation", "text": "again"}}
    resp = await client.post("/sessions/trip-2019/messages", json=body, headers=u1)
    assert resp.status == 201, await resp.text()
    assert (await client.get("/messages/m-1", headers=u1)).status == 200
    assert (await client.delete("/sessions/7", headers=u1)).status == 204
    page = await client.get("/sessions/trip-2019/messages", headers=u1)
    assert [m["content"]["text"] for m in (await page.json())["items"]] == ["hi", "again"]

    mongo: AsyncMongoClient[Any] = AsyncMongoClient(mongo_server.uri)
    try:
        db = mongo[mongo_db]
        sessions = {d["_id"]: d["title"] async for d in db.chat_sessions.find()}
        assert sessions == {"trip-2019": "renamed", 42: "integer id", "42": "the string 42"}
        refs = [d["session_id"] async for d in db.messages.find().sort("timestamp", 1)]
        assert refs == ["trip-2019", "trip-2019"]
    finally:
        await mongo.close()
    conn = await asyncpg.connect(clean_pg)
    try:
        title = await conn.fetchval("SELECT title FROM chat_sessions WHERE id = $1", sid)
        count = await conn.fetchval("SELECT count(*) FROM messages WHERE session_id = $1", sid)
        left = await conn.fetchval("SELECT count(*) FROM chat_sessions")
    finally:
        await conn.close()
    assert (title, count, left) == ("renamed", 2, 3)


async def test_a_record_written_back_to_mongodb_keeps_its_old_id(
    mongo_server: Any, mongo_db: str, clean_pg: str, tmp_path: Path
) -> None:
    """A rollback (or a repair from Supabase) that writes a record MongoDB lost writes it
    under its old ``_id``, so the legacy app finds it again."""
    await seed(mongo_server.uri, mongo_db)
    await backfill(mongo_server.uri, mongo_db, clean_pg, tmp_path)
    async with (
        MongoStore(mongo_server.uri, database=mongo_db) as mongo,
        PostgresStore(clean_pg) as pg,
    ):
        mongo.use_legacy_ids(PostgresLegacyIds(pg))
        session = await pg.get_session(ids.legacy_to_uuid("trip-2019"))
        message = await pg.get_message(ids.legacy_to_uuid("m-1"))
        db = mongo.db()
        await db.messages.delete_many({})
        await db.chat_sessions.delete_many({"_id": "trip-2019"})
        await mongo.upsert_sessions([session])
        await mongo.upsert_messages([message])
        assert await db.chat_sessions.count_documents({"_id": "trip-2019"}) == 1
        assert [d async for d in db.messages.find({}, {"_id": 1, "session_id": 1})] == [
            {"_id": "m-1", "session_id": "trip-2019"}
        ]
        # Without the index it would have been a new document under the UUID.
        assert await db.chat_sessions.count_documents({}) == 4


async def test_a_scan_keeps_the_originals_it_meets(
    mongo_server: Any, mongo_db: str, clean_pg: str
) -> None:
    """Verify and repair scan MongoDB: one-way ids they meet are kept too (a document a
    script inserted after the backfill, say), and found by UUID from then on."""
    await seed(mongo_server.uri, mongo_db)
    async with (
        MongoStore(mongo_server.uri, database=mongo_db) as mongo,
        PostgresStore(clean_pg) as pg,
    ):
        assert await mongo.read_many("chat_sessions", [ids.legacy_to_uuid(7)]) == {}
        mongo.use_legacy_ids(PostgresLegacyIds(pg))
        async for _ in mongo.scan_sessions():
            pass
        found = await mongo.read_many("chat_sessions", [ids.legacy_to_uuid(7)])
        assert [s.title for s in found.values()] == ["integer only"]  # type: ignore[union-attr]
    assert ("chat_sessions", 7) in await kept(clean_pg)
    assert ("messages", "m-1") not in await kept(clean_pg)  # not scanned


async def test_a_hung_index_costs_a_lookup_at_most_its_bound(
    mongo_server: Any, mongo_db: str
) -> None:
    """If ``strangler.legacy_ids`` does not answer, MongoDB's store goes on without it."""

    class Hung:
        async def remember(self, table: str, pairs: Any) -> None:
            await asyncio.sleep(60)

        async def originals(self, table: str, record_ids: Any) -> dict[Any, Any]:
            await asyncio.sleep(60)
            return {}

    await seed(mongo_server.uri, mongo_db)
    async with MongoStore(mongo_server.uri, database=mongo_db, timeout=5) as mongo:
        mongo.use_legacy_ids(Hung())  # type: ignore[arg-type]
        start = time.monotonic()
        with pytest.raises(NotFound):
            await mongo.get_session(ids.legacy_to_uuid("trip-2019"))
        assert time.monotonic() - start < LEGACY_LOOKUP_SECONDS + 1.0
        # An ObjectId's record never asks the index.
        start = time.monotonic()
        with pytest.raises(NotFound):
            await mongo.get_session(ObjectId())
        assert time.monotonic() - start < 0.5
