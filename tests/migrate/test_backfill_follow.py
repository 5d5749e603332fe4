"""``strangler backfill --follow``: the full load plus the change stream. Writes made
straight into MongoDB while the backfill runs (an old backend instance, a script) are never
missed, even at ``off``: the follower starts before the first document is read, and
``strangler serve`` goes on from its position."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path
from typing import Any

from bson import ObjectId
from pymongo import AsyncMongoClient

from strangler.config import Settings
from strangler.core import ids
from strangler.embedded.legacy_data import generate
from strangler.migrate.verify import diff_stores
from strangler.operate.backfill import backfill
from strangler.runtime import Runtime


def _settings(mongo_uri: str, mongo_db: str, pg: str) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        mongo_uri=mongo_uri,
        mongo_db=mongo_db,
        supabase_db_url=pg,
        follow_settle_seconds=0.1,
        follow_lease_seconds=1.5,
    )


async def test_writes_made_during_a_backfill_at_off_are_all_copied(
    mongo_server: Any, mongo_db: str, clean_pg: str, tmp_path: Path
) -> None:
    pairs = list(generate(400, 5, seed=5))
    client: AsyncMongoClient[Any] = AsyncMongoClient(mongo_server.uri)
    db = client[mongo_db]
    await db.chat_sessions.insert_many([s for s, _ in pairs])
    await db.messages.insert_many([m for _, ms in pairs for m in ms])
    settings = _settings(mongo_server.uri, mongo_db, clean_pg)
    written: list[ObjectId] = []
    renamed: list[ObjectId] = []
    stop = asyncio.Event()

    async def old_instance() -> None:
        """An old backend instance, still writing the legacy shape straight to MongoDB."""
        i = 0
        while not stop.is_set():
            oid = ObjectId()
            now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
            await db.chat_sessions.insert_one(
                {"_id": oid, "title": f"during {i}", "created_at": now, "user_id": "old"}
            )
            written.append(oid)
            target = pairs[i % len(pairs)][0]["_id"]
            await db.chat_sessions.update_one({"_id": target}, {"$set": {"title": f"r{i}"}})
            renamed.append(target)
            i += 1
            await asyncio.sleep(0.01)

    writer = asyncio.create_task(old_instance())
    try:
        code = await backfill(
            settings,
            source=mongo_server.uri.replace("/?", f"/{mongo_db}?"),
            report=tmp_path / "report.jsonl",
            orphans="quarantine",
            dry_run=False,
            batch_size=200,
            checkpoint=tmp_path / "cp.json",
            resume=False,
            follow=True,
        )
    finally:
        stop.set()
        await writer
    assert code == 0
    assert len(written) >= 5  # the writer really ran during the backfill
    # The stage is still off; the follower was started, so 'strangler serve' follows on.
    async with Runtime.open(settings) as runtime:
        record = await runtime.followers.load("forward")
        assert record is not None and record.position is not None
        deadline = time.monotonic() + 10
        while True:
            diffs = await diff_stores(runtime.facade.old, runtime.facade.new)
            if all(d.equal for d in diffs.values()) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.3)
        assert {t: d.counts for t, d in diffs.items()} == {
            "chat_sessions": {"missing": 0, "extra": 0, "different": 0},
            "messages": {"missing": 0, "extra": 0, "different": 0},
        }
        stored = await runtime.facade.new.get_session(ids.uuid_from_objectid(written[-1]))
        assert stored.title == f"during {len(written) - 1}"
        assert record.applied + (await _applied(runtime)) > 0  # the follower did the copying
    await client.close()


async def _applied(runtime: Runtime) -> int:
    record = await runtime.followers.load("forward")
    return 0 if record is None else record.applied
