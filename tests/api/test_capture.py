"""Change capture seen from the API: a write made straight into MongoDB while the API runs
at ``dualwrite`` is served from Supabase once the stage moves, and operators find it on
``/admin/status``, the overview and ``/metrics``."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from bson import ObjectId
from pymongo import AsyncMongoClient

from strangler.core import ids
from tests.api.conftest import ADMIN, ApiFactory, as_user

ADMIN_H = {"Authorization": f"Bearer {ADMIN}"}


async def _status(client: Any) -> dict[str, Any]:
    return dict(await (await client.get("/admin/status", headers=ADMIN_H)).json())


async def test_a_write_around_the_api_reaches_supabase_and_is_listed(
    make_api: ApiFactory, mongo_server: Any, mongo_db: str
) -> None:
    client = await make_api(None, follow_settle_seconds=0.1, follow_lease_seconds=1.5)
    r = await client.put("/admin/stage", json={"stage": "dualwrite"}, headers=ADMIN_H)
    assert r.status == 200, await r.text()
    for _ in range(100):  # the follower leads and has saved where it follows from
        followers = (await _status(client))["followers"]
        if followers and followers[0]["state"] == "leading":
            overview = await (await client.get("/admin/overview", headers=ADMIN_H)).json()
            if overview["followers"][0]["leader"]:
                break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.3)
    mongo: AsyncMongoClient[Any] = AsyncMongoClient(mongo_server.uri)
    oid = ObjectId()
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    await mongo[mongo_db].chat_sessions.insert_one(
        {"_id": oid, "title": "from an old instance", "created_at": now, "user_id": "alice"}
    )
    await mongo.close()
    sid = str(ids.uuid_from_objectid(oid))
    for _ in range(40):
        overview = await (await client.get("/admin/overview", headers=ADMIN_H)).json()
        if any(r["record_id"] == sid for r in overview["bypass_writes"]):
            break
        await asyncio.sleep(0.1)
    listed = [r for r in overview["bypass_writes"] if r["record_id"] == sid]
    assert listed and listed[0]["kind"] == "bypass_write"
    assert listed[0]["diff"]["store"] == "mongo"
    forward = overview["followers"][0]
    assert forward["name"] == "forward" and forward["state"] == "running"
    assert forward["bypass"] >= 1
    assert all(r["kind"] != "bypass_write" for r in overview["divergences"])
    metrics = await (await client.get("/metrics")).text()
    assert 'strangler_bypass_writes_total{store="mongo",table="chat_sessions"} 1.0' in metrics
    assert 'strangler_follower_state{follower="forward",state="leading"} 1.0' in metrics
    # Move reads to Supabase: the session written around the facade is there.
    for target in ("shadow", "live"):  # evidence is tests/proxy/test_gates.py's subject
        move = {"stage": target, "force": True, "reason": "test: no backfill here"}
        r = await client.put("/admin/stage", json=move, headers=ADMIN_H)
        assert r.status == 200, await r.text()
    got = await client.get(f"/sessions/{sid}", headers=as_user("alice"))
    assert got.status == 200
    assert (await got.json())["title"] == "from an old instance"
