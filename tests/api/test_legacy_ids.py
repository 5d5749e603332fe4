"""Records whose MongoDB ``_id`` was a string or an integer (stored under a UUID that cannot
give it back) stay reachable by that old id in API paths once Supabase serves reads."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from bson import ObjectId
from pymongo import AsyncMongoClient

from strangler.backends.mongo import MongoStore
from strangler.backends.postgres import PostgresStore
from strangler.migrate.backfill import Backfill
from strangler.migrate.report import Report
from strangler.migrate.sources import MongoSource
from tests.api.conftest import ApiFactory, as_user

AT = dt.datetime(2024, 1, 1)


async def test_legacy_string_and_integer_ids_resolve_in_paths(
    make_api: ApiFactory, mongo_server: Any, mongo_db: str, clean_pg: str, tmp_path: Path
) -> None:
    client_: AsyncMongoClient[Any] = AsyncMongoClient(mongo_server.uri)
    db = client_[mongo_db]
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
    async with (
        MongoStore(mongo_server.uri, database=mongo_db, timeout=60) as mongo,
        PostgresStore(clean_pg) as pg,
    ):
        with Report(tmp_path / "report.jsonl") as report:
            result = await Backfill(MongoSource(mongo), pg, report).run()
    assert result.counts["chat_sessions"].repaired == 4  # id_one_way, reported
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
