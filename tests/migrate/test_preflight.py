"""The oplog preflight of ``strangler backfill --follow`` from a live MongoDB: the backfill's
estimated duration against how far back the change stream can resume."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo import AsyncMongoClient

from strangler.backends.mongo import MongoStore
from strangler.core.errors import ConfigError
from strangler.embedded.legacy_data import generate
from strangler.migrate.sources import MongoSource
from strangler.operate import backfill
from strangler.operate.backfill import oplog_preflight, sample_rate


@pytest.fixture
async def legacy(mongo_server: Any, mongo_db: str) -> MongoStore:
    client: AsyncMongoClient[Any] = AsyncMongoClient(mongo_server.uri)
    pairs = list(generate(50, 20))
    await client[mongo_db].chat_sessions.insert_many([s for s, _ in pairs])
    await client[mongo_db].messages.insert_many([m for _, ms in pairs for m in ms])
    await client.close()
    async with MongoStore(mongo_server.uri, database=mongo_db, timeout=60) as store:
        yield store


async def test_a_backfill_that_would_outlast_the_oplog_is_refused_saying_what_to_do(
    legacy: MongoStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = MongoSource(legacy)
    # SecantusDB keeps an oplog (its last 100,000 changes): the window is told.
    window = await legacy.oplog_window()
    assert window is not None and window >= 0
    eta = await oplog_preflight(source, ignore=False)  # ~1,000 documents: well inside
    assert eta is not None and eta > 0
    assert await sample_rate(source, "messages", 0.5) > 0  # type: ignore[operator]

    async def short(self: MongoStore) -> float:
        return 600.0  # 10 minutes of changes

    # Against a 10-minute oplog, a backfill that reads as slowly as an hour's worth.
    monkeypatch.setattr(MongoStore, "oplog_window", short)
    monkeypatch.setattr(backfill, "SCAN_SHARE", 0.6 * eta / 3600)  # type: ignore[operator]
    with pytest.raises(ConfigError) as refused:
        await oplog_preflight(source, ignore=False)
    text = str(refused.value)
    assert "oplog holds only 10 min" in text and "1,050 documents" in text
    assert "replSetResizeOplog" in text and "--ignore-oplog-window" in text
    assert await oplog_preflight(source, ignore=True) is not None  # warned, not refused

    async def long(self: MongoStore) -> float:
        return 7 * 24 * 3600.0

    monkeypatch.setattr(MongoStore, "oplog_window", long)
    assert await oplog_preflight(source, ignore=False) is not None

    async def untold(self: MongoStore) -> None:
        return None

    monkeypatch.setattr(MongoStore, "oplog_window", untold)  # a warning, not a refusal
    assert await oplog_preflight(source, ignore=False) is not None
