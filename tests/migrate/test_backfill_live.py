"""Backfill alongside live traffic through the facade in ``dualwrite``: newer values are
never overwritten with older legacy ones, deletes are never resurrected, and ``verify``
finds the stores equal at the end."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest
from bson import json_util
from pymongo import AsyncMongoClient

from strangler.backends.postgres import PostgresTombstones
from strangler.core import ids
from strangler.core.errors import NotFound, StranglerError
from strangler.core.models import ChatSession, Message
from strangler.embedded.legacy_data import generate
from strangler.migrate.backfill import Backfill
from strangler.migrate.report import Report
from strangler.migrate.sources import FileSource, MongoSource
from strangler.migrate.verify import diff_stores
from tests.conftest import StoreFactory


@pytest.mark.parametrize("source", ["live-recheck", "live-tombstones", "files-tombstones"])
async def test_backfill_under_dualwrite_traffic_ends_with_equal_stores(
    make_store: StoreFactory, mongo_server: Any, mongo_db: str, tmp_path: Path, source: str
) -> None:
    """Deletes made during the backfill are not resurrected, whether they are caught by
    re-reading a live source or by the facade's tombstones (the only way for files)."""
    pairs = list(generate(300, 4, seed=11))
    client: AsyncMongoClient[Any] = AsyncMongoClient(mongo_server.uri)
    await client[mongo_db].chat_sessions.insert_many([s for s, _ in pairs])
    await client[mongo_db].messages.insert_many([m for _, ms in pairs for m in ms])
    await client.close()
    legacy = [ids.uuid_from_objectid(s["_id"]) for s, _ in pairs]
    opts = json_util.JSONOptions(json_mode=json_util.JSONMode.RELAXED, uuid_representation=4)
    (tmp_path / "chat_sessions.json").write_text(
        "".join(json_util.dumps(s, json_options=opts) + "\n" for s, _ in pairs)
    )
    (tmp_path / "messages.json").write_text(
        "".join(json_util.dumps(m, json_options=opts) + "\n" for _, ms in pairs for m in ms)
    )
    rng = random.Random(3)

    async with make_store("facade:dualwrite") as facade:
        stop, failures, done = asyncio.Event(), [], {"renamed": 0, "deleted": 0}

        async def traffic() -> None:
            while not stop.is_set():
                sid = rng.choice(legacy)
                try:
                    roll = rng.random()
                    if roll < 0.4:
                        await facade.rename_session(sid, f"renamed {rng.random():.6f}")
                        done["renamed"] += 1
                    elif roll < 0.55:
                        await facade.delete_session(sid)
                        done["deleted"] += 1
                    elif roll < 0.85:
                        await facade.add_message(
                            Message.new(
                                session_id=sid,
                                sender="user",
                                content={"type": "conversation", "text": "live"},
                            )
                        )
                    else:
                        await facade.create_session(ChatSession.new(title="new", user_id="u"))
                except NotFound:
                    pass  # the session was deleted a moment ago: a normal 404
                except StranglerError as exc:
                    failures.append(exc)
                await asyncio.sleep(0)

        workers = [asyncio.create_task(traffic()) for _ in range(3)]
        origin = FileSource(tmp_path) if source.startswith("files") else MongoSource(facade.old)  # type: ignore[arg-type]
        graves = PostgresTombstones(facade.new)  # type: ignore[arg-type]
        tombstones = graves.tombstoned if source.endswith("tombstones") else None
        with Report(None) as report:
            result = await Backfill(
                origin,
                facade.new,
                report,
                batch_size=25,  # type: ignore[arg-type]
                tombstones=tombstones,
                any_tombstones=graves.any_tombstones if tombstones else None,
            ).run()
        await asyncio.sleep(0.2)
        stop.set()
        await asyncio.gather(*workers)
        assert failures == []
        assert done["renamed"] > 10 and done["deleted"] > 3
        for _ in range(100):
            await facade.replayer.run_once()
            if await facade.pending("new") == 0:
                break
            await asyncio.sleep(0.1)
        diffs = await diff_stores(facade.old, facade.new)
        assert all(d.equal for d in diffs.values()), {t: d.summary() for t, d in diffs.items()}
        c = result.counts["messages"]
        assert c.read == c.written + c.quarantined + c.vanished
